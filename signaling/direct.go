package signaling

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3/pkg/protocol/handshake"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/liveforum/liveforum/internal/dtlssrtp"
)

// The direct path: a subscriber's media is encrypted and sent here rather than through pion's write chain.
//
// pion writes each packet through its interceptors, its SRTP session, its mux and its ICE connection, with
// a lock, an atomic or a clock read at most steps; per packet per subscriber that was a third of the
// server's CPU in the media bench, more than the encryption (a tenth) — the rest is the system call. A
// subscriber's connection is set up by pion as usual (ICE, DTLS, negotiation, RTCP both ways); only the
// sending of RTP is taken over, when all of this holds:
//   - the server is the DTLS server (subscribers' connections answer as one, and browsers answer the
//     server's offers as the client), so that its ServerHello, with its random and the chosen SRTP profile,
//     passes through a hook;
//   - the DTLS key log gives the master secret, from which the SRTP keys are derived exactly as pion
//     derives its own (RFC 5705 exporter, RFC 5764 key layout);
//   - the selected ICE pair is UDP through the media socket, which the engine owns.
//
// Otherwise (ICE-TCP, the peer insisting on being the DTLS server, an unknown profile) pion sends, as
// before. The choice is made when DTLS connects, before pion's SRTP starts, and packets written before
// it go nowhere (as pion's own do before SRTP starts); once a packet has been sent directly it is never
// undone (pairChanged): the two SRTP contexts never number one stream. Packets of the fan-out go out in
// its batch (batch.go), the others at once.
//
// pion also keeps its SRTP session for RTCP (keyframe requests to publishers, subscribers' reports and
// NACKs), which are few. Sender reports of directly sent tracks are made by the subscriber (sendReports),
// since pion's report interceptor sees none of their packets.

// keyCapture collects, for one peer connection, what the SRTP keys are derived from
// (internal/dtlssrtp): the ServerHello the server sent (its random, cipher suite and SRTP profile) and
// the master secret from the key log (the embedded Capture is the key log writer).
type keyCapture struct {
	dtlssrtp.Capture
}

// serverHello is pion's ServerHello hook: it records the message and sends it unchanged.
func (k *keyCapture) serverHello(m handshake.MessageServerHello) handshake.Message {
	if h, ok := dtlssrtp.FromServerHello(&m); ok {
		k.SetHello(h)
	}
	return &m
}

var (
	errNoKeys = errors.New("signaling: SRTP keys not captured")
	errNoPair = errors.New("signaling: no ICE pair to send to")
)

// sealer derives the server's SRTP sending keys; the master secret is forgotten either way.
func (k *keyCapture) sealer() (*rtpSealer, error) {
	defer k.Forget()
	e := k.Exporter()
	if e == nil {
		return nil, errNoKeys
	}
	cfg, err := e.Keys(false)
	if err != nil {
		return nil, err
	}
	return newSealer(cfg.Profile, cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt)
}

// Send paths of a subscriber.
const (
	pathUndecided int32 = iota // DTLS has not connected: nothing can be sent
	pathDirect                 // encrypted and sent by direct
	pathPion                   // through pion's write chain
)

// direct is how a subscriber's RTP is sent directly: the socket and the SRTP keys.
type direct struct {
	conn *net.UDPConn
	seal *rtpSealer
	used atomic.Bool // a packet may have been sent: the streams are numbered by seal for good
}

// peerAddr is where a subscriber's packets go, in the two forms the sends take, in one allocation (each
// further object read per packet per subscriber is a trip to memory).
type peerAddr struct {
	ap netip.AddrPort
	sa sockaddr // for the batch's system call (batch_linux.go)
}

func newPeerAddr(ap netip.AddrPort) *peerAddr {
	a := &peerAddr{ap: ap}
	a.sa.set(ap)
	return a
}

// srtpOverhead is room for what SRTP appends: the longest authentication tag (16 bytes).
const srtpOverhead = 16

