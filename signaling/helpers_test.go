package signaling

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/liveforum/liveforum/internal/rtctest"
)

// The tests' media: real pion peers on loopback talking to a real Engine. Nothing is mocked; a test that
// needs a subscriber whose network stalls slows its writes down (slowDown).

const waitTimeout = 15 * time.Second

func loopback() []*net.IPNet {
	_, n, _ := net.ParseCIDR("127.0.0.0/8")
	return []*net.IPNet{n}
}

func newTestEngine(t *testing.T, mod func(*Config)) *Engine {
	t.Helper()
	cfg := Config{ICE: ICEConfig{UDPAddr: "127.0.0.1:0", Interfaces: []string{"lo"}, IPs: loopback()},
		Logger: slog.New(slog.DiscardHandler)}
	if mod != nil {
		mod(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// testPublisher is a client that publishes synthetic VP8 video (a keyframe every 30 frames) and Opus
// audio; each payload's last byte is the publisher's mark, so a subscriber can tell whose packet it got.
type testPublisher struct {
	pc           *webrtc.PeerConnection
	video, audio *webrtc.TrackLocalStaticRTP
	pub          *Publisher
	mark         byte
	sent         atomic.Uint64
	stop         chan struct{}
	wg           sync.WaitGroup
}

func publish(t *testing.T, r *Room, identity string, mark byte) *testPublisher {
	t.Helper()
	return publishCodec(t, r, identity, mark, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000})
}

// publishCodec publishes with the given video codec (the payloads stay VP8-shaped: the SFU does not decode).
func publishCodec(t *testing.T, r *Room, identity string, mark byte, video webrtc.RTPCodecCapability) *testPublisher {
	t.Helper()
	tp := &testPublisher{pc: rtctest.PeerConnection(t), mark: mark, stop: make(chan struct{})}
	var err error
	tp.video, err = webrtc.NewTrackLocalStaticRTP(video, "cam", identity)
	if err != nil {
		t.Fatal(err)
	}
	tp.audio, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "mic", identity)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range []webrtc.TrackLocal{tp.video, tp.audio} {
		if _, err := tp.pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	pub, answer, err := r.Publish(ctx, identity, "Name of "+identity, rtctest.Offer(t, tp.pc))
	if err != nil {
		t.Fatalf("publish %s: %v", identity, err)
	}
	tp.pub = pub
	if err := tp.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	tp.wg.Add(1)
	go tp.send()
	t.Cleanup(tp.close)
	return tp
}

// send writes 30 video frames (3 packets each) and 50 audio packets a second.
func (tp *testPublisher) send() {
	defer tp.wg.Done()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var vseq, aseq uint16
	var vts, ats uint32
	for frame := 0; ; frame++ {
		select {
		case <-tp.stop:
			return
		case <-tick.C:
		}
		ats += 960
		aseq++
		_ = tp.audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: aseq, Timestamp: ats}, Payload: []byte{0xfc, 1, 2, tp.mark}})
		if frame%3 == 2 {
			continue // 20 ms ticks, ~33 ms frames: two of every three ticks
		}
		vts += 3000
		key := byte(0x01) // P bit set: an interframe
		if frame%45 == 0 {
			key = 0x00
		}
		for i := range 3 {
			desc := byte(0x00)
			if i == 0 {
				desc = 0x10 // S: start of partition 0
			}
			vseq++
			_ = tp.video.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: vseq, Timestamp: vts, Marker: i == 2},
				Payload: []byte{desc, key, 0x9d, 0x01, 0x2a, tp.mark}})
		}
		tp.sent.Add(1)
	}
}

func (tp *testPublisher) close() {
	select {
	case <-tp.stop:
	default:
		close(tp.stop)
	}
	tp.wg.Wait()
}

// testSubscriber is a client receiving the stage; it counts the packets of each track kind and remembers
// the marks and sequence numbers it saw.
type testSubscriber struct {
	pc     *webrtc.PeerConnection
	sub    *Subscriber
	offers chan string

	mu      sync.Mutex
	packets map[string]int    // by kind
	marks   map[string][]byte // by kind, in arrival order (last byte of each payload)
	seqs    map[string][]uint16
	ssrcs   map[string]uint32 // by kind: the server's sending SSRC
	tracks  int
}

func newTestSubscriber(t *testing.T) *testSubscriber {
	return newTestSubscriberOn(rtctest.PeerConnection(t))
}

func newTestSubscriberOn(pc *webrtc.PeerConnection) *testSubscriber {
	ts := &testSubscriber{pc: pc, offers: make(chan string, 16),
		packets: map[string]int{}, marks: map[string][]byte{}, seqs: map[string][]uint16{},
		ssrcs: map[string]uint32{}}
	ts.pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		kind := tr.Kind().String()
		ts.mu.Lock()
		ts.tracks++
		ts.ssrcs[kind] = uint32(tr.SSRC())
		ts.mu.Unlock()
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			ts.mu.Lock()
			ts.packets[kind]++
			if len(p.Payload) > 0 {
				ts.marks[kind] = append(ts.marks[kind], p.Payload[len(p.Payload)-1])
			}
			ts.seqs[kind] = append(ts.seqs[kind], p.SequenceNumber)
			ts.mu.Unlock()
		}
	})
	return ts
}

