package signaling

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/liveforum/liveforum/internal/rtctest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A speaker publishes video and audio; a member subscribed before (the server renegotiates to add the
// tracks) and one subscribed after both receive packets of both.
func TestPublishSubscribe(t *testing.T) {
	e := newTestEngine(t, nil)
	r, err := e.Room("plaza")
	if err != nil {
		t.Fatal(err)
	}
	early := subscribe(t, r, "early")
	publish(t, r, "ana", 'a')
	late := subscribe(t, r, "late")
	for _, s := range []*testSubscriber{early, late} {
		eventually(t, "video and audio packets arrive", func() bool { return s.count("video") >= 30 && s.count("audio") >= 30 })
		if m := s.lastMark("video"); m != 'a' {
			t.Fatalf("video payload mark %q, want 'a'", m)
		}
	}
	if got := r.Publishers(); len(got) != 1 || got[0] != "ana" {
		t.Fatalf("publishers %v, want [ana]", got)
	}
	if got := r.Names(); len(got) != 1 || got["ana"] != "Name of ana" {
		t.Fatalf("names %v, want ana: Name of ana", got)
	}
}

// One subscriber whose writes stall (each takes 100 ms) loses its own packets; the others receive at the
// publisher's rate, and the publisher's track is read as fast as it sends.
func TestSlowSubscriberDoesNotSlowOthers(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.QueuePackets = 32 })
	r, _ := e.Room("plaza")
	tp := publish(t, r, "ana", 'a')
	slow := subscribe(t, r, "slow")
	fast := []*testSubscriber{subscribe(t, r, "fast1"), subscribe(t, r, "fast2")}
	eventually(t, "every subscriber receives video", func() bool {
		return slow.count("video") > 0 && fast[0].count("video") > 0 && fast[1].count("video") > 0
	})
	slowDown(slow.sub, 100*time.Millisecond)
	before := make([]int, len(fast))
	for i, s := range fast {
		before[i] = s.count("video")
	}
	slowBefore, sentBefore := slow.count("video"), tp.sent.Load()
	time.Sleep(2 * time.Second)
	sentFrames := int(tp.sent.Load() - sentBefore)
	for i, s := range fast {
		got := s.count("video") - before[i]
		if got < sentFrames*3*8/10 { // 3 packets a frame; 80 % leaves room for the start and end of the window
			t.Errorf("fast subscriber %d got %d video packets in 2 s, the publisher sent %d", i, got, sentFrames*3)
		}
	}
	if got := slow.count("video") - slowBefore; got > 25 {
		t.Errorf("the slow subscriber got %d packets in 2 s at 100 ms a write: its writes were not slowed", got)
	}
	var dropped uint64
	slow.sub.mu.Lock()
	for _, d := range slow.sub.downs {
		dropped += d.dropped.Load()
	}
	slow.sub.mu.Unlock()
	if dropped == 0 {
		t.Error("the slow subscriber's queue never overflowed")
	}
}

// A speaker who is stopped (demoted) stops for every subscriber at once; the tracks are taken away.
func TestStopPublisherStopsTracks(t *testing.T) {
	e := newTestEngine(t, nil)
	r, _ := e.Room("plaza")
	publish(t, r, "ana", 'a')
	subs := []*testSubscriber{subscribe(t, r, "bo"), subscribe(t, r, "cy")}
	for _, s := range subs {
		eventually(t, "packets arrive", func() bool { return s.count("video") > 10 && s.count("audio") > 10 })
	}
	if !r.StopPublisher("ana") {
		t.Fatal("StopPublisher: ana was not publishing")
	}
	time.Sleep(300 * time.Millisecond) // packets in flight
	counts := []int{subs[0].count("video") + subs[0].count("audio"), subs[1].count("video") + subs[1].count("audio")}
	time.Sleep(time.Second)
	for i, s := range subs {
		if now := s.count("video") + s.count("audio"); now != counts[i] {
			t.Errorf("subscriber %d received %d more packets after the speaker was stopped", i, now-counts[i])
		}
		s.sub.mu.Lock()
		n := len(s.sub.downs)
		s.sub.mu.Unlock()
		if n != 0 {
			t.Errorf("subscriber %d still has %d tracks", i, n)
		}
	}
	if len(r.Publishers()) != 0 || r.StopPublisher("ana") {
		t.Fatal("ana still publishes")
	}
}

