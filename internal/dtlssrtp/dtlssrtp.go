// Package dtlssrtp derives a DTLS-SRTP session's SRTP keys (RFC 5764) from what can be seen of its
// handshake: the two randoms, the cipher suite and the SRTP profile (in the ServerHello) and the master
// secret (in pion's DTLS key log). The SFU's direct path uses it to send to its subscribers with keys
// that pion made, and the media bench to read what it is sent without pion's receive chain.
package dtlssrtp

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/prf"
	"github.com/pion/dtls/v3/pkg/protocol"
	"github.com/pion/dtls/v3/pkg/protocol/extension"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"
	"github.com/pion/dtls/v3/pkg/protocol/recordlayer"
	"github.com/pion/srtp/v3"
)

// RandomLength is the length of a hello's random.
const RandomLength = handshake.RandomLength

// maxKeyLogLine bounds a key log line: "CLIENT_RANDOM", a 32-byte random and a 48-byte secret in hex.
const maxKeyLogLine = 256

// ParseKeyLog calls found for each "CLIENT_RANDOM <client random> <master secret>" line (NSS key log
// format, in hex) of p that is well formed; other lines are skipped.
func ParseKeyLog(p []byte, found func(clientRandom, master []byte)) {
	sc := bufio.NewScanner(bytes.NewReader(p))
	sc.Buffer(make([]byte, 0, maxKeyLogLine), maxKeyLogLine)
	for sc.Scan() {
		label, rest, _ := strings.Cut(sc.Text(), " ")
		random, secret, _ := strings.Cut(rest, " ")
		if label != "CLIENT_RANDOM" {
			continue
		}
		cr, err1 := hex.DecodeString(random)
		ms, err2 := hex.DecodeString(secret)
		if err1 != nil || err2 != nil || len(cr) != RandomLength || len(ms) != 48 {
			continue
		}
		found(cr, ms)
	}
}

// Hello is what the ServerHello tells of a session's keys.
type Hello struct {
	Random  [RandomLength]byte
	Suite   dtls.CipherSuiteID
	Profile srtp.ProtectionProfile // 0 when it chose none (or more than one, or with an MKI)
}

// FromServerHello reads a ServerHello message.
func FromServerHello(m *handshake.MessageServerHello) (Hello, bool) {
	if m.CipherSuiteID == nil {
		return Hello{}, false
	}
	h := Hello{Random: m.Random.MarshalFixed(), Suite: dtls.CipherSuiteID(*m.CipherSuiteID)}
	for _, x := range m.Extensions {
		if u, ok := x.(*extension.UseSRTP); ok && len(u.ProtectionProfiles) == 1 && len(u.MasterKeyIdentifier) == 0 {
			h.Profile = srtp.ProtectionProfile(u.ProtectionProfiles[0])
		}
	}
	return h, true
}

// ServerHello finds a ServerHello in a DTLS datagram as it was received (a flight may carry it with
// other records); ok is false when there is none or the datagram is malformed.
func ServerHello(datagram []byte) (Hello, bool) {
	records, err := recordlayer.UnpackDatagram(datagram)
	if err != nil {
		return Hello{}, false
	}
	for _, r := range records {
		// The record header (13 bytes) and the handshake header's type: look no further at others.
		if len(r) <= recordlayer.FixedHeaderSize || protocol.ContentType(r[0]) != protocol.ContentTypeHandshake ||
			handshake.Type(r[recordlayer.FixedHeaderSize]) != handshake.TypeServerHello {
			continue
		}
		var rl recordlayer.RecordLayer
		if rl.Unmarshal(r) != nil {
			continue
		}
		if hs, ok := rl.Content.(*handshake.Handshake); ok {
			if m, ok := hs.Message.(*handshake.MessageServerHello); ok {
				return FromServerHello(m)
			}
		}
	}
	return Hello{}, false
}

var errNoKeys = errors.New("dtlssrtp: the session's randoms or master secret are missing")

// Exporter is the TLS exporter (RFC 5705) of a DTLS 1.2 session: PRF(master secret, label, client random
// + server random), with the cipher suite's PRF hash.
type Exporter struct {
	Master       []byte
	ClientRandom []byte
	Hello        Hello
}

