package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// mediaPublisher is the synthetic speaker: one WHIP session sending VP8 video at the configured bitrate
// (30 frames/s, a keyframe every 2 s and whenever the server sends a PLI or FIR) and Opus audio (50
// packets/s of 80 bytes). Nothing is encoded: each payload starts with codec headers an SFU reads (the
// VP8 payload descriptor's S bit and the payload header's P bit, which tell a keyframe) and carries the
// marks subscribers measure with (putMarks).
type mediaPublisher struct {
	pc           *webrtc.PeerConnection
	video, audio *webrtc.TrackLocalStaticRTP
	location     string
	token        string
	win          *window
	run          [4]byte

	framePackets []int // payload size of each packet of a frame
	keyNow       atomic.Bool
	stop         chan struct{}
	stopOnce     sync.Once
	sender       sync.WaitGroup // send
	wg           sync.WaitGroup // the RTCP readers

	// Owned by the sending goroutine until wg.Wait.
	videoSent, audioSent       int64 // in the window
	videoBytes                 int64 // payload bytes in the window
	keyframes, keyframesAsked  int64 // sent in all; of those, answering a PLI or FIR
	writeErrors                int64
	pliRead                    atomic.Int64 // PLIs and FIRs read from the server
	videoCounter, audioCounter uint32
	videoSeq, audioSeq         uint16
	videoTS, audioTS           uint32
	videoBuf, audioBuf         []byte
	videoPkt, audioPkt         rtp.Packet
	lastKey                    time.Time
}

// framePayloads splits a frame of kbps/30 bytes into packets of at most maxVideoPay bytes, as even as
// possible.
func framePayloads(kbps int) []int {
	frame := max(kbps*1000/8/30, markLen)
	n := (frame + maxVideoPay - 1) / maxVideoPay
	out := make([]int, n)
	for i := range out {
		out[i] = frame / n
		if i < frame%n {
			out[i]++
		}
	}
	return out
}

// startPublisher publishes over WHIP and starts sending.
func startPublisher(ctx context.Context, b *mediaBench, api *webrtc.API, token string) (*mediaPublisher, error) {
	p := &mediaPublisher{token: token, win: b.win, run: b.run, stop: make(chan struct{}),
		framePackets: framePayloads(b.cfg.videoKbps)}
	p.videoBuf = make([]byte, maxVideoPay)
	p.audioBuf = make([]byte, audioPay)
	var err error
	if p.pc, err = api.NewPeerConnection(webrtc.Configuration{}); err != nil {
		return nil, err
	}
	states := make(chan webrtc.PeerConnectionState, 8)
	p.pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		select {
		case states <- st:
		default:
		}
	})
	ok := false
	defer func() {
		if !ok {
			_ = p.pc.Close()
		}
	}()
	p.video, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "bench")
	if err != nil {
		return nil, err
	}
	p.audio, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "bench")
	if err != nil {
		return nil, err
	}
	var senders []*webrtc.RTPSender
	for _, tr := range []webrtc.TrackLocal{p.video, p.audio} {
		t, err := p.pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			return nil, err
		}
		senders = append(senders, t.Sender())
	}
	offer, err := completeOffer(ctx, p.pc)
	if err != nil {
		return nil, err
	}
	answer, loc, err := postOffer(ctx, b.hc, b.cfg.base+"/whip/"+b.cfg.room, token, offer)
	if err != nil {
		return nil, err
	}
	p.location = loc
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		b.endSession(loc, token)
		return nil, err
	}
	if err := waitConnected(ctx, states, 20*time.Second); err != nil {
		b.endSession(loc, token)
		return nil, err
	}
	ok = true
	// The senders' RTCP must be read for the interceptors (NACKs answered, reports); a PLI or FIR on the
	// video asks for a keyframe.
	for i, s := range senders {
		p.wg.Go(func() { p.readRTCP(s, i == 0) })
	}
	p.sender.Go(p.send)
	return p, nil
}