// A moderator's mute stops a speaker's audio at the server; the video goes on; unmuting resumes it.
func TestMuteStopsAudioAtTheServer(t *testing.T) {
	e := newTestEngine(t, nil)
	r, _ := e.Room("plaza")
	tp := publish(t, r, "ana", 'a')
	s := subscribe(t, r, "bo")
	eventually(t, "audio arrives", func() bool { return s.count("audio") > 10 })
	tp.pub.Mute("audio", true)
	time.Sleep(200 * time.Millisecond)
	audio, video := s.count("audio"), s.count("video")
	time.Sleep(time.Second)
	if got := s.count("audio") - audio; got != 0 {
		t.Errorf("%d audio packets arrived while muted", got)
	}
	if s.count("video")-video < 30 {
		t.Errorf("video stopped too while audio was muted")
	}
	tp.pub.Mute("audio", false)
	eventually(t, "audio resumes", func() bool { return s.count("audio") > audio+10 })
}

// The stage (WHEP's view) follows the newest speaker: when a second speaker starts, the same track
// carries the new speaker's packets, and its sequence numbers go on one by one, without a jump or a hole.
func TestStageFollowsTheNewestSpeaker(t *testing.T) {
	e := newTestEngine(t, nil)
	r, _ := e.Room("plaza")
	publish(t, r, "ana", 'a')
	ts := watchStage(t, r)
	eventually(t, "ana's video and audio on the stage", func() bool {
		return ts.lastMark("video") == 'a' && ts.lastMark("audio") == 'a'
	})
	publish(t, r, "bo", 'b')
	eventually(t, "bo's video and audio on the stage", func() bool {
		return ts.lastMark("video") == 'b' && ts.lastMark("audio") == 'b'
	})
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.tracks != 2 {
		t.Errorf("the viewer got %d tracks, want 2 (the stage's video and audio)", ts.tracks)
	}
	// No hole either: a hole is what a receiver takes for loss (and NACKs, and reports, lowering its layer).
	for kind, seqs := range ts.seqs {
		for i := 1; i < len(seqs); i++ {
			if d := seqs[i] - seqs[i-1]; d != 1 {
				t.Fatalf("%s sequence numbers go from %d to %d at the switch", kind, seqs[i-1], seqs[i])
			}
		}
	}
}

// A WHEP viewer of a speaker sending H.264 (as OBS does) gets H.264 when it offers it.
func TestStageCarriesTheSpeakersCodec(t *testing.T) {
	e := newTestEngine(t, nil)
	r, _ := e.Room("plaza")
	publishCodec(t, r, "obs", 'h', webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"})
	eventually(t, "the H.264 track is on stage", func() bool { return len(r.tracks()) == 2 })
	ts := watchStage(t, r)
	eventually(t, "the speaker's H.264 video reaches the viewer", func() bool { return ts.lastMark("video") == 'h' })
}

// watchStage is a WHEP-like viewer of the room's stage: it offers to receive video and audio.
func watchStage(t *testing.T, r *Room) *testSubscriber {
	t.Helper()
	ts := newTestSubscriber(t)
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := ts.pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	s, answer, err := r.SubscribeStage(ctx, "viewer", rtctest.Offer(t, ts.pc))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := ts.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	return ts
}

// Offers that are not SDP, that carry no media or too many tracks are refused with their own errors.
func TestBadOffers(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.MaxTracksPerPublisher = 1 })
	r, _ := e.Room("plaza")
	ctx := context.Background()
	if _, _, err := r.Publish(ctx, "ana", "", "hello"); !errors.Is(err, ErrBadSDP) {
		t.Errorf("publish garbage: %v, want ErrBadSDP", err)
	}
	if _, _, err := r.Publish(ctx, "ana", "", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"); !errors.Is(err, ErrBadSDP) {
		t.Errorf("publish without media: %v, want ErrBadSDP", err)
	}
	pc := rtctest.PeerConnection(t)
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := r.Publish(ctx, "ana", "", rtctest.Offer(t, pc)); !errors.Is(err, ErrTooManyTracks) {
		t.Errorf("publish two tracks where one is allowed: %v, want ErrTooManyTracks", err)
	}
	if _, _, err := r.SubscribeStage(ctx, "viewer", "v=0\r\n"); !errors.Is(err, ErrBadSDP) {
		t.Errorf("stage with a broken offer: %v, want ErrBadSDP", err)
	}
}

