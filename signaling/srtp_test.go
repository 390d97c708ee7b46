package signaling

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// The direct path's own sealing gives, byte for byte, what pion's SRTP context gives for the same keys
// and packets, and pion's receiving context decrypts it: across a sequence number wrap (the rollover
// counter), for retransmissions from before the wrap, for two SSRCs, and for headers with CSRCs, an
// extension and padding. The other profiles go through pion's context and decrypt too.
func TestSealMatchesPion(t *testing.T) {
	for _, profile := range []srtp.ProtectionProfile{srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAeadAes256Gcm,
		srtp.ProtectionProfileAes128CmHmacSha1_80} {
		t.Run(fmt.Sprintf("%#04x", uint16(profile)), func(t *testing.T) {
			keyLen, err := profile.KeyLen()
			if err != nil {
				t.Fatal(err)
			}
			saltLen, err := profile.SaltLen()
			if err != nil {
				t.Fatal(err)
			}
			key, salt := make([]byte, keyLen), make([]byte, saltLen)
			_, _ = rand.Read(key)
			_, _ = rand.Read(salt)
			seal, err := newSealer(profile, key, salt)
			if err != nil {
				t.Fatal(err)
			}
			if (seal.gcm != nil) != (profile != srtp.ProtectionProfileAes128CmHmacSha1_80) {
				t.Fatalf("profile %v sealed by our GCM: %v", profile, seal.gcm != nil)
			}
			want, err := srtp.CreateContext(key, salt, profile)
			if err != nil {
				t.Fatal(err)
			}
			recv, err := srtp.CreateContext(key, salt, profile)
			if err != nil {
				t.Fatal(err)
			}
			// Sequence numbers of one SSRC: up to and across the wrap, a retransmission from before it, on.
			seqs := []uint16{65530, 65531, 65533, 65532, 65534, 65535, 0, 1, 65529, 2, 3, 65535, 4, 40000, 40001, 7000, 7001}
			var cached atomic.Pointer[gcmStream]
			var h rtp.Header
			for i, seq := range seqs {
				for _, ssrc := range []uint32{42, 77} {
					if ssrc == 77 && i%3 != 0 {
						continue // the second stream is sparser: its counter is its own
					}
					pkt := rtp.Packet{Header: rtp.Header{Version: 2, Marker: i%2 == 0, PayloadType: 96,
						SequenceNumber: seq, Timestamp: uint32(i) * 3000, SSRC: ssrc}, Payload: bytes.Repeat([]byte{byte(i)}, 100+i)}
					switch i % 4 {
					case 1:
						pkt.CSRC = []uint32{1, 2}
					case 2:
						_ = pkt.SetExtension(3, []byte{1, 2, 3})
					case 3:
						pkt.Padding, pkt.PaddingSize = true, 4
					}
					plain, err := pkt.Marshal()
					if err != nil {
						t.Fatal(err)
					}
					expect, err := want.EncryptRTP(nil, plain, nil)
					if err != nil {
						t.Fatal(err)
					}
					buf := make([]byte, len(plain), len(plain)+srtpOverhead)
					copy(buf, plain)
					got, err := seal.seal(buf, pkt.Header.MarshalSize(), &cached, &h)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, expect) {
						t.Fatalf("packet %d (seq %d, ssrc %d): sealed\n%x\npion\n%x", i, seq, ssrc, got, expect)
					}
					dec, err := recv.DecryptRTP(nil, got, nil)
					if err != nil || !bytes.Equal(dec, plain) {
						t.Fatalf("packet %d (seq %d, ssrc %d): decrypted %v", i, seq, ssrc, err)
					}
				}
			}
		})
	}
}

// Keys of the wrong size and headers longer than the packet are refused, not a panic.
func TestSealRefusesBadInput(t *testing.T) {
	if _, err := deriveGCM(make([]byte, 15), make([]byte, 12)); err == nil {
		t.Error("a 15-byte master key was taken")
	}
	if _, err := deriveGCM(make([]byte, 16), make([]byte, 14)); err == nil {
		t.Error("a 14-byte master salt was taken for GCM")
	}
	seal, err := newSealer(srtp.ProtectionProfileAeadAes128Gcm, make([]byte, 16), make([]byte, 12))
	if err != nil {
		t.Fatal(err)
	}
	var st atomic.Pointer[gcmStream]
	for _, c := range []struct {
		b  []byte
		hl int
	}{{nil, 12}, {[]byte{0x80}, 12}, {make([]byte, 11), 12}, {make([]byte, 12), 11}, {make([]byte, 12), 13}} {
		if _, err := seal.seal(c.b, c.hl, &st, &rtp.Header{}); err == nil {
			t.Errorf("sealed %x with a header of %d", c.b, c.hl)
		}
	}
}

