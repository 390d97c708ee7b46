package main

import (
	"context"
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
)

// mediaSub is one WHEP viewer. Each of its tracks has a reader goroutine that owns that track's
// streamStats; the rest of the bench reads them only after the readers have returned. Only the first
// packet's arrival is shared while running (atomics, written once).
type mediaSub struct {
	idx      int
	token    string
	pc       *webrtc.PeerConnection
	location string
	err      error // why it did not connect

	nack         bool         // NACKs are sent (lean: by the tap)
	tap          *tap         // the lean client's socket (nil: pion's receive chain)
	posted       time.Time    // the WHEP POST started
	firstNs      atomic.Int64 // arrival of the first packet of any track
	firstVideoNs atomic.Int64
	dropped      atomic.Bool // the connection failed or disconnected after it was up
	tracks       atomic.Int32

	video, audio streamStats
	readers      sync.WaitGroup
	mu           sync.Mutex // orders readers.Add before closing's Wait
	closing      bool
	closeOnce    sync.Once
}

// ringBits is how far back, in packets, a late packet is still told from a duplicate.
const ringBits = 4096

// streamStats is what a subscriber measured of one track. Loss is not kept here: it is what the
// publisher sent in the window less what arrived (fresh, in the window).
type streamStats struct {
	packets, bytes int64 // distinct packets of this run sent in the window, and their RTP bytes
	dups           int64 // a packet seen before (a retransmission that was not needed)
	late           int64 // arrived after a later one
	tooLate        int64 // older than ringBits packets behind the newest: not told apart, not counted
	foreign        int64 // not this run's (another publisher on the stage) or too short to carry marks
	gaps           int64 // counter jumps seen (a burst of consecutive losses is one gap)

	started     bool
	highest     uint32
	ring        [ringBits / 64]uint64
	lastTransit int64
	jitter      float64 // RFC 3550 interarrival jitter, ns
	jitterSum   float64 // sum of the jitter estimate after each packet in the window
	jitterN     int64
	lat         histogram // send to arrival
}

// fresh records counter c and reports whether it is the first time it arrived (for packets within
// ringBits of the newest).
func (s *streamStats) fresh(c uint32) bool {
	bit := func(x uint32) (int, uint64) { return int(x/64) % len(s.ring), 1 << (x % 64) }
	if !s.started {
		s.started, s.highest = true, c
		i, m := bit(c)
		s.ring[i] |= m
		return true
	}
	d := int32(c - s.highest)
	switch {
	case d > 0:
		if d > 1 {
			s.gaps++
		}
		if d >= ringBits {
			s.ring = [ringBits / 64]uint64{}
		} else {
			for x := s.highest + 1; x != c; x++ {
				i, m := bit(x)
				s.ring[i] &^= m
			}
		}
		s.highest = c
		i, m := bit(c)
		s.ring[i] |= m
		return true
	case -d >= ringBits:
		s.tooLate++
		return false
	}
	i, m := bit(c)
	if s.ring[i]&m != 0 {
		s.dups++
		return false
	}
	s.ring[i] |= m
	s.late++
	return true
}

// connectSub starts one viewer over WHEP and waits until its peer connection is up. The returned
// mediaSub is never nil; its err says why it failed.
func connectSub(ctx context.Context, b *mediaBench, m *mediaAPI, i int, token string) (*mediaSub, error) {
	s := &mediaSub{idx: i, token: token, nack: b.cfg.nack}
	s.err = s.connect(ctx, b, m)
	return s, s.err
}