// A simulcast speaker: a subscriber gets the highest layer, the lowest when it asks for low quality (its
// tile is small), and a lower one when it reports heavy loss; the sequence numbers go on across switches.
func TestSimulcastLayers(t *testing.T) {
	e := newTestEngine(t, nil)
	r, _ := e.Room("plaza")
	publishSimulcast(t, r, "ana")
	eventually(t, "three layers arrive", func() bool {
		for _, src := range r.tracks() {
			src.mu.Lock()
			n := len(src.layers)
			src.mu.Unlock()
			return n == 3
		}
		return false
	})
	s := subscribe(t, r, "bo")
	eventually(t, "the subscriber gets the highest layer", func() bool { return s.lastMark("video") == 'f' })
	if !s.sub.SetQuality("ana:cam", QualityLow) {
		t.Fatal("SetQuality: no track ana:cam")
	}
	eventually(t, "the lowest layer after asking for low quality", func() bool { return s.lastMark("video") == 'q' })
	s.sub.SetQuality("ana:cam", QualityHigh)
	eventually(t, "the highest layer again", func() bool { return s.lastMark("video") == 'f' })

	// Heavy loss reported by the member: the cap steps down.
	s.sub.mu.Lock()
	var d *downTrack
	for _, x := range s.sub.downs {
		d = x
	}
	s.sub.mu.Unlock()
	eventually(t, "a lower layer under loss", func() bool {
		d.lost.Store(100) // ~40 %, as a receiver report would say
		return s.lastMark("video") != 'f'
	})

	s.mu.Lock()
	defer s.mu.Unlock()
	seqs := s.seqs["video"]
	for i := 1; i < len(seqs); i++ {
		if diff := seqs[i] - seqs[i-1]; diff == 0 || diff > 100 {
			t.Fatalf("video sequence numbers jump from %d to %d", seqs[i-1], seqs[i])
		}
	}
}

// A moderator's mute holds when the muted speaker publishes again (as a browser does to add its camera).
func TestMuteHoldsOverARepublish(t *testing.T) {
	e := newTestEngine(t, nil)
	r, _ := e.Room("plaza")
	tp := publish(t, r, "ana", 'a')
	s := subscribe(t, r, "bo")
	eventually(t, "audio arrives", func() bool { return s.count("audio") > 10 })
	tp.pub.Mute("audio", true)
	tp.close()
	publish(t, r, "ana", 'b') // replaces the first publisher
	eventually(t, "the new publisher's video arrives", func() bool { return s.lastMark("video") == 'b' })
	audio := s.count("audio")
	time.Sleep(time.Second)
	if got := s.count("audio") - audio; got != 0 {
		t.Fatalf("%d audio packets from the muted speaker's new publisher", got)
	}
	r.Mute("ana", "audio", false)
	eventually(t, "audio after the unmute", func() bool { return s.count("audio") > audio+10 })
}

// Behind 1:1 NAT the answer's candidates carry the public address instead of the host's.
func TestPublicIPsInCandidates(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.ICE.NAT1To1IPs = []string{"203.0.113.7"} })
	r, _ := e.Room("plaza")
	pc := rtctest.PeerConnection(t)
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	_, answer, err := r.Publish(context.Background(), "ana", "", rtctest.Offer(t, pc))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(answer, " 203.0.113.7 ") || strings.Contains(answer, " 127.0.0.1 ") {
		t.Fatalf("answer's candidates should name 203.0.113.7 only:\n%s", answer)
	}
}

