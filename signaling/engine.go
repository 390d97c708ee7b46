// Package signaling is liveforum's media: a selective forwarding unit (SFU) per room, built on
// pion/webrtc v4. Members whom the caller allows publish audio and video; every other member subscribes to
// what is on the room's stage. The package knows no chat or moderation rules: the caller (the server) tells
// it who may publish and when to stop someone.
//
// Shape: an Engine holds the process's WebRTC settings (one UDP port for all media through an ICE UDP mux,
// an optional ICE-TCP port, candidate filters, public IPs) and its rooms. In a room, a Publisher is one
// peer connection that receives a member's tracks (the member offers, as WHIP does); a Subscriber is one
// peer connection that sends tracks to a member. A publisher's track (an upTrack) is read by one goroutine
// that writes each packet to the downTracks of the subscribers (track.go); a downTrack whose writes stall
// gets a bounded queue and a writer goroutine of its own, so it loses its own packets and slows nobody.
// Subscribers' packets are encrypted and sent by the direct path (direct.go), not pion's write chain.
//
// Concurrency: Engine, Room, Publisher and Subscriber methods are safe for concurrent use. No lock is held
// while calling into pion except the subscriber's negotiation lock.
package signaling

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Errors of the media layer (wrapped; test with errors.Is).
var (
	ErrBadSDP         = errors.New("signaling: bad session description")
	ErrTooManyTracks  = errors.New("signaling: too many tracks")
	ErrTooManyPublish = errors.New("signaling: too many publishers in the room")
	ErrClosed         = errors.New("signaling: closed")
	ErrNotFound       = errors.New("signaling: no such session")
)

// MaxSDPBytes bounds a session description taken from a client.
const MaxSDPBytes = 64 << 10

// ICEConfig decides where media flows.
type ICEConfig struct {
	// UDPAddr is the one UDP address all media uses (ICE UDP mux), such as ":7881" or "127.0.0.1:0".
	// Empty means ":7881".
	UDPAddr string
	// TCPAddr, when set, also accepts ICE over TCP there (for clients whose UDP is blocked).
	TCPAddr string
	// Interfaces limits candidates to these network interfaces (e.g. "lo"); naming a loopback interface
	// also allows loopback candidates. Empty means every interface.
	Interfaces []string
	// IPs limits candidates to addresses within these networks. Empty means any address.
	IPs []*net.IPNet
	// NAT1To1IPs are public addresses to announce instead of the host's own (a host behind 1:1 NAT).
	NAT1To1IPs []string
	// Servers are the STUN and TURN servers handed to clients (the SFU itself needs none).
	Servers []webrtc.ICEServer
}

// Config configures an Engine. Zero values take the documented defaults.
type Config struct {
	ICE ICEConfig
	// MaxTracksPerPublisher bounds the tracks one publisher sends (default 4: camera, microphone, screen
	// and its audio).
	MaxTracksPerPublisher int
	// MaxPublishersPerRoom bounds the room's simultaneous publishers (default 16).
	MaxPublishersPerRoom int
	// MaxBitrate is the bitrate each publisher is asked to stay under, in bits per second, through REMB
	// (default 3 Mbit/s).
	MaxBitrate int
	// QueuePackets is each subscriber track's queue; a subscriber that lets it fill loses packets (default
	// 512, about a second of 3 Mbit/s video).
	QueuePackets int
	Logger       *slog.Logger

	// For the tests: how often the bandwidth controller runs (default 1 s), and how long a subscriber's
	// bandwidth estimates are ignored after it connects (default 8 s).
	selectEvery, estimateWarmup time.Duration
}

