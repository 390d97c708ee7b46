// Package rtctest makes pion peer connections for tests: a browser stand-in with pion's default codecs and
// interceptors (plus the simulcast header extensions), ICE over UDP on loopback only (../shared/TESTING.md,
// "pion on loopback"), and complete descriptions (every candidate gathered: no trickle). The peers are real;
// they talk to a real SFU over real sockets.
package rtctest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/sdp/v3"
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
// retransmissions of them are accepted. Loss counts what was thrown away, and compares each packet that
// comes again with the same SSRC and sequence number with the one thrown away, as received (encrypted).
func LossyPeerConnection(t testing.TB, nth int) (*webrtc.PeerConnection, *Loss) {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	lc := &lossyConn{UDPConn: conn, nth: int64(nth), dropped: map[uint64][]byte{}}
	mux := webrtc.NewICEUDPMux(nil, lc)
	t.Cleanup(func() { _ = mux.Close() })
	se := webrtc.SettingEngine{}
	se.SetICEUDPMux(mux)
	return newPeerConnection(t, se, webrtc.NetworkTypeUDP4), &lc.Loss
}

// Loss counts a lossy socket's RTP packets thrown away, and those that came again (by SSRC and sequence
// number) with the same bytes, or with others.
type Loss struct {
	Dropped, Same, Different atomic.Int64
}

// lossyConn drops every nth RTP packet read (RFC 7983: first byte 128–191; RTCP packet types 192–223).
type lossyConn struct {
	*net.UDPConn
	nth int64
	rtp atomic.Int64
	Loss
	mu      sync.Mutex
	dropped map[uint64][]byte // by SSRC and sequence number: the ones thrown away, until they come again
}

func (c *lossyConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.UDPConn.ReadFrom(b)
		if err != nil || n < 12 || b[0] < 128 || b[0] > 191 || b[1] >= 192 && b[1] <= 223 {
			return n, addr, err
		}
		key := uint64(binary.BigEndian.Uint32(b[8:12]))<<16 | uint64(binary.BigEndian.Uint16(b[2:4]))
		c.mu.Lock()
		if first, ok := c.dropped[key]; ok {
			delete(c.dropped, key)
			if bytes.Equal(first, b[:n]) {
				c.Same.Add(1)
			} else {
				c.Different.Add(1)
			}
		}
		drop := c.rtp.Add(1)%c.nth == 0
		if drop && len(c.dropped) < 10_000 {
			c.dropped[key] = bytes.Clone(b[:n])
		}
		c.mu.Unlock()
		if drop {
			c.Dropped.Add(1)
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
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		// As browsers offer it: the server writes the send time into each packet it sends.
		if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.ABSSendTimeURI}, k); err != nil {
			t.Fatal(err)
		}
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