// A room its engine forgot while empty (a failed offer, the last session gone) takes sessions again
// through a Room value obtained before: they land where later lookups find them.
func TestForgottenRoomIsFoundAgain(t *testing.T) {
	e := newTestEngine(t, nil)
	r, _ := e.Room("plaza")
	if _, _, err := r.Publish(context.Background(), "ana", "", "garbage"); !errors.Is(err, ErrBadSDP) {
		t.Fatalf("bad offer: %v", err)
	}
	e.mu.Lock()
	_, kept := e.rooms["plaza"]
	e.mu.Unlock()
	if kept {
		t.Fatal("a failed offer left an empty room in the engine")
	}
	publish(t, r, "ana", 'a') // on the Room value from before
	again, _ := e.Room("plaza")
	if again != r || len(again.Publishers()) != 1 {
		t.Fatalf("a later lookup finds another room (%v) or no publisher (%v)", again != r, again.Publishers())
	}
}

// A subscriber whose network loses one video packet in 15 asks for them again (NACK, from pion's
// generator as a browser would) and gets every one: the server answers from the track's one packet cache.
func TestNACKedPacketsAreResent(t *testing.T) {
	e := newTestEngine(t, nil)
	r, _ := e.Room("plaza")
	publish(t, r, "ana", 'a')
	pc, loss := rtctest.LossyPeerConnection(t, 15)
	s := subscribeOn(t, r, "bo", pc)
	eventually(t, "300 video packets arrive", func() bool { return s.count("video") >= 300 })
	if loss.Dropped.Load() == 0 {
		t.Fatal("the lossy socket dropped nothing")
	}
	// Every sequence number up to the highest seen by now must arrive, those the network dropped resent.
	s.mu.Lock()
	lo, hi := s.seqs["video"][0], s.seqs["video"][0]
	for _, q := range s.seqs["video"] {
		if int16(q-lo) < 0 {
			lo = q
		}
		if int16(q-hi) > 0 {
			hi = q
		}
	}
	s.mu.Unlock()
	missing := func() []uint16 {
		s.mu.Lock()
		defer s.mu.Unlock()
		got := map[uint16]bool{}
		for _, q := range s.seqs["video"] {
			got[q] = true
		}
		var out []uint16
		for q := lo; q != hi+1; q++ {
			if !got[q] {
				out = append(out, q)
			}
		}
		return out
	}
	deadline := time.Now().Add(waitTimeout)
	for len(missing()) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	var resent uint64
	s.sub.mu.Lock()
	for _, d := range s.sub.downs {
		resent += d.resent.Load()
	}
	s.sub.mu.Unlock()
	if m := missing(); len(m) > 0 || resent == 0 {
		t.Fatalf("%d RTP packets dropped by the network, %d resent by the server; video sequence numbers %d..%d missing %v",
			loss.Dropped.Load(), resent, lo, hi, m)
	}
	// A retransmission is the packet sent before, byte for byte, encrypted: SRTP must not encrypt one
	// sequence number two ways (with AES-GCM that gives away the authentication key).
	if same, diff := loss.Same.Load(), loss.Different.Load(); same == 0 || diff != 0 {
		t.Fatalf("of the packets that came again, %d came with the same bytes and %d with others", same, diff)
	}
	t.Logf("%d packets dropped by the network, %d resent (%d of them seen again, identical), none missing among %d",
		loss.Dropped.Load(), resent, loss.Same.Load(), int(uint16(hi-lo))+1)
}