// subscribe subscribes in the default mode and answers every offer the server makes.
func subscribe(t *testing.T, r *Room, identity string) *testSubscriber {
	t.Helper()
	return subscribeOn(t, r, identity, rtctest.PeerConnection(t))
}

// subscribeOn subscribes with the given client peer connection.
func subscribeOn(t *testing.T, r *Room, identity string, pc *webrtc.PeerConnection) *testSubscriber {
	t.Helper()
	ts := newTestSubscriberOn(pc)
	s, err := r.Subscribe(identity, func(sdp string) { ts.offers <- sdp })
	if err != nil {
		t.Fatal(err)
	}
	ts.sub = s
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		for {
			select {
			case offer := <-ts.offers:
				answer, err := rtctest.Answer(ts.pc, offer)
				if err == nil {
					err = s.Answer(answer)
				}
				if err != nil {
					select {
					case <-done: // the test is over: its peer connections are closing
					default:
						t.Errorf("answer: %v", err)
					}
				}
			case <-done:
				return
			}
		}
	}()
	t.Cleanup(func() { close(done); s.Close(); <-exited })
	return ts
}

func (ts *testSubscriber) count(kind string) int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.packets[kind]
}

func (ts *testSubscriber) lastMark(kind string) byte {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	m := ts.marks[kind]
	if len(m) == 0 {
		return 0
	}
	return m[len(m)-1]
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// slowDown makes every write to the subscriber's tracks take d, as a subscriber whose network stalls.
func slowDown(s *Subscriber, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, dt := range s.downs {
		w := dt.local.send
		slow := writeFunc(func(p *rtp.Packet, b *sendBatch) error { time.Sleep(d); return w(p, b) })
		dt.hook.Store(&slow)
	}
}

// simulcastPublisher publishes one VP8 track in three layers (rids q, h, f), each packet's payload sized
// like its layer (200, 500, 1100 bytes) and marked with the layer's rid.
type simulcastPublisher struct {
	pc     *webrtc.PeerConnection
	layers []*webrtc.TrackLocalStaticRTP
	stop   chan struct{}
	wg     sync.WaitGroup
	// pion does not write the mid and rid header extensions of the layers it sends: the test does, as a
	// browser would
	midID, ridID uint8
	mid          string
}

func publishSimulcast(t *testing.T, r *Room, identity string) *simulcastPublisher {
	t.Helper()
	sp := &simulcastPublisher{pc: rtctest.PeerConnection(t), stop: make(chan struct{})}
	var sender *webrtc.RTPSender
	for i, rid := range []string{"q", "h", "f"} {
		tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
			"cam", identity, webrtc.WithRTPStreamID(rid))
		if err != nil {
			t.Fatal(err)
		}
		sp.layers = append(sp.layers, tr)
		if i == 0 {
			sender, err = sp.pc.AddTrack(tr)
		} else {
			err = sender.AddEncoding(tr)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_, answer, err := r.Publish(ctx, identity, "", rtctest.Offer(t, sp.pc))
	if err != nil {
		t.Fatalf("publish simulcast: %v", err)
	}
	if err := sp.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	for _, x := range sender.GetParameters().HeaderExtensions {
		switch x.URI {
		case sdp.SDESMidURI:
			sp.midID = uint8(x.ID)
		case sdp.SDESRTPStreamIDURI:
			sp.ridID = uint8(x.ID)
		}
	}
	for _, tr := range sp.pc.GetTransceivers() {
		if tr.Sender() == sender {
			sp.mid = tr.Mid()
		}
	}
	if sp.midID == 0 || sp.ridID == 0 || sp.mid == "" {
		t.Fatalf("simulcast: no mid/rid extension negotiated (%d, %d, %q)", sp.midID, sp.ridID, sp.mid)
	}
	go func() { // RTCP must be read for the sender's interceptors
		for {
			if _, _, err := sender.ReadRTCP(); err != nil {
				return
			}
		}
	}()
	sp.wg.Add(1)
	go sp.send()
	t.Cleanup(sp.close)
	return sp
}

func (sp *simulcastPublisher) send() {
	defer sp.wg.Done()
	tick := time.NewTicker(33 * time.Millisecond)
	defer tick.Stop()
	sizes := []int{200, 500, 1100}
	marks := []byte{'q', 'h', 'f'}
	var seq uint16
	var ts uint32
	for frame := 0; ; frame++ {
		select {
		case <-sp.stop:
			return
		case <-tick.C:
		}
		seq++
		ts += 3000
		key := byte(0x01)
		if frame%15 == 0 {
			key = 0x00 // a keyframe every half second, so switches happen soon
		}
		for i, tr := range sp.layers {
			payload := make([]byte, sizes[i])
			payload[0], payload[1] = 0x10, key
			payload[len(payload)-1] = marks[i]
			h := rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts, Marker: true}
			_ = h.SetExtension(sp.midID, []byte(sp.mid))
			_ = h.SetExtension(sp.ridID, []byte(tr.RID()))
			_ = tr.WriteRTP(&rtp.Packet{Header: h, Payload: payload})
		}
	}
}

func (sp *simulcastPublisher) close() {
	select {
	case <-sp.stop:
	default:
		close(sp.stop)
	}
	sp.wg.Wait()
}
