package main

import (
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/liveforum/liveforum/internal/dtlssrtp"
)

// The lean client (-client lean, the default). A pion subscriber hands each packet from its socket to
// its ICE agent, its mux, its SRTP session and its track reader, a goroutine each with a buffer between:
// the bench's core filled at about 200 subscribers, before the server's did. Here pion still does ICE,
// DTLS and RTCP, on a socket of the subscriber's own that pion reads through an ICE UDP mux; the RTP is
// taken off that socket as it is read, decrypted with the session's keys (from the DTLS ServerHello seen
// on the socket and pion's key log, internal/dtlssrtp) and counted, on the mux's one reading goroutine.
// NACKs for the gaps are sent from here too, as pion's generator would (nackRetry).

// tap is a subscriber's socket as pion's ICE mux reads it, with the RTP taken out.
type tap struct {
	net.PacketConn
	sub *mediaSub
	win *window
	run [4]byte
	mux ice.UDPMux

	pts atomic.Pointer[map[uint8]bool] // payload type → video, from the answer

	// Held while a datagram read is handled: once close has set closed under it, the counts are final
	// (the mux's reader may return without reading again, so its ending cannot be waited for).
	readMu sync.Mutex
	closed bool

	dtlssrtp.Capture // the handshake's parts: the key log (pion's DTLS writes it) and the ServerHello

	mu    sync.Mutex // nacks
	nacks []pendingNack

	// The reader's:
	ctx        *srtp.Context
	hdr        rtp.Header
	buf        []byte
	streams    map[uint32]*rrStream // per SSRC: the sequence numbers seen, for NACKs and receiver reports
	undecrypt  int64                // RTP that could not be decrypted
	noKeys     bool                 // the keys could not be made from what was captured: not tried again
	lastRR     int64                // when the last receiver report was sent, unix nanoseconds
	nackSender uint32
	writeRTCP  func([]rtcp.Packet) error // the peer connection's (tests replace it)
}

// pendingNack is a packet missing from a stream, NACKed tries times, last at at.
type pendingNack struct {
	ssrc  uint32
	seq   uint16
	tries int
	at    time.Time
}

// NACK timing, as pion's generator: a missing packet is asked for at once, then again every nackEvery
// until it comes or nackTries asks were made; at most maxPending gaps are remembered.
const (
	maxStreams = 8 // SSRCs followed (WHEP sends two; a receiver report carries at most 31)
	nackEvery  = 100 * time.Millisecond
	nackTries  = 5
	maxPending = 256
)

func newTap(conn net.PacketConn, s *mediaSub, win *window, run [4]byte) *tap {
	t := &tap{PacketConn: conn, sub: s, win: win, run: run, buf: make([]byte, 1600),
		streams: map[uint32]*rrStream{}, nackSender: 0x6c660000 | uint32(s.idx&0xffff)}
	t.writeRTCP = func(p []rtcp.Packet) error {
		if s.pc == nil {
			return nil
		}
		return s.pc.WriteRTCP(p)
	}
	t.mux = webrtc.NewICEUDPMux(nil, t)
	return t
}

// setAnswer learns the payload types of the answer's video and audio, before any packet can come.
func (t *tap) setAnswer(answer string) {
	pts := map[uint8]bool{}
	var sd sdp.SessionDescription
	if sd.UnmarshalString(answer) == nil {
		for _, m := range sd.MediaDescriptions {
			for _, f := range m.MediaName.Formats {
				if pt, err := strconv.ParseUint(f, 10, 7); err == nil {
					pts[uint8(pt)] = m.MediaName.Media == "video"
				}
			}
		}
	}
	t.pts.Store(&pts)
}

// ReadFrom is what the mux reads: every datagram but RTP, which is counted here.
func (t *tap) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := t.PacketConn.ReadFrom(p)
		t.readMu.Lock()
		if t.closed {
			t.readMu.Unlock()
			return 0, nil, net.ErrClosed
		}
		if err != nil {
			t.readMu.Unlock()
			return n, addr, err
		}
		b := p[:n]
		switch {
		case n >= 12 && b[0] >= 128 && b[0] <= 191 && (b[1] < 192 || b[1] > 223): // RTP, not RTCP (RFC 5761, 7983)
			t.rtp(b)
			t.readMu.Unlock()
			continue
		case n > 13 && b[0] == 22 && b[3] == 0 && b[4] == 0 && t.ctx == nil && !t.noKeys:
			// A DTLS handshake record of epoch 0: the server's first flight? The first ServerHello counts
			// (a datagram from elsewhere cannot replace it).
			if h, ok := dtlssrtp.ServerHello(b); ok {
				t.SetHello(h)
			}
		}
		t.readMu.Unlock()
		return n, addr, err
	}
}

// rtp decrypts and counts one RTP packet.
func (t *tap) rtp(b []byte) {
	now := time.Now().UnixNano()
	if t.ctx == nil && (t.noKeys || !t.keys()) {
		t.undecrypt++
		return
	}
	pkt, err := t.ctx.DecryptRTP(t.buf[:0], b, &t.hdr)
	if err != nil {
		t.undecrypt++
		return
	}
	video, known := false, false
	if pts := t.pts.Load(); pts != nil {
		video, known = (*pts)[t.hdr.PayloadType]
	}
	st := &t.sub.audio
	if video {
		st = &t.sub.video
	}
	if !known {
		st.foreign++
		return
	}
	t.sub.count(st, pkt, video, now, t.win, t.run)
	t.noteSeq(t.hdr.SSRC, t.hdr.SequenceNumber, video && t.sub.nack) // NACK is negotiated for video only
	if now-t.lastRR >= int64(rrEvery) {
		t.lastRR = now
		t.sendReport()
	}
}