// With more subscribers than one goroutine writes to, a packet is split among workers; every subscriber
// still gets every packet, in order.
func TestLargeFanOutSplitsAmongWorkers(t *testing.T) {
	n := fanChunk
	t.Cleanup(func() { fanChunk = n }) // after the engine's cleanup: its readers read fanChunk
	fanChunk = 2
	e := newTestEngine(t, nil)
	r, _ := e.Room("plaza")
	publish(t, r, "ana", 'a')
	var subs []*testSubscriber
	for _, id := range []string{"bo", "cy", "di", "ed", "fa"} {
		subs = append(subs, subscribe(t, r, id))
	}
	for _, s := range subs {
		eventually(t, "100 video packets arrive", func() bool { return s.count("video") >= 100 })
	}
	for i, s := range subs {
		s.mu.Lock()
		seqs := s.seqs["video"]
		for j := 1; j < len(seqs); j++ {
			if seqs[j] != seqs[j-1]+1 {
				t.Errorf("subscriber %d: video sequence %d follows %d", i, seqs[j], seqs[j-1])
				break
			}
		}
		s.mu.Unlock()
	}
	p := r.Publisher("ana")
	for _, u := range p.upTracks() {
		if u.kind() == webrtc.RTPCodecTypeVideo && u.fanWorkers.Load() != 2 {
			t.Errorf("video track: %d fan-out workers for 5 subscribers in chunks of 2, want 2", u.fanWorkers.Load())
		}
	}
}

// A subscriber whose bandwidth estimate (REMB) falls below what it is sent steps down the simulcast layers
// until what it gets fits; when the estimate recovers, it climbs back to the highest layer.
func TestBandwidthEstimateChoosesTheLayer(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.selectEvery, c.estimateWarmup = 100*time.Millisecond, -1 })
	r, _ := e.Room("plaza")
	publishSimulcast(t, r, "ana") // layers of ~48, ~120 and ~264 kbit/s
	s := subscribe(t, r, "bo")
	eventually(t, "the subscriber gets the highest layer", func() bool { return s.lastMark("video") == 'f' })
	s.mu.Lock()
	ssrc := s.ssrcs["video"]
	s.mu.Unlock()
	remb := func(bps float32) func() bool {
		return func() bool {
			_ = s.pc.WriteRTCP([]rtcp.Packet{&rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: bps, SSRCs: []uint32{ssrc}}})
			return false
		}
	}
	estimate := func(bps float32, what string, mark byte) {
		t.Helper()
		eventually(t, what, func() bool { remb(bps)(); return s.lastMark("video") == mark })
	}
	estimate(60_000, "the lowest layer on a 60 kbit/s estimate", 'q')
	// It stays low (a step up is tried now and then, and undone).
	lows := 0
	for range 20 {
		remb(60_000)()
		time.Sleep(100 * time.Millisecond)
		if s.lastMark("video") == 'q' {
			lows++
		}
	}
	if lows < 12 {
		t.Errorf("on a 60 kbit/s estimate the lowest layer was sent in only %d of 20 samples", lows)
	}
	estimate(5_000_000, "the highest layer again on a 5 Mbit/s estimate", 'f')
}

// A receiver's estimate is not trusted while it warms up (a browser reports its start value first), nor
// when it is old.
func TestEstimateWarmupAndAge(t *testing.T) {
	e := newTestEngine(t, nil)
	r, _ := e.Room("plaza")
	s := subscribe(t, r, "bo").sub
	now := time.Now()
	if _, ok := s.currentEstimate(now, time.Second); ok {
		t.Fatal("an estimate before any arrived")
	}
	s.noteEstimate(300_000)
	if _, ok := s.currentEstimate(now, time.Hour); ok {
		t.Error("an estimate trusted during the warm-up")
	}
	if est, ok := s.currentEstimate(time.Now(), 0); !ok || est != 300_000 {
		t.Errorf("estimate %v, %v; want 300000, true", est, ok)
	}
	if _, ok := s.currentEstimate(time.Now().Add(6*time.Second), 0); ok {
		t.Error("an estimate 6 s old still trusted")
	}
	s.noteEstimate(math.MaxFloat32)
	if est, _ := s.currentEstimate(time.Now(), 0); est != 1e12 {
		t.Errorf("a 3.4e38 bit/s estimate is taken as %v, want it capped at 1e12", est)
	}
	s.noteEstimate(300_000)
	s.noteEstimate(float32(math.NaN()))
	if est, _ := s.currentEstimate(time.Now(), 0); est != 300_000 {
		t.Errorf("a NaN estimate replaced the last one: %v", est)
	}
}

