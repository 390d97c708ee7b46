// Package rtctest makes pion peer connections for tests: a browser stand-in with pion's default codecs and
// interceptors (plus the simulcast header extensions), ICE over UDP on loopback only (../shared/TESTING.md,
// "pion on loopback"), and complete descriptions (every candidate gathered: no trickle). The peers are real;
// they talk to a real SFU over real sockets.
package rtctest

import (
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// gatherTimeout bounds the gathering of a description's candidates.
const gatherTimeout = 15 * time.Second

// PeerConnection returns a new peer connection on loopback, closed when t ends.
func PeerConnection(t testing.TB) *webrtc.PeerConnection {
	t.Helper()
	return newPeerConnection(t, webrtc.SettingEngine{}, webrtc.NetworkTypeUDP4)
}

// LossyPeerConnection returns a peer connection on loopback whose socket throws away every nth RTP packet
// it receives (RTCP, STUN and DTLS pass), as a lossy network would: the packets never reach SRTP, so
// retransmissions of them are accepted. dropped counts what was thrown away.
func LossyPeerConnection(t testing.TB, nth int) (pc *webrtc.PeerConnection, dropped *atomic.Int64) {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	lc := &lossyConn{UDPConn: conn, nth: int64(nth)}
	mux := webrtc.NewICEUDPMux(nil, lc)
	t.Cleanup(func() { _ = mux.Close() })
	se := webrtc.SettingEngine{}
	se.SetICEUDPMux(mux)
	return newPeerConnection(t, se, webrtc.NetworkTypeUDP4), &lc.dropped
}

// lossyConn drops every nth RTP packet read (RFC 7983: first byte 128–191; RTCP packet types 192–223).
type lossyConn struct {
	*net.UDPConn
	nth          int64
	rtp, dropped atomic.Int64
}

func (c *lossyConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.UDPConn.ReadFrom(b)
		if err != nil || n < 2 || b[0] < 128 || b[0] > 191 || b[1] >= 192 && b[1] <= 223 {
			return n, addr, err
		}
		if c.rtp.Add(1)%c.nth == 0 {
			c.dropped.Add(1)
			continue
		}
		return n, addr, err
	}
}

// TCPPeerConnection returns a peer connection on loopback that reaches its peer over ICE-TCP only (active
// candidates), as a browser whose UDP is blocked does.
func TCPPeerConnection(t testing.TB) *webrtc.PeerConnection {
	t.Helper()
	return newPeerConnection(t, webrtc.SettingEngine{}, webrtc.NetworkTypeTCP4)
}

func newPeerConnection(t testing.TB, se webrtc.SettingEngine, network webrtc.NetworkType) *webrtc.PeerConnection {
	se.SetNetworkTypes([]webrtc.NetworkType{network})
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil { // includes the simulcast extensions
		t.Fatal(err)
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// Offer returns pc's complete offer, set as its local description.
func Offer(t testing.TB, pc *webrtc.PeerConnection) string {
	t.Helper()
	o, err := pc.CreateOffer(nil)
	if err == nil {
		err = setLocal(pc, o)
	}
	if err != nil {
		t.Fatal(err)
	}
	return pc.LocalDescription().SDP
}

// Answer sets a remote offer on pc and returns its complete answer. It reports errors instead of failing
// a test, so goroutines that answer a server's renegotiations can use it.
func Answer(pc *webrtc.PeerConnection, offer string) (string, error) {
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", err
	}
	a, err := pc.CreateAnswer(nil)
	if err == nil {
		err = setLocal(pc, a)
	}
	if err != nil {
		return "", err
	}
	return pc.LocalDescription().SDP, nil
}

// SetAnswer sets a remote answer on pc.
func SetAnswer(t testing.TB, pc *webrtc.PeerConnection, answer string) {
	t.Helper()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
}

// setLocal sets the local description and waits until every candidate is gathered.
func setLocal(pc *webrtc.PeerConnection, d webrtc.SessionDescription) error {
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(d); err != nil {
		return err
	}
	select {
	case <-gathered:
		return nil
	case <-time.After(gatherTimeout):
		return errors.New("rtctest: gathering candidates took over 15 s")
	}
}