func (s *mediaSub) connect(ctx context.Context, b *mediaBench, m *mediaAPI) error {
	api := m.api
	if b.cfg.client == "lean" {
		ip := net.IPv4zero
		if m.loopback {
			ip = net.IPv4(127, 0, 0, 1)
		}
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ip})
		if err != nil {
			return err
		}
		_ = conn.SetReadBuffer(1 << 20) // a burst of a keyframe's packets while the reader is off the core
		s.tap = newTap(conn, s, b.win, b.run)
		api = m.leanAPI(s.tap)
		b.tapMu.Lock()
		b.taps = append(b.taps, s.tap)
		b.tapMu.Unlock()
	}
	var err error
	s.pc, err = api.NewPeerConnection(webrtc.Configuration{Certificates: []webrtc.Certificate{m.cert}})
	if err != nil {
		return err
	}
	states := make(chan webrtc.PeerConnectionState, 8)
	var up atomic.Bool
	s.pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			up.Store(true)
		case webrtc.PeerConnectionStateDisconnected, webrtc.PeerConnectionStateFailed:
			if up.Load() {
				s.dropped.Store(true)
			}
		}
		select {
		case states <- st:
		default:
		}
	})
	s.pc.OnTrack(func(tr *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
		st := &s.audio
		if tr.Kind() == webrtc.RTPCodecTypeVideo {
			st = &s.video
		}
		if s.tracks.Add(1) > 2 {
			return // WHEP asked for one of each
		}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			return
		}
		s.readers.Add(1)
		s.mu.Unlock()
		defer s.readers.Done()
		go drainRTCP(recv)
		s.read(tr, st, b.win, b.run)
	})
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := s.pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			return err
		}
	}
	offer, err := completeOffer(ctx, s.pc)
	if err != nil {
		return err
	}
	s.posted = time.Now()
	answer, loc, err := postOffer(ctx, b.hc, b.cfg.base+"/whep/"+b.cfg.room, s.token, offer)
	if err != nil {
		return err
	}
	s.location = loc
	if s.tap != nil {
		s.tap.setAnswer(answer)
	}
	if err := s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return err
	}
	return waitConnected(ctx, states, 30*time.Second)
}

// drainRTCP reads the receiver's RTCP (the server's sender reports), which the interceptors need read.
func drainRTCP(recv *webrtc.RTPReceiver) {
	for {
		if _, _, err := recv.ReadRTCP(); err != nil {
			return
		}
	}
}

// read is a track's receive loop: into one buffer, parsing only the RTP header's length and the marks.
// It allocates nothing per packet (pion's interceptors may).
func (s *mediaSub) read(tr *webrtc.TrackRemote, st *streamStats, win *window, run [4]byte) {
	video := tr.Kind() == webrtc.RTPCodecTypeVideo
	buf := make([]byte, 1600)
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		s.count(st, buf[:n], video, time.Now().UnixNano(), win, run)
	}
}

// count records one packet (decrypted, RTP header included) of a track that arrived at now.
func (s *mediaSub) count(st *streamStats, pkt []byte, video bool, now int64, win *window, run [4]byte) {
	if !st.started {
		s.firstNs.CompareAndSwap(0, now)
		if video {
			s.firstVideoNs.CompareAndSwap(0, now)
		}
	}
	pay, ok := rtpPayload(pkt)
	if !ok || len(pay) < markLen || [4]byte(pay[offRun:markLen]) != run {
		st.foreign++
		return
	}
	counter := binary.BigEndian.Uint32(pay[offCounter:])
	sent := int64(binary.BigEndian.Uint64(pay[offSentNs:]))
	if !st.fresh(counter) || !win.contains(sent) {
		return
	}
	st.packets++
	st.bytes += int64(len(pkt))
	transit := now - sent
	if st.jitterN > 0 {
		d := transit - st.lastTransit
		if d < 0 {
			d = -d
		}
		st.jitter += (float64(d) - st.jitter) / 16
	}
	st.lastTransit = transit
	st.jitterSum += st.jitter
	st.jitterN++
	st.lat.record(time.Duration(transit))
}

// rtpPayload returns an RTP packet's payload: after the fixed header, the CSRCs and the header
// extension, before any padding.
func rtpPayload(b []byte) ([]byte, bool) {
	if len(b) < 12 || b[0]>>6 != 2 {
		return nil, false
	}
	off := 12 + 4*int(b[0]&0x0f)
	if b[0]&0x10 != 0 {
		if len(b) < off+4 {
			return nil, false
		}
		off += 4 + 4*int(binary.BigEndian.Uint16(b[off+2:]))
	}
	end := len(b)
	if b[0]&0x20 != 0 && end > 0 {
		end -= int(b[end-1])
	}
	if off > end {
		return nil, false
	}
	return b[off:end], true
}

// close ends the WHEP session and the peer connection, and waits for the readers; it may run twice.
func (s *mediaSub) close(b *mediaBench) {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		s.mu.Unlock()
		b.endSession(s.location, s.token)
		if s.pc != nil {
			_ = s.pc.Close()
		}
		if s.tap != nil {
			s.tap.close() // after which its counts are final
		}
	})
	s.readers.Wait()
}