// writeDirect marshals one packet, with the abs-send-time header extension when absID is not 0 and no
// other, encrypts it and sends it now, in buf (returned, grown if it had to be), or adds it to batch, in
// the batch's buffer, when batch is not nil. st is the sending track's stream, h scratch for the
// encryption.
func (s *Subscriber) writeDirect(p *rtp.Packet, absID uint8, abs uint32, buf []byte, st *atomic.Pointer[gcmStream], h *rtp.Header,
	batch *sendBatch) ([]byte, error) {
	w := &s.direct
	// Marked used before the address is read: pairChanged stores the address, then reads used, so either
	// it sees this write coming, or this write sees the pair gone (atomics are sequentially consistent).
	if !w.used.Load() {
		w.used.Store(true) // once: a store per packet would bounce the line between the tracks' goroutines
	}
	to := s.remote.Load()
	if to == nil {
		return buf, errNoPair // as pion, which sends nothing without a pair
	}
	hl, size, err := rtpSize(p, absID)
	if err != nil {
		return buf, err
	}
	var b []byte
	if batch != nil {
		b = batch.buffer(size + srtpOverhead)[:size]
	} else {
		if cap(buf) < size+srtpOverhead {
			buf = make([]byte, 0, size+srtpOverhead)
		}
		b = buf[:size]
	}
	putRTP(b, hl, p, absID, abs)
	out, err := w.seal.seal(b, hl, st, h) // in place: the buffer has room for the tag
	if err != nil {
		return buf, err
	}
	if batch != nil {
		batch.add(out, to)
		return buf, nil
	}
	_, err = w.conn.WriteToUDPAddrPort(out, to.ap)
	return out[:0], err
}

var (
	errPadding = errors.New("signaling: RTP padding of size 0")
	errCSRCs   = errors.New("signaling: more than 15 CSRCs")
)

// rtpSize is the marshalled size of p's header, when it carries its CSRCs and, if absID is not 0, the
// abs-send-time extension alone, and of the whole packet with its payload and padding.
func rtpSize(p *rtp.Packet, absID uint8) (header, size int, err error) {
	if len(p.CSRC) > 15 {
		return 0, 0, errCSRCs
	}
	header = 12 + 4*len(p.CSRC)
	if absID != 0 {
		header += 8 // the one-byte form's profile and length, one element of 1 + 3 bytes
	}
	size = header + len(p.Payload)
	if p.Padding {
		if p.Header.PaddingSize == 0 {
			return 0, 0, errPadding
		}
		size += int(p.Header.PaddingSize)
	}
	return header, size, nil
}

// putRTP marshals p into b, of the sizes rtpSize gave: what rtp.Packet.MarshalTo writes for it with
// the one extension set (tested against it), without walking an extension list per packet.
func putRTP(b []byte, hl int, p *rtp.Packet, absID uint8, abs uint32) {
	b[0] = 2<<6 | byte(len(p.CSRC))
	if p.Padding {
		b[0] |= 1 << 5
	}
	b[1] = p.PayloadType & 0x7f
	if p.Marker {
		b[1] |= 1 << 7
	}
	binary.BigEndian.PutUint16(b[2:], p.SequenceNumber)
	binary.BigEndian.PutUint32(b[4:], p.Timestamp)
	binary.BigEndian.PutUint32(b[8:], p.SSRC)
	n := 12
	for _, c := range p.CSRC {
		binary.BigEndian.PutUint32(b[n:], c)
		n += 4
	}
	if absID != 0 {
		b[0] |= 1 << 4
		b[n], b[n+1], b[n+2], b[n+3] = 0xbe, 0xde, 0, 1 // RFC 8285 one-byte form, one 32-bit word
		b[n+4] = absID<<4 | 2                           // 3 bytes
		b[n+5], b[n+6], b[n+7] = byte(abs>>16), byte(abs>>8), byte(abs)
	}
	m := hl + copy(b[hl:], p.Payload)
	if pad := b[m:]; len(pad) > 0 {
		clear(pad)
		pad[len(pad)-1] = byte(len(pad))
	}
}

// subscriberAPI makes the pion API of one subscriber's connection: the engine's, with DTLS hooks that
// capture the keys for the direct path. When it answers an offer (WHEP) that leaves the DTLS role to it
// (a=setup:actpass), it takes the server's, which the direct path needs; browsers answer the server's own
// offers as the client.
func (e *Engine) subscriberAPI(k *keyCapture, offer string) (*webrtc.API, error) {
	se := e.subSE // a copy: the hooks are this connection's
	se.SetDTLSKeyLogWriter(k)
	se.SetDTLSServerHelloMessageHook(k.serverHello)
	if offer != "" && !strings.Contains(offer, "a=setup:passive") { // a peer that wants to be the server stays one
		if err := se.SetAnsweringDTLSRole(webrtc.DTLSRoleServer); err != nil {
			return nil, err
		}
	}
	return newAPI(se, false)
}