func (c *Config) defaults() {
	if c.ICE.UDPAddr == "" {
		c.ICE.UDPAddr = ":7881"
	}
	if c.MaxTracksPerPublisher <= 0 {
		c.MaxTracksPerPublisher = 4
	}
	if c.MaxPublishersPerRoom <= 0 {
		c.MaxPublishersPerRoom = 16
	}
	if c.MaxBitrate <= 0 {
		c.MaxBitrate = 3_000_000
	}
	if c.QueuePackets <= 0 {
		c.QueuePackets = 512
	}
	if c.selectEvery <= 0 {
		c.selectEvery = time.Second
	}
	if c.estimateWarmup == 0 {
		c.estimateWarmup = 8 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Engine is the process's SFU: its WebRTC settings, its sockets and its rooms.
type Engine struct {
	cfg    Config
	log    *slog.Logger
	pubAPI *webrtc.API          // for publishers' peer connections (newAPI)
	subSE  webrtc.SettingEngine // for subscribers' peer connections, each with its own API (subscriberAPI)

	udp   *net.UDPConn
	udpMx ice.UDPMux
	tcp   net.Listener
	tcpMx ice.TCPMux

	mu     sync.Mutex
	rooms  map[string]*Room
	closed bool
	wg     sync.WaitGroup // the engine's own goroutines (REMB tickers)
}

// New opens the media sockets and returns an Engine; Close releases them.
func New(cfg Config) (*Engine, error) {
	cfg.defaults()
	e := &Engine{cfg: cfg, log: cfg.Logger, rooms: map[string]*Room{}}
	udpAddr, err := net.ResolveUDPAddr("udp", cfg.ICE.UDPAddr)
	if err != nil {
		return nil, fmt.Errorf("signaling: UDP address %q: %w", cfg.ICE.UDPAddr, err)
	}
	e.udp, err = net.ListenUDP("udp", udpAddr)
	if err != nil {
		return nil, fmt.Errorf("signaling: listen UDP %s: %w", cfg.ICE.UDPAddr, err)
	}
	// Best effort: the kernel caps the sizes at net.core.rmem_max / wmem_max (see docs/operations.md).
	_ = e.udp.SetReadBuffer(socketBuffer)
	_ = e.udp.SetWriteBuffer(socketBuffer)
	e.udpMx = webrtc.NewICEUDPMux(nil, muxConn(e.udp))

	se := webrtc.SettingEngine{}
	se.SetICEUDPMux(e.udpMx)
	types := []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6}
	if cfg.ICE.TCPAddr != "" {
		e.tcp, err = net.Listen("tcp", cfg.ICE.TCPAddr)
		if err != nil {
			_ = e.udpMx.Close()
			return nil, fmt.Errorf("signaling: listen TCP %s: %w", cfg.ICE.TCPAddr, err)
		}
		e.tcpMx = webrtc.NewICETCPMux(nil, e.tcp, 8)
		se.SetICETCPMux(e.tcpMx)
		types = append(types, webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6)
	}
	se.SetNetworkTypes(types)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	applyCandidateFilters(&se, cfg.ICE)
	if len(cfg.ICE.NAT1To1IPs) > 0 {
		// 1:1 NAT: announce the public addresses instead of the host's own.
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{External: cfg.ICE.NAT1To1IPs,
			AsCandidateType: webrtc.ICECandidateTypeHost, Mode: webrtc.ICEAddressRewriteReplace}); err != nil {
			_ = e.closeSockets()
			return nil, fmt.Errorf("signaling: public IPs %v: %w", cfg.ICE.NAT1To1IPs, err)
		}
	}
	// A peer silent for 5 s is disconnected, and failed (its session ends: a publisher leaves the stage)
	// 5 s later; clients send keepalives every 2 s. An encoder killed outright is off the stage in ~10 s.
	se.SetICETimeouts(5*time.Second, 5*time.Second, 2*time.Second)

	e.subSE = se
	// The server is the DTLS server of subscribers' connections, so its order chooses their SRTP profile:
	// AES-128-GCM first (RFC 7714; pion, and libwebrtc among the GCM profiles, put AES-256-GCM first).
	// Every packet to every viewer is encrypted, and with 10 rounds rather than 14 that costs less;
	// 128-bit keys are those of WebRTC's mandatory profile and of TLS's usual suites.
	e.subSE.SetSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AEAD_AES_256_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80)
	if e.pubAPI, err = newAPI(se, true); err != nil {
		_ = e.closeSockets()
		return nil, err
	}
	return e, nil
}

// newAPI makes the pion API for publishers' or subscribers' peer connections. Both have pion's default
// codecs (with NACK, PLI, FIR and REMB feedback for video) and RTCP reports, and neither pion's stats
// interceptor (nothing here reads it; it cost ~5 % of the server's CPU in the media bench) nor its NACK
// responder, which copies every packet sent into a buffer per subscriber (downTracks answer NACKs from
// their upTrack's one cache instead). Publishers' connections also ask for the packets publishers lost
// (NACK), read simulcast header extensions (a publisher's layers arrive as one track per rid) and send
// transport-wide congestion control feedback, which browsers' send-side bandwidth estimation uses.
// Subscribers' connections leave transport-wide congestion control out, so that browsers send their
// receive-side estimate (REMB) instead, which the bandwidth controller reads.
func newAPI(se webrtc.SettingEngine, publishers bool) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	steps := []func() error{func() error { return webrtc.ConfigureRTCPReports(ir) }}
	if !publishers {
		steps = append(steps, func() error { return registerAbsSendTime(me) })
	} else {
		steps = append(steps,
			func() error { return configureNackGenerator(me, ir) },
			func() error { return webrtc.ConfigureSimulcastExtensionHeaders(me) },
			func() error { return webrtc.ConfigureTWCCSender(me, ir) })
	}
	for _, configure := range steps {
		if err := configure(); err != nil {
			return nil, err
		}
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// registerAbsSendTime offers subscribers the abs-send-time header extension, which localTrack writes into
// every packet: browsers' receive-side bandwidth estimators (REMB) need it to time arrivals.
func registerAbsSendTime(me *webrtc.MediaEngine) error {
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.ABSSendTimeURI}, k); err != nil {
			return err
		}
	}
	return nil
}

