package signaling

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/liveforum/liveforum/internal/rtctest"
)

// reportingViewer is a WHEP viewer of the stage that keeps what it receives of its video: the packets'
// count and newest timestamp, and the sender reports.
type reportingViewer struct {
	pc  *webrtc.PeerConnection
	sub *Subscriber

	mu      sync.Mutex
	ssrc    uint32
	packets int
	lastTS  uint32
	reports []rtcp.SenderReport
	at      []time.Time // when each report arrived
	tsAt    []uint32    // the newest timestamp received when it arrived
}

// watchStageReports subscribes a viewer to the stage; edit may change its offer first.
func watchStageReports(t *testing.T, r *Room, edit func(string) string) *reportingViewer {
	t.Helper()
	v := &reportingViewer{pc: rtctest.PeerConnection(t)}
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := v.pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	v.pc.OnTrack(func(tr *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
		if tr.Kind() != webrtc.RTPCodecTypeVideo {
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
			}
		}
		go func() {
			for {
				pkts, _, err := recv.ReadRTCP()
				if err != nil {
					return
				}
				for _, p := range pkts {
					if sr, ok := p.(*rtcp.SenderReport); ok {
						v.mu.Lock()
						v.reports = append(v.reports, *sr)
						v.at = append(v.at, time.Now())
						v.tsAt = append(v.tsAt, v.lastTS)
						v.mu.Unlock()
					}
				}
			}
		}()
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			v.mu.Lock()
			v.ssrc, v.packets, v.lastTS = p.SSRC, v.packets+1, p.Timestamp
			v.mu.Unlock()
		}
	})
	offer := rtctest.Offer(t, v.pc)
	if edit != nil {
		offer = edit(offer)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	s, answer, err := r.SubscribeStage(ctx, "viewer", offer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	v.sub = s
	rtctest.SetAnswer(t, v.pc, answer)
	return v
}

// A subscriber's packets are encrypted and sent by the direct path, with keys derived from its DTLS
// session: the viewer decrypts them (an SRTP context with other keys would fail every packet's
// authentication), and gets sender reports of them that say how many were sent and map their timestamps
// to the wall clock.
func TestDirectPathSendsDecryptablePacketsAndReports(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.selectEvery = 100 * time.Millisecond })
	r, _ := e.Room("plaza")
	publish(t, r, "ana", 'a')
	v := watchStageReports(t, r, nil)
	room := subscribe(t, r, "bo") // the default mode: the server offers
	eventually(t, "the viewer's video and a few sender reports", func() bool {
		v.mu.Lock()
		defer v.mu.Unlock()
		return v.packets >= 60 && len(v.reports) >= 3
	})
	eventually(t, "the member's video and audio", func() bool { return room.count("video") >= 60 && room.count("audio") >= 30 })
	for _, s := range []*Subscriber{v.sub, room.sub} {
		if got := s.path.Load(); got != pathDirect {
			t.Errorf("%s's send path %d, want the direct path (%d)", s.identity, got, pathDirect)
		} else if g := s.direct.seal.gcm; g == nil || len(g.key) != 16 {
			t.Errorf("%s's SRTP is not AES-128-GCM, which the server prefers (the pion client puts AES-256-GCM first)", s.identity)
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	last, at, ts := v.reports[len(v.reports)-1], v.at[len(v.at)-1], v.tsAt[len(v.tsAt)-1]
	if last.SSRC != v.ssrc {
		t.Fatalf("sender report for SSRC %d, want the video's %d", last.SSRC, v.ssrc)
	}
	if last.PacketCount == 0 || int(last.PacketCount) > v.packets {
		t.Errorf("sender report counts %d packets; the viewer has received %d", last.PacketCount, v.packets)
	}
	if d := at.Sub(ntpToTime(last.NTPTime)); d < -time.Second || d > time.Second {
		t.Errorf("sender report's NTP time is %v from when it arrived", d)
	}
	// The publisher's clock: 90 kHz at 30 frames a second; the report carries the newest timestamp on
	// to its NTP time, so it is at or ahead of what had arrived by then (a frame's packets may still be
	// on their way), by less than a second.
	if ahead := int32(last.RTPTime - ts); ahead < -3000 || ahead > 90000 {
		t.Errorf("sender report's RTP time %d is %d ticks from the newest packet's %d when it came", last.RTPTime, ahead, ts)
	}
}

// ntpToTime is the time of an NTP timestamp.
func ntpToTime(ntp uint64) time.Time {
	secs := int64(ntp>>32) - 2208988800
	return time.Unix(secs, int64((ntp&0xFFFFFFFF)*1e9>>32))
}

// A viewer that insists on being the DTLS server (a=setup:passive) makes the server the client, which
// the direct path cannot take the keys of: pion sends, and the viewer gets its packets as before.
func TestPeerAsDTLSServerIsSentThroughPion(t *testing.T) {
	e := newTestEngine(t, nil)
	r, _ := e.Room("plaza")
	publish(t, r, "ana", 'a')
	v := watchStageReports(t, r, func(offer string) string {
		return strings.ReplaceAll(offer, "a=setup:actpass", "a=setup:passive")
	})
	eventually(t, "the viewer's video", func() bool {
		v.mu.Lock()
		defer v.mu.Unlock()
		return v.packets >= 60
	})
	if got := v.sub.path.Load(); got != pathPion {
		t.Errorf("send path %d, want pion's (%d)", got, pathPion)
	}
}

// The keys made from what the hooks capture are the DTLS session's own: for each cipher suite (SHA-256
// and SHA-384 PRFs) and SRTP profile, a pion DTLS server with the hooks and a pion client complete a
// handshake over loopback; the captured exporter gives what the server's own exporter gives, and a packet
// sealed with the captured keys is decrypted by the client's context, made by pion from its session.
func TestCapturedKeysAreTheSessions(t *testing.T) {
	cert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	for _, suite := range []dtls.CipherSuiteID{dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384} {
		for _, profile := range []dtls.SRTPProtectionProfile{dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AEAD_AES_256_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80} {
			t.Run(fmt.Sprintf("%s/%#04x", dtls.CipherSuiteName(suite), uint16(profile)), func(t *testing.T) {
				k := &keyCapture{}
				server, client := handshakePair(t, cert, suite, profile, k)
				state, _ := server.ConnectionState()
				want, err := state.ExportKeyingMaterial("EXTRACTOR-dtls_srtp", nil, 60)
				if err != nil {
					t.Fatal(err)
				}
				e := k.Exporter()
				if e == nil {
					t.Fatal("no exporter from the captured handshake")
				}
				if got, err := e.ExportKeyingMaterial("EXTRACTOR-dtls_srtp", nil, 60); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("captured exporter %x, %v; the session's %x", got, err, want)
				}
				seal, err := k.sealer()
				if err != nil {
					t.Fatal(err)
				}
				if k.HasSecret() {
					t.Error("the master secret is kept after the keys are made")
				}
				cstate, _ := client.ConnectionState()
				cfg := srtp.Config{Profile: srtp.ProtectionProfile(profile)}
				if err := cfg.ExtractSessionKeysFromDTLS(&cstate, true); err != nil {
					t.Fatal(err)
				}
				remote, err := srtp.CreateContext(cfg.Keys.RemoteMasterKey, cfg.Keys.RemoteMasterSalt, cfg.Profile)
				if err != nil {
					t.Fatal(err)
				}
				pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 7, Timestamp: 9, SSRC: 42},
					Payload: []byte("a frame of the stage")}
				plain, _ := pkt.Marshal()
				var st atomic.Pointer[gcmStream]
				enc, err := seal.seal(append(slices.Clip(slices.Clone(plain)), make([]byte, srtpOverhead)...)[:len(plain)],
					pkt.Header.MarshalSize(), &st, &rtp.Header{})
				if err != nil {
					t.Fatal(err)
				}
				dec, err := remote.DecryptRTP(nil, enc, nil)
				if err != nil || !bytes.Equal(dec, plain) {
					t.Fatalf("the client decrypts %q, %v", dec, err)
				}
			})
		}
	}
}