// A subscriber whose UDP is blocked reaches the SFU over ICE-TCP; its tracks are written through their own
// queues (a TCP write can block), and its packets arrive like everyone else's.
func TestSubscriberOverICETCP(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.ICE.TCPAddr = "127.0.0.1:0" })
	r, _ := e.Room("plaza")
	publish(t, r, "ana", 'a')
	udp := subscribe(t, r, "bo")
	tcp := subscribeOn(t, r, "cy", rtctest.TCPPeerConnection(t))
	for _, s := range []*testSubscriber{udp, tcp} {
		eventually(t, "video and audio arrive", func() bool { return s.count("video") >= 60 && s.count("audio") >= 30 })
	}
	pair, err := tcp.pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil || pair.Local.Protocol != webrtc.ICEProtocolTCP {
		t.Fatalf("the TCP subscriber's candidate pair: %v, %v", pair, err)
	}
	if got := udp.sub.path.Load(); got != pathDirect {
		t.Errorf("the UDP subscriber's send path %d, want direct (%d)", got, pathDirect)
	}
	if got := tcp.sub.path.Load(); got != pathPion {
		t.Errorf("the TCP subscriber's send path %d, want pion's (%d)", got, pathPion)
	}
	if direct, pion := e.SendPaths(); direct != 1 || pion != 1 {
		t.Errorf("SendPaths: %d direct, %d through pion; want 1 and 1", direct, pion)
	}
	for _, s := range []*testSubscriber{udp, tcp} {
		s.sub.mu.Lock()
		for _, d := range s.sub.downs {
			if want := s == tcp; d.isolated.Load() != want {
				t.Errorf("%s: a track isolated=%v, want %v", s.sub.identity, d.isolated.Load(), want)
			}
		}
		s.sub.mu.Unlock()
	}
}

// Before their bitrates are measured, simulcast layers are ordered by what their rids mean.
func TestRidRank(t *testing.T) {
	for _, tc := range [][]string{
		{"q", "h", "f"}, {"l", "m", "h"}, {"low", "mid", "high"}, {"0", "1", "2"}, {"a", "b", "c"}, {"h", "f"}, {"l", "h"},
	} {
		for i := 1; i < len(tc); i++ {
			shuffled := append([]string{tc[len(tc)-1]}, tc[:len(tc)-1]...)
			if a, b := ridRank(tc[i-1], shuffled), ridRank(tc[i], shuffled); a >= b {
				t.Errorf("rids %v: %q ranks %d, %q ranks %d", tc, tc[i-1], a, tc[i], b)
			}
		}
	}
}

