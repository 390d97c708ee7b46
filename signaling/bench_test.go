package signaling

import (
	"net"
	"net/netip"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
)

// directDownTrack is a downTrack of a subscriber on the direct path, sending from conn to ap with seal,
// its track bound with the SSRC and abs-send-time as extension 3 (no peer connection).
func directDownTrack(tb testing.TB, conn *net.UDPConn, seal *rtpSealer, ap netip.AddrPort, ssrc uint32) *downTrack {
	s := &Subscriber{}
	s.remote.Store(newPeerAddr(ap))
	s.direct.conn, s.direct.seal = conn, seal
	s.path.Store(pathDirect)
	lt, err := newLocalTrack(s, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "stage")
	if err != nil {
		tb.Fatal(err)
	}
	lt.bound.Store(&binding{ssrc: ssrc, pt: 96, clock: 90000, absID: 3})
	return newDownTrack(s, lt, 8)
}

// BenchmarkForwardDirect measures the server's own work per packet per subscriber on the direct path —
// sequence rewriting, history, header extension, marshalling, SRTP, adding to the batch — without the
// system call: the batch is emptied instead of sent, so what the kernel does (which the media bench
// measures with it) is left out. One op is one 1200-byte video packet to one subscriber.
func BenchmarkForwardDirect(b *testing.B) {
	for _, c := range []struct {
		profile srtp.ProtectionProfile
		pion    bool // sealed by a pion context, as before the direct path sealed GCM itself
	}{{srtp.ProtectionProfileAeadAes128Gcm, false}, {srtp.ProtectionProfileAeadAes256Gcm, false},
		{srtp.ProtectionProfileAeadAes256Gcm, true}, {srtp.ProtectionProfileAes128CmHmacSha1_80, true}} {
		profile := c.profile
		name := profile.String()
		if c.pion {
			name += "/pion"
		}
		b.Run(name, func(b *testing.B) {
			conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			const subs = 128
			keyLen, _ := profile.KeyLen()
			saltLen, _ := profile.SaltLen()
			downs := make([]*downTrack, subs)
			for i := range downs {
				seal, err := newSealer(profile, make([]byte, keyLen), make([]byte, saltLen))
				if err != nil {
					b.Fatal(err)
				}
				if c.pion && seal.ctx == nil {
					if seal.ctx, err = srtp.CreateContext(make([]byte, keyLen), make([]byte, saltLen), profile); err != nil {
						b.Fatal(err)
					}
					seal.gcm = nil
				}
				ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(20000+i))
				downs[i] = directDownTrack(b, conn, seal, ap, uint32(1000+i))
			}
			u := &upTrack{}
			for _, d := range downs {
				d.src.Store(u)
			}
			batch := newSendBatch(conn)
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 100, SSRC: 7, Timestamp: 1},
				Payload: make([]byte, 1200)}
			b.SetBytes(int64(pkt.MarshalSize()))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += subs {
				pkt.SequenceNumber++
				u.sendAt.Store(int64(i) * 1000)
				for _, d := range downs[:min(subs, b.N-i)] {
					d.push(pkt, u, batch)
				}
				batch.n = 0 // not sent: the kernel's share is the media bench's
			}
		})
	}
}
