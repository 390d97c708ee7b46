package main

// A room's media node dies: real liveforum processes on a real Redis, real pion peers on loopback that behave
// as the browser app does (web/static/js/media.js: on a failed or closed peer connection, or an error
// answer, subscribe or publish again after a short backoff).

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/redis/go-redis/v9"

	"github.com/liveforum/liveforum/auth"
	"github.com/liveforum/liveforum/client"
	"github.com/liveforum/liveforum/internal/redistest"
	"github.com/liveforum/liveforum/protocol"
)

const (
	// The nodes' heartbeat TTL is nodeArgs' -node-ttl (3 s); the media lease TTL is longer, so that there is
	// a window in which the dead media node is known dead but still holds its lease: the window in which
	// requests must be answered unavailable at once rather than relayed into the void.
	failoverNodeTTL  = 3 * time.Second
	failoverLeaseTTL = 8 * time.Second
	// The clients' ICE timeouts. Chrome (libwebrtc) calls a connection weak ("disconnected") after 2.5 s
	// without receiving anything and dead ("failed") after 30 s; the clients here fail after 2.5 + 1.5 s, so
	// that they come back while the dead node still holds its lease (the harder case for the server, and a
	// shorter test). With Chrome's 30 s the lease has long lapsed when the page retries.
	clientICEDisconnected = 2500 * time.Millisecond
	clientICEFailed       = 1500 * time.Millisecond
	clientICEKeepalive    = time.Second
	// The clients' backoff between attempts (the page's starts at 1 s and doubles up to 15 s).
	retryMin = 500 * time.Millisecond
	retryMax = 2 * time.Second
	// requestWait is the clients' own bound on a request (the page's requestTimeout, 15 s): the server
	// answers relayed requests within 10 s (server.relayReplyTimeout).
	requestWait      = 15 * time.Second
	serverReplyBound = 10*time.Second + time.Second
)

// mediaToken mints an access token of the test secret for identity with role in room.
func mediaToken(t *testing.T, room, identity string, role auth.Role) string {
	t.Helper()
	keys, err := auth.ParseKeys(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := keys.Sign(auth.Claims{Room: room, Identity: identity, Name: identity, Role: role,
		Expires: time.Now().Add(time.Hour), IssuedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// failoverPC is a pion peer connection on loopback with the clients' ICE timeouts.
func failoverPC() (*webrtc.PeerConnection, error) {
	se := webrtc.SettingEngine{}
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetICETimeouts(clientICEDisconnected, clientICEFailed, clientICEKeepalive)
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		return nil, err
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)).
		NewPeerConnection(webrtc.Configuration{})
}

// setLocalComplete sets a local description and waits for every candidate (no trickle).
func setLocalComplete(pc *webrtc.PeerConnection, d webrtc.SessionDescription) (string, error) {
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(d); err != nil {
		return "", err
	}
	select {
	case <-gathered:
		return pc.LocalDescription().SDP, nil
	case <-time.After(10 * time.Second):
		return "", errors.New("gathering took over 10 s")
	}
}

func offerOf(pc *webrtc.PeerConnection) (string, error) {
	o, err := pc.CreateOffer(nil)
	if err != nil {
		return "", err
	}
	return setLocalComplete(pc, o)
}

func answerTo(pc *webrtc.PeerConnection, offer string) (string, error) {
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", err
	}
	a, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", err
	}
	return setLocalComplete(pc, a)
}

// failed returns a channel closed when pc's connection fails or closes.
func failed(pc *webrtc.PeerConnection, connected func()) <-chan struct{} {
	ch := make(chan struct{})
	var once sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateConnected:
			if connected != nil {
				connected()
			}
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			once.Do(func() { close(ch) })
		}
	})
	return ch
}

// request is one media request of a client and how it was answered.
type request struct {
	who, typ string
	at       time.Time
	took     time.Duration
	code     string // "" (ok), a protocol error code, or "timeout" (the client gave up)
}

// stageClient is a websocket member that subscribes to the stage or publishes as the page does.
type stageClient struct {
	t    *testing.T
	name string
	room string
	c    *client.Client

	mu     sync.Mutex
	offers chan string // the current subscription's offers
	reqs   []request

	gen     atomic.Int64 // peer connections made so far
	packets sync.Map     // gen → *atomic.Int64: packets with the speaker's mark received on that connection
}