// handshakePair runs a pion DTLS handshake over loopback UDP: the server with k's hooks, the client
// offering one cipher suite and one SRTP profile.
func handshakePair(t *testing.T, cert tls.Certificate, suite dtls.CipherSuiteID, profile dtls.SRTPProtectionProfile,
	k *keyCapture) (server, client *dtls.Conn) {
	t.Helper()
	sc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	common := []dtls.Option{dtls.WithCertificates(cert), dtls.WithInsecureSkipVerify(true), dtls.WithCipherSuites(suite),
		dtls.WithSRTPProtectionProfiles(profile), dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret)}
	sopts := []dtls.ServerOption{dtls.WithKeyLogWriter(k), dtls.WithServerHelloMessageHook(k.serverHello)}
	copts := []dtls.ClientOption{}
	for _, o := range common {
		sopts, copts = append(sopts, o), append(copts, o)
	}
	server, err = dtls.ServerWithOptions(sc, cc.LocalAddr(), sopts...)
	if err != nil {
		t.Fatal(err)
	}
	client, err = dtls.ClientWithOptions(cc, sc.LocalAddr(), copts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	errs := make(chan error, 1)
	go func() { errs <- server.HandshakeContext(ctx) }()
	if err := client.HandshakeContext(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	return server, client
}

// A sender report carries the newest timestamp on by the time since it was sent, at the codec's clock.
func TestSenderReportCarriesTheTimestampOn(t *testing.T) {
	lt := &localTrack{}
	lt.bound.Store(&binding{ssrc: 42, clock: 90000})
	if lt.senderReport(time.Now()) != nil {
		t.Fatal("a report before any packet")
	}
	sent := time.Unix(1_700_000_000, 0)
	lt.packets, lt.octets, lt.lastTS, lt.lastAt = 10, 12000, 1000, sent.UnixNano()
	r := lt.senderReport(sent.Add(500 * time.Millisecond))
	if r.SSRC != 42 || r.PacketCount != 10 || r.OctetCount != 12000 || r.RTPTime != 1000+45000 {
		t.Fatalf("report %+v, want SSRC 42, 10 packets, 12000 octets, RTP time 46000", r)
	}
	if got := ntpToTime(r.NTPTime); got.Sub(sent.Add(500*time.Millisecond)).Abs() > time.Microsecond {
		t.Fatalf("NTP time %v, want %v", got, sent.Add(500*time.Millisecond))
	}
}

// The default media address (":7881") is a dual-stack socket: IPv4 viewers are sent to through it by the
// direct path's batches (IPv4 addresses on an IPv6 socket).
func TestDirectPathOnADualStackSocket(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.ICE.UDPAddr = ":0" })
	if a := e.UDPAddr().String(); a[0] != '[' {
		t.Fatalf("media socket %s, want a dual-stack one", a)
	}
	r, _ := e.Room("plaza")
	publish(t, r, "ana", 'a')
	subs := []*testSubscriber{subscribe(t, r, "bo"), subscribe(t, r, "cy")}
	for _, s := range subs {
		eventually(t, "video and audio arrive", func() bool { return s.count("video") >= 60 && s.count("audio") >= 30 })
		if got := s.sub.path.Load(); got != pathDirect {
			t.Errorf("send path %d, want direct", got)
		}
	}
}