// decidePath chooses how the subscriber's packets are sent, when its DTLS connects (called by pion,
// before its SRTP starts).
func (s *Subscriber) decidePath() {
	if s.path.Load() != pathUndecided { // the pair was one the direct path cannot use (pairChanged)
		s.keys.Forget()
		return
	}
	seal, err := s.keys.sealer()
	if err != nil || s.tcp.Load() {
		s.room.e.log.Debug("media sent through pion", "room", s.room.name, "member", s.identity, "err", err, "tcp", s.tcp.Load())
		s.path.CompareAndSwap(pathUndecided, pathPion)
		return
	}
	s.direct.conn, s.direct.seal = s.room.e.udp, seal
	s.path.CompareAndSwap(pathUndecided, pathDirect) // unless pairChanged has just chosen pion
}

// pairChanged notes the selected ICE pair: where direct packets go, or that they cannot (ICE-TCP, or a
// socket that is not the media socket). Then pion sends, unless the direct path has sent already: pion's
// context would number the streams afresh (from rollover count 0), which after 65536 packets the
// receiver rejects, and which could encrypt one sequence number a second way. Such a subscriber is ended,
// and its client subscribes again (an ICE pair moving from UDP to TCP mid-session is rare).
func (s *Subscriber) pairChanged(p *webrtc.ICECandidatePair) {
	tcp := p != nil && p.Local != nil && p.Local.Protocol == webrtc.ICEProtocolTCP
	s.tcp.Store(tcp)
	var to *peerAddr
	if p != nil && p.Local != nil && p.Remote != nil && !tcp {
		ip, err := netip.ParseAddr(p.Remote.Address)
		local := s.room.e.udp.LocalAddr().(*net.UDPAddr)
		if err == nil && int(p.Local.Port) == local.Port {
			ap := netip.AddrPortFrom(ip.Unmap(), p.Remote.Port)
			to = newPeerAddr(ap)
		}
	}
	s.remote.Store(to) // before looking at used: a write that missed this has set used by now, or sends nothing
	if to != nil {
		return
	}
	// Never back from pion to direct either.
	if s.path.CompareAndSwap(pathUndecided, pathPion) || s.path.Load() != pathDirect {
		return
	}
	if !s.direct.used.Load() && s.path.CompareAndSwap(pathDirect, pathPion) {
		return
	}
	s.room.e.log.Info("a subscriber's ICE pair left the media socket; ending it", "room", s.room.name, "member", s.identity)
	go s.Close() // not from pion's callback: Close closes the peer connection
}

// sendReports sends the RTCP sender reports of the subscriber's directly sent tracks (pion sends those of
// the tracks it writes): receivers synchronise audio and video with them.
func (s *Subscriber) sendReports(now time.Time) {
	if s.path.Load() != pathDirect {
		return
	}
	s.mu.Lock()
	downs := make([]*downTrack, 0, len(s.downs)+len(s.stageD))
	downs = append(downs, s.stageD...)
	for _, d := range s.downs {
		downs = append(downs, d)
	}
	s.mu.Unlock()
	var reports []rtcp.Packet
	for _, d := range downs {
		d.mu.Lock() // the writes' lock
		r := d.local.senderReport(now)
		d.mu.Unlock()
		if r != nil {
			reports = append(reports, r)
		}
	}
	if len(reports) > 0 {
		_ = s.pc.WriteRTCP(reports)
	}
}

// SendPaths counts the engine's subscribers whose sending has been decided (their DTLS has connected): by
// the direct path, and through pion (ICE-TCP, or a peer that is the DTLS server). An operator sees in it
// which viewers cost more; the tests see that browsers take the direct path.
func (e *Engine) SendPaths() (direct, pion int) {
	e.mu.Lock()
	rooms := make([]*Room, 0, len(e.rooms))
	for _, r := range e.rooms {
		rooms = append(rooms, r)
	}
	e.mu.Unlock()
	for _, r := range rooms {
		r.mu.Lock()
		for s := range r.subs {
			switch s.path.Load() {
			case pathDirect:
				direct++
			case pathPion:
				pion++
			}
		}
		r.mu.Unlock()
	}
	return direct, pion
}