// configureNackGenerator negotiates NACK and PLI feedback for video and asks publishers for the packets
// they lost; subscribers' NACKs are answered by their downTracks (readRTCP).
func configureNackGenerator(me *webrtc.MediaEngine, ir *interceptor.Registry) error {
	g, err := nack.NewGeneratorInterceptor()
	if err != nil {
		return err
	}
	me.RegisterFeedback(webrtc.RTCPFeedback{Type: "nack"}, webrtc.RTPCodecTypeVideo)
	me.RegisterFeedback(webrtc.RTCPFeedback{Type: "nack", Parameter: "pli"}, webrtc.RTPCodecTypeVideo)
	ir.Add(g)
	return nil
}

// socketBuffer is the media socket's kernel buffer size asked for each way: every publisher's packets
// arrive at this one socket, and a burst (a keyframe of several publishers) must not overflow it.
const socketBuffer = 4 << 20

// applyCandidateFilters restricts the gathered candidates to the configured interfaces and networks.
func applyCandidateFilters(se *webrtc.SettingEngine, c ICEConfig) {
	loopback := false
	if len(c.Interfaces) > 0 {
		names := slices.Clone(c.Interfaces)
		se.SetInterfaceFilter(func(name string) bool { return slices.Contains(names, name) })
		for _, name := range names {
			if ifc, err := net.InterfaceByName(name); err == nil && ifc.Flags&net.FlagLoopback != 0 {
				loopback = true
			}
		}
	}
	if len(c.IPs) > 0 {
		nets := slices.Clone(c.IPs)
		se.SetIPFilter(func(ip net.IP) bool {
			for _, n := range nets {
				if n.Contains(ip) {
					return true
				}
			}
			return false
		})
		for _, n := range nets {
			if n.IP.IsLoopback() {
				loopback = true
			}
		}
	}
	if loopback {
		se.SetIncludeLoopbackCandidate(true)
	}
}

// UDPAddr is the address media arrives at (useful when configured with port 0).
func (e *Engine) UDPAddr() net.Addr { return e.udp.LocalAddr() }

// TCPAddr is the ICE-TCP address, or nil.
func (e *Engine) TCPAddr() net.Addr {
	if e.tcp == nil {
		return nil
	}
	return e.tcp.Addr()
}

// ICEServers are the STUN/TURN servers clients should use.
func (e *Engine) ICEServers() []webrtc.ICEServer { return slices.Clone(e.cfg.ICE.Servers) }

// Room returns the named room's SFU, creating it.
func (e *Engine) Room(name string) (*Room, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, ErrClosed
	}
	r := e.rooms[name]
	if r == nil {
		r = &Room{e: e, name: name, pubs: map[string]*Publisher{}, subs: map[*Subscriber]struct{}{}}
		e.rooms[name] = r
	}
	return r, nil
}

// forget drops an empty room.
func (e *Engine) forget(r *Room) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.rooms[r.name] == r && r.empty() {
		delete(e.rooms, r.name)
	}
}

// Close ends every session and releases the sockets.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	rooms := make([]*Room, 0, len(e.rooms))
	for _, r := range e.rooms {
		rooms = append(rooms, r)
	}
	e.mu.Unlock()
	for _, r := range rooms {
		r.closeAll()
	}
	e.wg.Wait()
	return e.closeSockets()
}

func (e *Engine) closeSockets() error {
	var errs []error
	if e.tcpMx != nil {
		errs = append(errs, e.tcpMx.Close())
	}
	if e.udpMx != nil {
		errs = append(errs, e.udpMx.Close())
	}
	return errors.Join(errs...)
}

// Active reports whether the room has publishers or subscribers on this engine.
func (e *Engine) Active(room string) bool {
	e.mu.Lock()
	r := e.rooms[room]
	e.mu.Unlock()
	return r != nil && !r.empty()
}
