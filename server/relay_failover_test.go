package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/liveforum/liveforum/auth"
	"github.com/liveforum/liveforum/broker"
	"github.com/liveforum/liveforum/client"
	"github.com/liveforum/liveforum/internal/redistest"
	"github.com/liveforum/liveforum/internal/rtctest"
	"github.com/liveforum/liveforum/protocol"
	"github.com/liveforum/liveforum/rooms"
	"github.com/liveforum/liveforum/signaling"
)

// When a room's media node dies, no relayed request waits for it: the media relay's timeouts, its use of
// the nodes' heartbeats, and the clean-up on both sides. The process test with SIGKILL and clients that
// come back on their own is cmd/liveforum/mediafailover_test.go.

// failoverNode is mediaNode with a short heartbeat (1 s) and the given media lease TTL; it also returns its
// broker, whose Close makes the node look dead to the others (no inbox, no heartbeat, no lease renewal).
func failoverNode(t *testing.T, rs *redistest.Server, keys *auth.Keyring, leaseTTL time.Duration) (*testServer, *signaling.Engine, broker.Broker) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := broker.NewRedis(ctx, broker.RedisOptions{URL: rs.URL(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	e := loopbackEngine(t)
	ts := newTestServerOn(t, b, func(c *Config, rc *rooms.Config) {
		c.Media, c.MediaLeaseTTL = e, leaseTTL
		rc.NodeTTL = time.Second
		if keys != nil {
			c.Keys = keys
		}
	})
	if keys != nil {
		ts.keys = keys
	}
	return ts, e, b
}

func loopbackEngine(t *testing.T) *signaling.Engine {
	t.Helper()
	_, lo, _ := net.ParseCIDR("127.0.0.0/8")
	e, err := signaling.New(signaling.Config{ICE: signaling.ICEConfig{UDPAddr: "127.0.0.1:0", Interfaces: []string{"lo"},
		IPs: []*net.IPNet{lo}}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// postSDP POSTs an offer to a WHIP or WHEP endpoint with a client that waits longer than the server's own
// bounds, and returns the status, the Retry-After header and how long the answer took.
func postSDP(t *testing.T, ts *testServer, path, token, offer string) (int, string, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*relayReplyTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ts.http.URL+path, strings.NewReader(offer))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/sdp")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	start := time.Now()
	resp, err := ts.http.Client().Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), time.Since(start)
}

// timedRequest sends a media request and returns its error and how long its answer took.
func timedRequest(t *testing.T, c *client.Client, typ, room string, data any) (time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*relayReplyTimeout)
	defer cancel()
	start := time.Now()
	_, err := c.Send(ctx, typ, room, data)
	return time.Since(start), err
}

func (r *relay) counts() (waits, out, remote, httpEnds int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.waits), len(r.out), len(r.remote), len(r.httpEnds)
}

// Node A holds a room's media; node B relays to it. A WHEP session relayed to A that ends there is
// forgotten on B too. Then A dies (its broker closes: no inbox, no heartbeat): a request relayed before B
// can know is answered unavailable once A's heartbeat expires, not after the full timeout; requests after
// that, websocket and WHEP, are answered unavailable / 503 at once; once A's lease lapses, B takes the
// room's media and a subscription succeeds there.
func TestRelayMediaNodeDies(t *testing.T) {
	rs := redistest.Start(t)
	const leaseTTL = 4 * time.Second
	a, _, ba := failoverNode(t, rs, nil, leaseTTL)
	b, eb, _ := failoverNode(t, rs, a.keys, leaseTTL)
	const room = "plenario"

	first := newStageViewer(t, a, room, "first", auth.RoleParticipant)
	if _, err := mediaRequest(t, first.c, protocol.TypeMediaSubscribe, room, nil); err != nil {
		t.Fatal(err)
	}
	viewer := newStageViewer(t, b, room, "vi", auth.RoleParticipant)
	if _, err := mediaRequest(t, viewer.c, protocol.TypeMediaSubscribe, room, nil); err != nil {
		t.Fatalf("a subscription relayed to A: %v", err)
	}
	if eb.Active(room) {
		t.Fatal("node B runs the room's media; A should")
	}

	// A WHEP session relayed to A ends on A (as when the player goes away): B forgets it.
	player := newWHEPPlayer(t)
	if code, _, _ := postSDP(t, b, "/whep/"+room, b.token(room, "wv", "WHEP", auth.RoleParticipant), rtctest.Offer(t, player.pc)); code != http.StatusCreated {
		t.Fatalf("WHEP on B relayed to A: %d", code)
	}
	if n := b.srv.whip.count(); n != 1 {
		t.Fatalf("B holds %d WHEP sessions, want 1", n)
	}
	a.srv.relay.mu.Lock()
	var ends []*httpEnd
	for _, e := range a.srv.relay.httpEnds {
		ends = append(ends, e)
	}
	a.srv.relay.mu.Unlock()
	if len(ends) != 1 {
		t.Fatalf("A runs %d relayed HTTP sessions, want 1", len(ends))
	}
	ends[0].end()
	waitUntil(t, "B forgets the WHEP session that ended on A", func() bool { return b.srv.whip.count() == 0 })

	// A dies.
	viewer.nodeMayDie.Store(true) // A may have offered to the viewer as the subscription below reached it
	_ = ba.Close()
	took, err := timedRequest(t, viewer.c, protocol.TypeMediaSubscribe, room, nil)
	wantCode(t, err, protocol.CodeUnavailable, "a subscription relayed to A as it dies")
	if took > 3*time.Second { // A's heartbeat (1 s) expires, and the watchdog looks every second
		t.Fatalf("the request to the dead media node was answered after %v", took)
	}
	time.Sleep(1200 * time.Millisecond) // A's heartbeat has certainly expired; its lease (4 s) has not
	took, err = timedRequest(t, viewer.c, protocol.TypeMediaSubscribe, room, nil)
	wantCode(t, err, protocol.CodeUnavailable, "a subscription while A is known dead")
	code, retry, took2 := postSDP(t, b, "/whep/"+room, b.token(room, "wv2", "WHEP", auth.RoleParticipant), rtctest.Offer(t, newWHEPPlayer(t).pc))
	if code != http.StatusServiceUnavailable || retry == "" {
		t.Fatalf("WHEP on B while A is known dead: %d, Retry-After %q; want 503 with Retry-After", code, retry)
	}
	if took > 500*time.Millisecond || took2 > 500*time.Millisecond {
		t.Fatalf("requests to a media node known dead took %v (websocket) and %v (WHEP); want at once", took, took2)
	}
	if w, o, _, _ := b.srv.relay.counts(); w != 0 || o != 0 {
		t.Fatalf("B still has %d requests waiting and %d sessions on A", w, o)
	}

	// A's lease lapses: B takes the room's media.
	deadline := time.Now().Add(2 * leaseTTL)
	for {
		_, err := timedRequest(t, viewer.c, protocol.TypeMediaSubscribe, room, nil)
		if err == nil {
			break
		}
		wantCode(t, err, protocol.CodeUnavailable, "a subscription before A's lease lapses")
		if time.Now().After(deadline) {
			t.Fatalf("B did not take the room's media within %v", 2*leaseTTL)
		}
		time.Sleep(200 * time.Millisecond)
	}
	waitUntil(t, "B's SFU runs the room", func() bool { return eb.Active(room) })
}

// A media node that is alive (its heartbeat holds) but does not answer: a relayed websocket request is
// answered unavailable after relayReplyTimeout, a relayed WHEP POST 503 within the same bound, and nothing
// stays waiting. Once its heartbeat expires, requests are answered at once.
func TestRelaySilentMediaNode(t *testing.T) {
	b := broker.NewMemory(broker.MemoryOptions{})
	t.Cleanup(func() { b.Close() })
	ts := newTestServerOn(t, b, func(c *Config, _ *rooms.Config) { c.Media = loopbackEngine(t) })
	const room = "plenario"
	ctx := context.Background()
	if err := b.Heartbeat(ctx, "ghost", time.Minute); err != nil {
		t.Fatal(err)
	}
	if h, err := b.Lease(ctx, "media:"+room, "ghost", time.Minute); err != nil || h != "ghost" {
		t.Fatalf("lease: %q %v", h, err)
	}
	viewer := ts.dial(client.Options{Token: ts.token(room, "vi", "Viewer", auth.RoleParticipant)})
	join(t, viewer, room)

	type result struct {
		err  error
		code int
		took time.Duration
	}
	ws, whep := make(chan result, 1), make(chan result, 1)
	go func() {
		took, err := timedRequest(t, viewer, protocol.TypeMediaSubscribe, room, nil)
		ws <- result{err: err, took: took}
	}()
	offer, tok := rtctest.Offer(t, newWHEPPlayer(t).pc), ts.token(room, "wv", "WHEP", auth.RoleParticipant)
	go func() {
		code, _, took := postSDP(t, ts, "/whep/"+room, tok, offer)
		whep <- result{code: code, took: took}
	}()
	rw, rh := <-ws, <-whep
	wantCode(t, rw.err, protocol.CodeUnavailable, "a request relayed to a silent media node")
	if rh.code != http.StatusServiceUnavailable {
		t.Fatalf("WHEP relayed to a silent media node: %d, want 503", rh.code)
	}
	for what, took := range map[string]time.Duration{"websocket": rw.took, "WHEP": rh.took} {
		if took < relayReplyTimeout-time.Second || took > relayReplyTimeout+time.Second {
			t.Fatalf("%s request answered after %v, want about %v", what, took, relayReplyTimeout)
		}
	}
	if w, o, _, _ := ts.srv.relay.counts(); w != 0 || o != 0 {
		t.Fatalf("%d requests still waiting, %d sessions on the silent node", w, o)
	}

	if err := b.Heartbeat(ctx, "ghost", time.Millisecond); err != nil { // it dies
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	took, err := timedRequest(t, viewer, protocol.TypeMediaSubscribe, room, nil)
	wantCode(t, err, protocol.CodeUnavailable, "a request to a media node known dead")
	if took > 500*time.Millisecond {
		t.Fatalf("answered after %v, want at once", took)
	}
}

// The media node ends the media of members whose node died (its heartbeat expired) — a stage
// subscription over the websocket and a WHEP session — a lease TTL after it first finds the node dead.
func TestRelayDropsDeadNodesMembers(t *testing.T) {
	b := broker.NewMemory(broker.MemoryOptions{})
	t.Cleanup(func() { b.Close() })
	ts := newTestServerOn(t, b, func(c *Config, _ *rooms.Config) {
		c.Media, c.MediaLeaseTTL = loopbackEngine(t), 300*time.Millisecond
	})
	r := ts.srv.relay
	const room = "plenario"
	const ghost = "ghost~1"
	msg := func(m relayMsg) []byte {
		data, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	if err := b.Heartbeat(context.Background(), ghost, time.Minute); err != nil {
		t.Fatal(err)
	}
	r.onMessage(msg(relayMsg{Op: "req", From: ghost, Conn: 7, Room: room, ID: 1, Type: protocol.TypeMediaSubscribe,
		Identity: "vi", Role: auth.RoleParticipant}))
	offer, _ := json.Marshal(rtctest.Offer(t, newWHEPPlayer(t).pc))
	r.onMessage(msg(relayMsg{Op: "http", From: ghost, ID: 3, Room: room, Type: "whep", Identity: "wv", Data: offer}))
	r.mu.Lock()
	p := r.remote[remoteKey{node: ghost, conn: 7, room: room}]
	r.mu.Unlock()
	if p == nil || p.m == nil || p.m.sub == nil {
		t.Fatal("the relayed subscription did not start")
	}
	sub := p.m.sub
	if _, _, _, n := r.counts(); n != 1 {
		t.Fatalf("%d relayed WHEP sessions, want 1", n)
	}

	time.Sleep(time.Second) // the node is alive: nothing is dropped
	if _, _, rem, n := r.counts(); rem != 1 || n != 1 {
		t.Fatalf("a live node's members dropped: %d relayed members, %d WHEP sessions left", rem, n)
	}
	select {
	case <-sub.Done():
		t.Fatal("a live node's member's subscription ended")
	default:
	}

	if err := b.Heartbeat(context.Background(), ghost, time.Millisecond); err != nil { // it dies
		t.Fatal(err)
	}
	died := time.Now()
	waitUntil(t, "the dead node's members are dropped", func() bool {
		_, _, rem, n := r.counts()
		return rem == 0 && n == 0
	})
	select {
	case <-sub.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the dead node's member's subscription did not end")
	}
	if took := time.Since(died); took < 300*time.Millisecond {
		t.Fatalf("dropped %v after the node died, before a lease TTL had passed", took)
	}
}
