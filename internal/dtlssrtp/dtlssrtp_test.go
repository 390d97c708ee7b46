package dtlssrtp

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/protocol"
	"github.com/pion/dtls/v3/pkg/protocol/extension"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"
	"github.com/pion/dtls/v3/pkg/protocol/recordlayer"
	"github.com/pion/srtp/v3"
)

// flight is a datagram as a DTLS server sends its first flight: a ServerHello record (choosing suite and
// profile) and a ServerHelloDone record after it.
func flight(t testing.TB, suite dtls.CipherSuiteID, profiles ...dtls.SRTPProtectionProfile) ([]byte, [RandomLength]byte) {
	t.Helper()
	var random handshake.Random
	if err := random.Populate(); err != nil {
		t.Fatal(err)
	}
	id := uint16(suite)
	hello := &handshake.MessageServerHello{Version: protocol.Version1_2, Random: random, CipherSuiteID: &id,
		CompressionMethod: &protocol.CompressionMethod{}, Extensions: []extension.Extension{&extension.UseSRTP{ProtectionProfiles: profiles}}}
	var out []byte
	for i, m := range []handshake.Message{hello, &handshake.MessageServerHelloDone{}} {
		rl := recordlayer.RecordLayer{Header: recordlayer.Header{Version: protocol.Version1_2, SequenceNumber: uint64(i)},
			Content: &handshake.Handshake{Header: handshake.Header{MessageSequence: uint16(i)}, Message: m}}
		b, err := rl.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	return out, random.MarshalFixed()
}

func TestServerHello(t *testing.T) {
	d, random := flight(t, dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, dtls.SRTP_AEAD_AES_256_GCM)
	h, ok := ServerHello(d)
	if !ok || h.Random != random || h.Suite != dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 || h.Profile != srtp.ProtectionProfileAeadAes256Gcm {
		t.Fatalf("ServerHello = %+v, %v; random %x", h, ok, random)
	}
	// Two profiles (not a choice) leave the profile unknown; keys cannot be made from it.
	d, _ = flight(t, dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AEAD_AES_256_GCM)
	h2, ok := ServerHello(d)
	if !ok || h2.Profile != 0 {
		t.Fatalf("two profiles: %+v, %v", h2, ok)
	}
	e := &Exporter{Master: make([]byte, 48), ClientRandom: make([]byte, RandomLength), Hello: h2}
	if _, err := e.Keys(true); err == nil {
		t.Error("keys made without a profile")
	}
	// Truncated within the ServerHello's record, or other records only: none found, no panic.
	first := recordlayer.FixedHeaderSize + int(binary.BigEndian.Uint16(d[11:13]))
	for n := range first {
		if _, ok := ServerHello(d[:n]); ok {
			t.Fatalf("a ServerHello in the first %d bytes of %d", n, len(d))
		}
	}
	if _, ok := ServerHello(d[first:]); ok {
		t.Error("a ServerHello in the second record")
	}
}

// The exporter follows RFC 5705 with the suite's hash: SHA-256 and SHA-384 suites give different keys
// from the same secret, and keys for the client are the server's swapped.
func TestExporterKeys(t *testing.T) {
	base := Exporter{Master: bytes.Repeat([]byte{1}, 48), ClientRandom: bytes.Repeat([]byte{2}, RandomLength),
		Hello: Hello{Random: [RandomLength]byte{3}, Suite: dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, Profile: srtp.ProtectionProfileAeadAes128Gcm}}
	sha384 := base
	sha384.Hello.Suite = dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
	a, err1 := base.ExportKeyingMaterial("EXTRACTOR-dtls_srtp", nil, 56)
	b, err2 := sha384.ExportKeyingMaterial("EXTRACTOR-dtls_srtp", nil, 56)
	if err1 != nil || err2 != nil || bytes.Equal(a, b) || len(a) != 56 {
		t.Fatalf("exports %x, %v; %x, %v", a, err1, b, err2)
	}
	server, err1 := base.Keys(false)
	client, err2 := base.Keys(true)
	if err1 != nil || err2 != nil || !bytes.Equal(server.Keys.LocalMasterKey, client.Keys.RemoteMasterKey) ||
		!bytes.Equal(server.Keys.LocalMasterSalt, client.Keys.RemoteMasterSalt) || bytes.Equal(server.Keys.LocalMasterKey, server.Keys.RemoteMasterKey) {
		t.Fatalf("server %+v, %v; client %+v, %v", server.Keys, err1, client.Keys, err2)
	}
	if _, err := (&Exporter{}).ExportKeyingMaterial("x", nil, 8); err == nil {
		t.Error("exported without a secret")
	}
	if _, err := base.ExportKeyingMaterial("x", []byte{1}, 8); err == nil {
		t.Error("exported with a context")
	}
	unknown := base
	unknown.Hello.Suite = 0xfefe // not a suite pion has: its PRF hash is not guessed
	if _, err := unknown.Keys(false); err == nil {
		t.Error("keys made for a cipher suite whose PRF is not known")
	}
}

func TestParseKeyLog(t *testing.T) {
	good := "CLIENT_RANDOM " + strings.Repeat("ab", 32) + " " + strings.Repeat("cd", 48) + "\n"
	var got [][2][]byte
	// pion writes a line at a time; a line too long ends what is read of its write.
	for _, in := range []string{"\nCLIENT_RANDOM\nCLIENT_RANDOM zz zz\nOTHER " + good[14:], strings.Repeat("x", 10_000) + "\n" + good, good} {
		ParseKeyLog([]byte(in), func(cr, ms []byte) { got = append(got, [2][]byte{cr, ms}) })
	}
	if len(got) != 1 || len(got[0][0]) != 32 || got[0][0][0] != 0xab || len(got[0][1]) != 48 || got[0][1][47] != 0xcd {
		t.Fatalf("found %x", got)
	}
}

// ServerHello reads datagrams from the network (the media bench's sockets): whatever they hold, it
// returns, never panics.
func FuzzServerHello(f *testing.F) {
	d, _ := flight(f, dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, dtls.SRTP_AEAD_AES_128_GCM)
	f.Add(d)
	f.Add([]byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		// A record header (13), a handshake header (12) and the ServerHello's fixed part (version 2,
		// random 32, session id length 1, suite 2, compression 1): nothing shorter holds one.
		if _, ok := ServerHello(b); ok && len(b) < 13+12+38 {
			t.Fatalf("a ServerHello in %d bytes", len(b))
		}
	})
}

// A Capture makes no exporter before both the ServerHello and the key log are in; the first ServerHello
// counts; Forget wipes the secret.
func TestCapture(t *testing.T) {
	var c Capture
	line := "CLIENT_RANDOM " + strings.Repeat("ab", 32) + " " + strings.Repeat("cd", 48) + "\n"
	if n, err := c.Write([]byte(line)); n != len(line) || err != nil || c.Exporter() != nil || !c.HasSecret() || c.HasHello() {
		t.Fatalf("after the key log alone: %d, %v, exporter %v", n, err, c.Exporter())
	}
	c.SetHello(Hello{Random: [RandomLength]byte{1}, Profile: srtp.ProtectionProfileAeadAes128Gcm})
	c.SetHello(Hello{Random: [RandomLength]byte{2}})
	e := c.Exporter()
	if e == nil || e.Hello.Random[0] != 1 || e.ClientRandom[0] != 0xab {
		t.Fatalf("exporter %+v", e)
	}
	c.Forget()
	if c.HasSecret() || c.Exporter() != nil || e.Master[0] != 0 {
		t.Fatalf("after Forget: secret %v, exporter %v, the exporter's copy %x", c.HasSecret(), c.Exporter(), e.Master)
	}
}