func dialStage(t *testing.T, n *node, room, identity string, role auth.Role) *stageClient {
	t.Helper()
	s := &stageClient{t: t, name: identity + "@" + n.id, room: room}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{URL: n.WS(), Token: mediaToken(t, room, identity, role),
		OnMedia: func(_, typ string, data json.RawMessage) {
			var m protocol.MediaSDP
			if typ != protocol.TypeMediaOffer || json.Unmarshal(data, &m) != nil {
				return
			}
			s.mu.Lock()
			ch := s.offers
			s.mu.Unlock()
			if ch != nil {
				select {
				case ch <- m.SDP:
				default:
				}
			}
		}})
	if err != nil {
		t.Fatalf("%s: dial: %v", s.name, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	s.c = c
	if _, err := c.Join(ctx, room, client.JoinOptions{}); err != nil {
		t.Fatalf("%s: join: %v", s.name, err)
	}
	return s
}

// request sends a media request, recording how it was answered.
func (s *stageClient) request(typ string, data any) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(context.Background(), requestWait)
	defer cancel()
	start := time.Now()
	reply, err := s.c.Send(ctx, typ, s.room, data)
	r := request{who: s.name, typ: typ, at: start, took: time.Since(start)}
	var re *client.RequestError
	switch {
	case err == nil:
	case errors.As(err, &re):
		r.code = re.Code
	case errors.Is(err, context.DeadlineExceeded):
		r.code = "timeout"
	default:
		r.code = err.Error()
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, r)
	s.mu.Unlock()
	return reply, err
}

func (s *stageClient) requests() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]request(nil), s.reqs...)
}

// received returns the packets with the speaker's mark received on the connections made after gen.
func (s *stageClient) received(after int64) int64 {
	var n int64
	s.packets.Range(func(k, v any) bool {
		if k.(int64) > after {
			n += v.(*atomic.Int64).Load()
		}
		return true
	})
	return n
}

// loop runs attempt again and again until stop: attempt returns when its peer connection is over; after
// an attempt that never connected, the next waits a backoff that doubles up to retryMax.
func (s *stageClient) loop(stop <-chan struct{}, wg *sync.WaitGroup, attempt func(stop <-chan struct{}) (connected bool)) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		backoff := retryMin
		for {
			if s.c.Err() != nil { // the client ended: its node died
				return
			}
			if attempt(stop) {
				backoff = retryMin
			}
			select {
			case <-stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, retryMax)
		}
	}()
}

// subscribe is one subscription to the stage: media.subscribe, then answer every offer, until the peer
// connection fails (or stop).
func (s *stageClient) subscribe(stop <-chan struct{}, mark byte) bool {
	pc, err := failoverPC()
	if err != nil {
		s.t.Errorf("%s: %v", s.name, err)
		return false
	}
	defer pc.Close()
	gen := s.gen.Add(1)
	count := countMarked(pc, mark)
	s.packets.Store(gen, count)
	var connected atomic.Bool
	over := failed(pc, func() { connected.Store(true) })
	offers := make(chan string, 64)
	s.mu.Lock()
	s.offers = offers
	s.mu.Unlock()
	if _, err := s.request(protocol.TypeMediaSubscribe, nil); err != nil {
		return false
	}
	for {
		select {
		case <-stop:
			return connected.Load()
		case <-over:
			return connected.Load()
		case sdp := <-offers:
			answer, err := answerTo(pc, sdp)
			if err != nil {
				return connected.Load()
			}
			if _, err := s.request(protocol.TypeMediaAnswer, protocol.MediaSDP{SDP: answer}); err != nil {
				return connected.Load()
			}
		}
	}
}

// publish is one publishing connection: media.publish with a VP8 and an Opus track, then send until the
// peer connection fails (or stop). Every payload ends with mark.
func (s *stageClient) publish(stop <-chan struct{}, mark byte) bool {
	pc, err := failoverPC()
	if err != nil {
		s.t.Errorf("%s: %v", s.name, err)
		return false
	}
	defer pc.Close()
	var connected atomic.Bool
	over := failed(pc, func() { connected.Store(true) })
	var tracks []*webrtc.TrackLocalStaticRTP
	for _, c := range []struct {
		id  string
		cap webrtc.RTPCodecCapability
	}{
		{"camera", webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}},
		{"mic", webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}},
	} {
		tr, err := webrtc.NewTrackLocalStaticRTP(c.cap, c.id, "speaker")
		if err == nil {
			_, err = pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		}
		if err != nil {
			s.t.Errorf("%s: %v", s.name, err)
			return false
		}
		tracks = append(tracks, tr)
	}
	offer, err := offerOf(pc)
	if err != nil {
		s.t.Errorf("%s: offer: %v", s.name, err)
		return false
	}
	reply, err := s.request(protocol.TypeMediaPublish, protocol.MediaSDP{SDP: offer})
	if err != nil {
		return false
	}
	var answer protocol.MediaSDP
	if err := json.Unmarshal(reply, &answer); err != nil {
		s.t.Errorf("%s: publish reply %s: %v", s.name, reply, err)
		return false
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer.SDP}); err != nil {
		return false
	}
	// 30 video frames (3 packets each, a keyframe every 45) and 50 audio packets a second.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var vseq, aseq uint16
	var vts, ats uint32
	for frame := 0; ; frame++ {
		select {
		case <-stop:
			return connected.Load()
		case <-over:
			return connected.Load()
		case <-tick.C:
		}
		ats += 960
		aseq++
		_ = tracks[1].WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: aseq, Timestamp: ats}, Payload: []byte{0xfc, 1, 2, mark}})
		if frame%3 == 2 {
			continue
		}
		vts += 3000
		key := byte(0x01) // an interframe
		if frame%45 == 0 {
			key = 0x00
		}
		for i := range 3 {
			desc := byte(0x00)
			if i == 0 {
				desc = 0x10
			}
			vseq++
			_ = tracks[0].WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: vseq, Timestamp: vts, Marker: i == 2},
				Payload: []byte{desc, key, 0x9d, 0x01, 0x2a, mark}})
		}
	}
}