// putRTP writes what rtp.Packet.MarshalTo writes for the packet with the abs-send-time extension set
// (or none), for headers with a marker, CSRCs and padding.
func TestPutRTPIsMarshal(t *testing.T) {
	for i := range 16 {
		p := rtp.Packet{Header: rtp.Header{Version: 2, Marker: i&1 != 0, PayloadType: 111, SequenceNumber: uint16(65530 + i),
			Timestamp: 0xfffffff0 + uint32(i), SSRC: 0xdeadbeef}, Payload: bytes.Repeat([]byte{0xaa}, 37*i)}
		if i&2 != 0 {
			p.CSRC = []uint32{7, 8, 9}
		}
		if i&4 != 0 {
			p.Padding, p.Header.PaddingSize = true, byte(1+i)
		}
		var absID uint8
		abs := uint32(0x123456) + uint32(i)
		want := p
		if i&8 != 0 {
			absID = uint8(1 + i%14)
			_ = want.SetExtension(absID, []byte{byte(abs >> 16), byte(abs >> 8), byte(abs)})
		}
		w, err := want.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		hl, size, err := rtpSize(&p, absID)
		if err != nil || size != len(w) || hl != want.Header.MarshalSize() {
			t.Fatalf("case %d: rtpSize %d, %d, %v; marshalled %d, header %d", i, hl, size, err, len(w), want.Header.MarshalSize())
		}
		got := bytes.Repeat([]byte{0xff}, size) // stale bytes, as in a reused buffer
		putRTP(got, hl, &p, absID, abs)
		if !bytes.Equal(got, w) {
			t.Fatalf("case %d:\nputRTP %x\nMarshal %x", i, got, w)
		}
	}
	if _, _, err := rtpSize(&rtp.Packet{Header: rtp.Header{Padding: true}}, 0); err == nil {
		t.Error("padding of size 0 was taken")
	}
}

// A late packet numbered just below the first wrap is not sealed (it has no index the receiver would
// agree on), and the stream goes on with the counter the receiver keeps: pion's receiving context
// decrypts what follows.
func TestSealLateBeforeFirstWrap(t *testing.T) {
	key, salt := make([]byte, 16), make([]byte, 12)
	seal, err := newSealer(srtp.ProtectionProfileAeadAes128Gcm, key, salt)
	if err != nil {
		t.Fatal(err)
	}
	recv, err := srtp.CreateContext(key, salt, srtp.ProtectionProfileAeadAes128Gcm)
	if err != nil {
		t.Fatal(err)
	}
	var st atomic.Pointer[gcmStream]
	for _, c := range []struct {
		seq  uint16
		sent bool
	}{{10, true}, {65530, false}, {11, true}, {12, true}} {
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: c.seq, SSRC: 5}, Payload: []byte("frame")}
		plain, _ := pkt.Marshal()
		buf := append(make([]byte, 0, len(plain)+srtpOverhead), plain...)
		out, err := seal.seal(buf, 12, &st, &rtp.Header{})
		if (err == nil) != c.sent {
			t.Fatalf("seq %d: sealed %v (%v), want %v", c.seq, err == nil, err, c.sent)
		}
		if err != nil {
			continue
		}
		if dec, err := recv.DecryptRTP(nil, out, nil); err != nil || !bytes.Equal(dec, plain) {
			t.Fatalf("seq %d: the receiver decrypts %v", c.seq, err)
		}
	}
}

// A NACK is answered with the packet sent under that number, byte for byte, and not with another packet
// that has since taken its place in the track's cache under the same publisher number (a publisher's
// resend with other bytes): that would encrypt one subscriber number two ways.
func TestRetransmitIsThePacketSent(t *testing.T) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	viewer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer viewer.Close()
	seal, err := newSealer(srtp.ProtectionProfileAeadAes128Gcm, make([]byte, 16), make([]byte, 12))
	if err != nil {
		t.Fatal(err)
	}
	d := directDownTrack(t, conn, seal, viewer.LocalAddr().(*net.UDPAddr).AddrPort(), 77)
	u := &upTrack{}
	d.src.Store(u)
	read := func() []byte {
		_ = viewer.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		b := make([]byte, 1500)
		n, _, err := viewer.ReadFrom(b)
		if err != nil {
			return nil
		}
		return b[:n]
	}
	first := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 100, SequenceNumber: 500, Timestamp: 9, SSRC: 3}, Payload: []byte("first")}
	u.cache[first.SequenceNumber%cacheSize].Store(first)
	d.push(first, u, nil)
	sent := read()
	if sent == nil {
		t.Fatal("the packet was not sent")
	}
	seq := binary.BigEndian.Uint16(sent[2:4])
	d.rtxTokens = rtxBurst
	d.retransmit(seq)
	if again := read(); !bytes.Equal(again, sent) {
		t.Fatalf("retransmission %x, first sent %x", again, sent)
	}
	other := &rtp.Packet{Header: first.Header, Payload: []byte("other")}
	u.cache[other.SequenceNumber%cacheSize].Store(other)
	d.retransmit(seq)
	if got := read(); got != nil {
		t.Fatalf("a retransmission of the packet that replaced the one sent: %x", got)
	}
}

// A late packet whose number falls before the subscriber's first wrap is not forwarded, on any path
// (pion's SRTP context would take it as far ahead and number every later packet wrongly); a late packet
// that does not cross the wrap goes, and so do late packets from before a wrap the numbering has passed.
func TestLateBeforeFirstWrapIsNotForwarded(t *testing.T) {
	for _, c := range []struct{ in, want []uint16 }{
		{[]uint16{10, 65530, 11, 5, 65535}, []uint16{10, 11, 5}},
		{[]uint16{65500, 65535, 0, 1, 65534, 2}, []uint16{65500, 65535, 0, 1, 65534, 2}},
	} {
		d := newDownTrack(&Subscriber{}, &localTrack{}, 8)
		u := &upTrack{}
		d.src.Store(u)
		var sent []uint16
		hook := writeFunc(func(p *rtp.Packet, _ *sendBatch) error { sent = append(sent, p.SequenceNumber); return nil })
		d.hook.Store(&hook)
		for _, seq := range c.in {
			d.push(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq}}, u, nil)
		}
		if !slices.Equal(sent, c.want) {
			t.Errorf("%v forwarded as %v, want %v", c.in, sent, c.want)
		}
	}
}