// Layers are ordered by rid, and the measured bitrates override the rids only when they clearly disagree:
// a second in which the lowest layer sends nearly as much as (or a little more than) the middle one does
// not swap them, and a publisher whose rids run the other way round is put right.
func TestLayerOrder(t *testing.T) {
	type layer struct {
		rid  string
		rate float64
	}
	order := func(ls ...layer) string {
		s := &source{}
		for _, l := range ls {
			s.layers = append(s.layers, &upTrack{rid: l.rid, rate: l.rate})
		}
		s.sortLocked()
		var rids []string
		for _, u := range s.layers {
			rids = append(rids, u.rid)
		}
		return strings.Join(rids, " ")
	}
	for _, tc := range []struct {
		name   string
		layers []layer
		want   string
	}{
		{"not measured yet", []layer{{"2", 0}, {"0", 0}, {"1", 0}}, "0 1 2"},
		{"as the rids say", []layer{{"1", 360e3}, {"2", 773e3}, {"0", 148e3}}, "0 1 2"},
		{"the lowest layer's keyframe second", []layer{{"0", 345e3}, {"1", 330e3}, {"2", 770e3}}, "0 1 2"},
		{"rids the other way round", []layer{{"0", 780e3}, {"1", 350e3}, {"2", 150e3}}, "2 1 0"},
		{"a named scheme", []layer{{"f", 0}, {"q", 150e3}, {"h", 160e3}}, "q h f"},
		{"a paused layer keeps its place", []layer{{"0", 150e3}, {"1", 0}, {"2", 100e3}}, "0 1 2"},
	} {
		if got := order(tc.layers...); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// A browser's estimate starts low and climbs toward what it receives: while it climbs it is no reason to
// step down, even below what is sent.
func TestClimbingEstimateKeepsTheLayer(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.selectEvery, c.estimateWarmup = 100*time.Millisecond, -1 })
	r, _ := e.Room("plaza")
	publishSimulcast(t, r, "ana") // layers of ~48, ~120 and ~264 kbit/s
	s := subscribe(t, r, "bo")
	eventually(t, "the subscriber gets the highest layer", func() bool { return s.lastMark("video") == 'f' })
	eventually(t, "the layers' bitrates measured", func() bool {
		for _, src := range r.tracks() {
			src.mu.Lock()
			layers := slices.Clone(src.layers)
			src.mu.Unlock()
			for _, u := range layers {
				if u.rateNow() == 0 {
					return false
				}
			}
		}
		return true
	})
	s.mu.Lock()
	ssrc := s.ssrcs["video"]
	s.mu.Unlock()
	est := float32(50_000)
	for i := range 25 {
		_ = s.pc.WriteRTCP([]rtcp.Packet{&rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: est, SSRCs: []uint32{ssrc}}})
		est *= 1.08
		time.Sleep(100 * time.Millisecond)
		if m := s.lastMark("video"); m != 'f' && i > 2 {
			t.Fatalf("layer %q after %d climbing estimates (now %.0f bit/s)", m, i+1, est)
		}
	}
}

// When the stage goes back to a speaker mid-stream (the newer one stopped), it waits for that speaker's
// next keyframe; the packets skipped meanwhile leave no hole in the viewer's sequence numbers.
func TestStageSwitchMidStreamLeavesNoHole(t *testing.T) {
	e := newTestEngine(t, nil)
	r, _ := e.Room("plaza")
	publish(t, r, "bo", 'b')
	ts := watchStage(t, r)
	eventually(t, "bo's video on the stage", func() bool { return ts.lastMark("video") == 'b' })
	publish(t, r, "ana", 'a')
	eventually(t, "ana's video on the stage", func() bool { return ts.lastMark("video") == 'a' })
	time.Sleep(400 * time.Millisecond) // bo is now mid-way between two keyframes (one every 1.5 s)
	r.StopPublisher("ana")
	eventually(t, "bo's video on the stage again", func() bool { return ts.lastMark("video") == 'b' })
	back := ts.count("video")
	eventually(t, "30 more of bo's packets", func() bool { return ts.count("video") >= back+30 })
	ts.mu.Lock()
	defer ts.mu.Unlock()
	seqs := ts.seqs["video"]
	for i := 1; i < len(seqs); i++ {
		if d := seqs[i] - seqs[i-1]; d != 1 {
			t.Fatalf("video sequence numbers go from %d to %d (packet %d of %d)", seqs[i-1], seqs[i], i, len(seqs))
		}
	}
}

// A track's end comes from its read loop (the publisher's connection failed) and from its source's end
// (the publisher left) at once: it ends once, without a panic. (make test once crashed here, a close of
// a closed channel; with a check before the close, 100000 rounds panic within a fraction of a second.)
func TestUpTrackEndsOnceFromTwoSides(t *testing.T) {
	for range 100000 {
		u := &upTrack{ended: make(chan struct{})}
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				u.end()
			}()
		}
		close(start)
		wg.Wait()
		if !u.isEnded() {
			t.Fatal("the track is not ended")
		}
	}
}