// whepAttempt POSTs a WHEP offer to n and returns the status, the Retry-After header, how long the answer
// took, and on 201 the player's peer connection with the answer set (and its count of marked packets).
func whepAttempt(t *testing.T, n *node, room, token string, mark byte) (int, string, time.Duration, *webrtc.PeerConnection, *atomic.Int64) {
	t.Helper()
	pc, err := failoverPC()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	count := countMarked(pc, mark)
	offer, err := offerOf(pc)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+n.Addr()+"/whep/"+room, strings.NewReader(offer))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+token)
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: requestWait}
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		_ = pc.Close()
		t.Fatalf("WHEP POST on %s: %v (after %v)", n.id, err, time.Since(start))
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	if resp.StatusCode != http.StatusCreated {
		_ = pc.Close()
		return resp.StatusCode, resp.Header.Get("Retry-After"), took, nil, nil
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return resp.StatusCode, "", took, pc, count
}

// leaseHolder reads who holds the room's media lease in Redis ("" if nobody).
func leaseHolder(t *testing.T, rc *redis.Client, room string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	h, err := rc.Get(ctx, "lf:lease:media:"+room).Result()
	if errors.Is(err, redis.Nil) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// waitFor polls cond every 50 ms until it holds or timeout passes; it returns whether it held.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// Nodes A and B share a Redis; the room's media lives on A (a first subscriber, connected to A, made A take
// the lease); a viewer and a speaker connected to B have their signalling relayed to A and their media
// flowing to and from A. A is killed (SIGKILL). The viewer's and the speaker's peer connections fail; they
// subscribe and publish again, as the page does; B answers unavailable while A, dead, still holds the
// lease, and takes the room's media once the lease lapses; media flows again through B. No request waits
// longer than the server's relay timeout. A WHEP player on B is answered 503 at once while A is known dead
// and holds the lease, and 201 once the lease has moved.
func TestMediaNodeFailover(t *testing.T) {
	rs := redistest.Start(t)
	opt, err := redis.ParseURL(rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(opt)
	defer rc.Close()
	args := []string{"-redis-url", rs.URL(), "-ice-interfaces", "lo", "-media-lease-ttl", failoverLeaseTTL.String()}
	a := startNode(t, "mf-a", args...)
	b := startNode(t, "mf-b", args...)
	const room = "failover"
	const mark = 's'

	stop := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(stop); wg.Wait() })

	first := dialStage(t, a, room, "first", auth.RoleParticipant)
	first.loop(stop, &wg, func(stop <-chan struct{}) bool { return first.subscribe(stop, mark) })
	if !waitFor(10*time.Second, func() bool { return strings.HasPrefix(leaseHolder(t, rc, room), "mf-a~") }) {
		t.Fatalf("node A did not take the room's media lease: holder %q", leaseHolder(t, rc, room))
	}
	viewer := dialStage(t, b, room, "viewer", auth.RoleParticipant)
	viewer.loop(stop, &wg, func(stop <-chan struct{}) bool { return viewer.subscribe(stop, mark) })
	speaker := dialStage(t, b, room, "speaker", auth.RoleSpeaker)
	speaker.loop(stop, &wg, func(stop <-chan struct{}) bool { return speaker.publish(stop, mark) })
	if !waitFor(20*time.Second, func() bool { return viewer.received(0) >= 50 }) {
		t.Fatalf("the viewer on B did not receive the speaker's media through A: %d packets", viewer.received(0))
	}
	if h := leaseHolder(t, rc, room); !strings.HasPrefix(h, "mf-a~") {
		t.Fatalf("the room's media lease is held by %q, want node A", h)
	}

	// A dies.
	genAtKill := viewer.gen.Load()
	a.Kill()
	killed := time.Now()
	t.Logf("killed node A (SIGKILL); heartbeat TTL %v, media lease TTL %v", failoverNodeTTL, failoverLeaseTTL)

	// WHEP on B: once A's heartbeat has expired (3 s) and before its lease can lapse (2/3 of 8 s after its
	// last renewal), a POST is answered 503 at once; polled, it is answered 201 once the lease has moved.
	time.Sleep(time.Until(killed.Add(failoverNodeTTL + 400*time.Millisecond)))
	whepToken := mediaToken(t, room, "whep-player", auth.RoleParticipant)
	if h := leaseHolder(t, rc, room); !strings.HasPrefix(h, "mf-a~") {
		t.Fatalf("%v after the kill the lease is held by %q: the test's timing assumption (A still holds it) is wrong",
			time.Since(killed).Round(time.Millisecond), h)
	}
	code, retry, took, _, _ := whepAttempt(t, b, room, whepToken, mark)
	if code != http.StatusServiceUnavailable || retry == "" || took > time.Second {
		t.Fatalf("WHEP on B while dead A holds the lease: %d, Retry-After %q, after %v; want 503 with Retry-After at once",
			code, retry, took)
	}
	t.Logf("WHEP on B %v after the kill: 503 (Retry-After %s) in %v", time.Since(killed).Round(time.Millisecond), retry,
		took.Round(time.Millisecond))
	var player *atomic.Int64
	var whepAt time.Duration
	for attempt := 0; player == nil; attempt++ {
		time.Sleep(500 * time.Millisecond)
		code, _, took, _, count := whepAttempt(t, b, room, whepToken, mark)
		if took > serverReplyBound {
			t.Fatalf("a WHEP POST took %v", took)
		}
		switch code {
		case http.StatusCreated:
			player, whepAt = count, time.Since(killed)
		case http.StatusServiceUnavailable:
		default:
			t.Fatalf("WHEP on B after the kill: %d", code)
		}
		if time.Since(killed) > 3*failoverLeaseTTL {
			t.Fatalf("WHEP on B still refused %v after the kill", time.Since(killed))
		}
	}
	t.Logf("WHEP on B answered 201 %v after the kill", whepAt.Round(time.Millisecond))

	// The viewer receives the speaker again, through B.
	bound := failoverLeaseTTL + clientICEDisconnected + clientICEFailed + retryMax + 4*time.Second
	if !waitFor(bound-time.Since(killed), func() bool { return viewer.received(genAtKill) >= 50 }) {
		t.Fatalf("the viewer did not receive the speaker again within %v of the kill (%d packets since)", bound,
			viewer.received(genAtKill))
	}
	back := time.Since(killed)
	if !waitFor(10*time.Second, func() bool { return player.Load() >= 50 }) {
		t.Fatalf("the WHEP player on B received %d of the speaker's packets", player.Load())
	}
	if h := leaseHolder(t, rc, room); !strings.HasPrefix(h, "mf-b~") {
		t.Fatalf("after the failover the lease is held by %q, want node B", h)
	}
	t.Logf("the viewer receives the speaker again %v after the kill (bound %v)", back.Round(time.Millisecond), bound)

	// No request hung: each was answered (by the server) within its relay timeout.
	unavailable := 0
	for _, r := range append(viewer.requests(), speaker.requests()...) {
		if r.code == "timeout" || r.took > serverReplyBound {
			t.Errorf("%s: %s at +%v answered after %v (%s)", r.who, r.typ, r.at.Sub(killed).Round(time.Millisecond), r.took, r.code)
		}
		if r.at.After(killed) {
			if r.code == protocol.CodeUnavailable {
				unavailable++
			}
			t.Logf("%s: %s at +%v: %q in %v", r.who, r.typ, r.at.Sub(killed).Round(time.Millisecond), r.code,
				r.took.Round(time.Millisecond))
		}
	}
	t.Logf("%d requests answered unavailable after the kill", unavailable)
	// What the operator sees on B.
	if !strings.Contains(b.log.String(), "media node is down") {
		t.Errorf("node B did not log that the media node is down")
	}
	for _, l := range strings.Split(b.log.String(), "\n") {
		if strings.Contains(l, "media node") || strings.Contains(l, "holds the room's media") || strings.Contains(l, "dead node") {
			t.Logf("node B: %s", l)
		}
	}
	if code := b.Ready(); code != http.StatusOK {
		t.Errorf("node B's /readyz: %d", code)
	}
}

// countMarked counts the packets pc receives whose payload ends with mark (the publisher's).
func countMarked(pc *webrtc.PeerConnection, mark byte) *atomic.Int64 {
	count := &atomic.Int64{}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			if len(p.Payload) > 0 && p.Payload[len(p.Payload)-1] == mark {
				count.Add(1)
			}
		}
	})
	return count
}