// rrEvery is how often the lean client sends a receiver report, as pion's report interceptor and
// browsers do (the server reads the loss in them): its RTCP costs the server what a viewer's would.
const rrEvery = time.Second

// sendReport sends a receiver report of every stream seen (the reader's: it owns streams), with its loss
// as RFC 3550 A.3 counts it, as a browser's would: the server's bandwidth controller reads it. Jitter is
// not measured here; it is reported as 0.
func (t *tap) sendReport() {
	rr := &rtcp.ReceiverReport{SSRC: t.nackSender}
	for ssrc, st := range t.streams {
		rr.Reports = append(rr.Reports, st.report(ssrc))
	}
	if len(rr.Reports) > 0 {
		_ = t.writeRTCP([]rtcp.Packet{rr})
	}
}

// rrStream is what the reader knows of a stream for NACKs and receiver reports (RFC 3550 A.1, A.3).
type rrStream struct {
	base, ext           uint32 // the first and the highest sequence number, extended over wraps
	received            uint32 // packets received, retransmissions and duplicates included (as A.3 counts)
	expPrior, recvPrior uint32 // expected and received at the last report
}

// report is the stream's reception report, and starts the next interval.
func (st *rrStream) report(ssrc uint32) rtcp.ReceptionReport {
	expected := st.ext - st.base + 1
	lost := max(int64(expected)-int64(st.received), 0) // duplicates can make it negative: reported as 0
	expInterval, recvInterval := expected-st.expPrior, st.received-st.recvPrior
	st.expPrior, st.recvPrior = expected, st.received
	var fraction uint8
	if lostInterval := int64(expInterval) - int64(recvInterval); expInterval > 0 && lostInterval > 0 {
		fraction = uint8(lostInterval << 8 / int64(expInterval))
	}
	return rtcp.ReceptionReport{SSRC: ssrc, FractionLost: fraction, TotalLost: uint32(min(lost, 0x7fffff)),
		LastSequenceNumber: st.ext}
}

// keys makes the decrypting context once the handshake's parts are in (before the first SRTP packet:
// the server sends none before it has the client's Finished).
func (t *tap) keys() bool {
	e := t.Exporter()
	if e == nil {
		return false
	}
	defer t.Forget()
	cfg, err := e.Keys(true)
	if err != nil {
		t.noKeys = true
		return false
	}
	ctx, err := srtp.CreateContext(cfg.Keys.RemoteMasterKey, cfg.Keys.RemoteMasterSalt, cfg.Profile)
	if err != nil {
		t.noKeys = true
		return false
	}
	t.ctx = ctx
	return true
}

// noteSeq records a sequence number of a stream; a gap is NACKed at once when nack is set.
func (t *tap) noteSeq(ssrc uint32, seq uint16, nack bool) {
	st := t.streams[ssrc]
	if st == nil {
		if len(t.streams) < maxStreams {
			t.streams[ssrc] = &rrStream{base: uint32(seq), ext: uint32(seq), received: 1}
		}
		return
	}
	st.received++
	high := uint16(st.ext)
	d := int16(seq - high)
	if d <= 0 {
		if nack {
			t.arrived(ssrc, seq) // a retransmission, or late
		}
		return
	}
	st.ext += uint32(d)
	if d == 1 || !nack {
		return
	}
	var missing []uint16
	t.mu.Lock()
	for x := high + 1; x != seq && len(t.nacks) < maxPending; x++ {
		t.nacks = append(t.nacks, pendingNack{ssrc: ssrc, seq: x, tries: 1, at: time.Now()})
		missing = append(missing, x)
	}
	t.mu.Unlock()
	t.sendNacks(ssrc, missing)
}

// arrived forgets a missing packet that came.
func (t *tap) arrived(ssrc uint32, seq uint16) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, n := range t.nacks {
		if n.ssrc == ssrc && n.seq == seq {
			t.nacks = append(t.nacks[:i], t.nacks[i+1:]...)
			return
		}
	}
}

// nackRetry asks again for the packets still missing after nackEvery, and gives up after nackTries.
func (t *tap) nackRetry(now time.Time) {
	t.mu.Lock()
	if len(t.nacks) == 0 { // the common case, every tick for every viewer: no allocation
		t.mu.Unlock()
		return
	}
	again := map[uint32][]uint16{}
	kept := t.nacks[:0]
	for _, n := range t.nacks {
		if now.Sub(n.at) >= nackEvery {
			if n.tries >= nackTries {
				continue
			}
			n.tries++
			n.at = now
			again[n.ssrc] = append(again[n.ssrc], n.seq)
		}
		kept = append(kept, n)
	}
	t.nacks = kept
	t.mu.Unlock()
	for ssrc, seqs := range again {
		t.sendNacks(ssrc, seqs)
	}
}

func (t *tap) sendNacks(ssrc uint32, seqs []uint16) {
	if len(seqs) == 0 {
		return
	}
	_ = t.writeRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{SenderSSRC: t.nackSender, MediaSSRC: ssrc,
		Nacks: rtcp.NackPairsFromSequenceNumbers(seqs)}})
}

// close ends the mux and its socket; after it the counts are the bench's to read.
func (t *tap) close() {
	_ = t.mux.Close()
	_ = t.PacketConn.Close()
	t.readMu.Lock()
	t.closed = true
	t.readMu.Unlock()
}