// ExportKeyingMaterial implements srtp.KeyingMaterialExporter (contexts are not supported: DTLS-SRTP uses
// none).
func (e *Exporter) ExportKeyingMaterial(label string, context []byte, length int) ([]byte, error) {
	if len(e.Master) == 0 || len(e.ClientRandom) != RandomLength || len(context) != 0 {
		return nil, errNoKeys
	}
	h := suiteHash(e.Hello.Suite)
	if h == nil {
		return nil, fmt.Errorf("dtlssrtp: cipher suite %#04x not known", uint16(e.Hello.Suite))
	}
	seed := make([]byte, 0, len(label)+2*RandomLength)
	seed = append(append(append(seed, label...), e.ClientRandom...), e.Hello.Random[:]...)
	return prf.PHash(e.Master, seed, length, h)
}

// suiteHash is the PRF hash of a DTLS 1.2 cipher suite that pion has: SHA-384 for the two AES-256-GCM
// suites, SHA-256 for the others; nil for a suite it does not know (a guess would give wrong keys
// silently).
func suiteHash(id dtls.CipherSuiteID) prf.HashFunc {
	switch id {
	case dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, dtls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:
		return func() hash.Hash { return sha512.New384() }
	case dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM, dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
		dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, dtls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		dtls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, dtls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
		dtls.TLS_PSK_WITH_AES_128_CCM, dtls.TLS_PSK_WITH_AES_128_CCM_8, dtls.TLS_PSK_WITH_AES_256_CCM_8,
		dtls.TLS_PSK_WITH_AES_128_GCM_SHA256, dtls.TLS_PSK_WITH_AES_128_CBC_SHA256,
		dtls.TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256,
		dtls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, dtls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		dtls.TLS_PSK_WITH_CHACHA20_POLY1305_SHA256, dtls.TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256:
		return sha256.New
	}
	return nil
}

// Keys derives the session's SRTP master keys and salts (RFC 5764 §4.2), for the profiles pion has.
func (e *Exporter) Keys(isClient bool) (srtp.Config, error) {
	switch e.Hello.Profile {
	case srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAeadAes256Gcm,
		srtp.ProtectionProfileAes128CmHmacSha1_80, srtp.ProtectionProfileAes128CmHmacSha1_32,
		srtp.ProtectionProfileAes256CmHmacSha1_80, srtp.ProtectionProfileAes256CmHmacSha1_32:
	default:
		return srtp.Config{}, fmt.Errorf("dtlssrtp: SRTP profile %#04x not supported", uint16(e.Hello.Profile))
	}
	cfg := srtp.Config{Profile: e.Hello.Profile}
	err := cfg.ExtractSessionKeysFromDTLS(e, isClient)
	return cfg, err
}

// Capture collects one session's parts as pion hands them over — the key log (Write, for
// SettingEngine.SetDTLSKeyLogWriter) and the ServerHello (SetHello) — for the exporter. It is safe for
// use by several goroutines.
type Capture struct {
	mu           sync.Mutex
	hello        Hello
	helloOK      bool
	clientRandom []byte
	master       []byte
}

// Write takes pion's DTLS key log: lines "CLIENT_RANDOM <client random> <master secret>" in hex.
func (c *Capture) Write(p []byte) (int, error) {
	ParseKeyLog(p, func(cr, ms []byte) {
		c.mu.Lock()
		c.clientRandom, c.master = cr, ms
		c.mu.Unlock()
	})
	return len(p), nil
}

// SetHello records the session's ServerHello; the first one counts (one handshake per connection).
func (c *Capture) SetHello(h Hello) {
	c.mu.Lock()
	if !c.helloOK {
		c.hello, c.helloOK = h, true
	}
	c.mu.Unlock()
}

// HasHello reports whether the ServerHello is in.
func (c *Capture) HasHello() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.helloOK
}

// Exporter is the session's exporter, or nil before the ServerHello and the master secret are in.
func (c *Capture) Exporter() *Exporter {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.helloOK || c.master == nil {
		return nil
	}
	return &Exporter{Master: c.master, ClientRandom: c.clientRandom, Hello: c.hello}
}

// Forget wipes the master secret (pion's DTLS state keeps its own copy for the connection's life).
func (c *Capture) Forget() {
	c.mu.Lock()
	clear(c.master)
	c.master = nil
	c.mu.Unlock()
}

// HasSecret reports whether the master secret is held (not yet forgotten).
func (c *Capture) HasSecret() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.master != nil
}