func (p *mediaPublisher) readRTCP(s *webrtc.RTPSender, video bool) {
	for {
		pkts, _, err := s.ReadRTCP()
		if err != nil {
			return
		}
		if !video {
			continue
		}
		for _, pkt := range pkts {
			switch pkt.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				p.pliRead.Add(1)
				p.keyNow.Store(true)
			}
		}
	}
}

const (
	frameInterval = time.Second / 30
	audioInterval = 20 * time.Millisecond
	keyInterval   = 2 * time.Second
	// keyAnswerGap bounds keyframes sent in answer to PLIs: a burst of subscribers asking at once gets one.
	keyAnswerGap = 100 * time.Millisecond
)

// send paces video frames and audio packets by the clock until stopped. A publisher that fell behind
// (the bench's core starved) skips ahead rather than bursting.
func (p *mediaPublisher) send() {
	now := time.Now()
	nextV, nextA := now, now
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-timer.C:
		}
		now = time.Now()
		if !now.Before(nextA) {
			p.sendAudio()
			nextA = nextA.Add(audioInterval)
			if now.Sub(nextA) > 200*time.Millisecond {
				nextA = now.Add(audioInterval)
			}
		}
		if !now.Before(nextV) {
			p.sendFrame(now)
			nextV = nextV.Add(frameInterval)
			if now.Sub(nextV) > 200*time.Millisecond {
				nextV = now.Add(frameInterval)
			}
		}
		next := nextA
		if nextV.Before(next) {
			next = nextV
		}
		timer.Reset(time.Until(next))
	}
}

func (p *mediaPublisher) sendAudio() {
	p.audioSeq++
	p.audioTS += 960
	b := p.audioBuf
	b[0], b[1] = 0xfc, 0xff // Opus TOC (CELT fullband 20 ms, one frame), filler
	ns := time.Now().UnixNano()
	putMarks(b, p.audioCounter, ns, p.run)
	p.audioCounter++
	p.audioPkt = rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: p.audioSeq, Timestamp: p.audioTS, Marker: true}, Payload: b}
	if err := p.audio.WriteRTP(&p.audioPkt); err != nil {
		p.writeErrors++
	}
	if p.win.contains(ns) {
		p.audioSent++
	}
}

func (p *mediaPublisher) sendFrame(now time.Time) {
	key := p.lastKey.IsZero() || now.Sub(p.lastKey) >= keyInterval
	if !key && p.keyNow.Load() && now.Sub(p.lastKey) >= keyAnswerGap {
		key = true
		p.keyframesAsked++
	}
	if key {
		p.keyNow.Store(false)
		p.lastKey = now
		p.keyframes++
	}
	p.videoTS += 90000 / 30
	last := len(p.framePackets) - 1
	for i, size := range p.framePackets {
		b := p.videoBuf[:size]
		b[0] = 0x00 // VP8 payload descriptor: no extensions, partition 0; S only on the frame's first packet
		b[1] = 0x01 // the VP8 payload header's first byte on the first packet: P bit set for an interframe
		if i == 0 {
			b[0] = 0x10
			if key {
				b[1] = 0x00
			}
		}
		ns := time.Now().UnixNano()
		putMarks(b, p.videoCounter, ns, p.run)
		p.videoCounter++
		p.videoSeq++
		p.videoPkt = rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: p.videoSeq, Timestamp: p.videoTS, Marker: i == last}, Payload: b}
		if err := p.video.WriteRTP(&p.videoPkt); err != nil {
			p.writeErrors++
		}
		if p.win.contains(ns) {
			p.videoSent++
			p.videoBytes += int64(size)
		}
	}
}

// stopSending stops the sending goroutine and waits for it, so its counters may be read; it may run twice.
func (p *mediaPublisher) stopSending() {
	p.stopOnce.Do(func() { close(p.stop) })
	p.sender.Wait()
}

// close ends the WHIP session and the peer connection, and waits for the publisher's goroutines.
func (p *mediaPublisher) close(b *mediaBench) {
	p.stopSending()
	b.endSession(p.location, p.token)
	p.location = ""
	_ = p.pc.Close()
	p.wg.Wait()
}
