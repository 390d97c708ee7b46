package server

// Review tests: each fails against the code it was written for. Drop into server/ and run
// go test -race -run TestReview ./server

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/liveforum/liveforum/auth"
	"github.com/liveforum/liveforum/broker"
	"github.com/liveforum/liveforum/client"
	"github.com/liveforum/liveforum/protocol"
	"github.com/liveforum/liveforum/rooms"
)

// nopSink is a connection that takes everything and never closes.
type nopSink struct{}

func (nopSink) Send([]byte) bool         { return true }
func (nopSink) Close(int, string)        {}
func (nopSink) Kick(string, int, string) {}

// A participant of a guest room fills the recent history with 100 messages of 2000 '<' (json.Marshal
// writes each '<' as the 6 bytes \u003c: ~12 KB per event). From then on every fresh join reply is over
// the 1 MiB send queue, so every newcomer is closed as a slow consumer (4002) before it gets its reply —
// and the Go client, for which 4002 means "reconnect and recover", loops forever.
func TestReviewHistoryLargerThanQueueLocksOutJoiners(t *testing.T) {
	ts := newTestServer(t, nil) // defaults: MaxQueueBytes 1 MiB, HistoryOnJoin 100, 2000 chars per chat
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := ts.reg.Create(ctx, rooms.Settings{Name: "open", Guests: true}); err != nil {
		t.Fatal(err)
	}
	// The flooder goes through the registry directly (same code path as a chat request) to keep the test
	// fast; a participant at the default 1 msg/s needs ~100 s for this.
	troll, err := ts.reg.Join(ctx, rooms.Actor{Member: protocol.Member{Identity: "troll", Name: "Troll", Role: "participant"}},
		"open", rooms.JoinParams{ID: 1}, nopSink{})
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Repeat("<", 2000)
	for i := 0; i < 100; i++ {
		if _, err := troll.Chat(ctx, text, ""); err != nil {
			t.Fatal(err)
		}
	}

	newcomer := ts.dial(client.Options{Name: "Newcomer"})
	if _, err := newcomer.Join(ctx, "open", client.JoinOptions{}); err != nil {
		t.Fatalf("a newcomer cannot join a room whose last 100 messages are large: %v (client ended with %v)",
			err, newcomer.Err())
	}
}

// A member misses ~1.4 MB of chat (a slow consumer, a laptop lid closed for a minute in a busy room):
// fewer events than the recovery window, so the server answers with a recovery, but the reply is over the
// 1 MiB send queue and the connection is closed as a slow consumer (4002) instead. Each retry asks for the
// same (growing) range, so a client in this state never recovers until the window passes.
func TestReviewRecoveryLargerThanQueueNeverSucceeds(t *testing.T) {
	ts := newTestServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := ts.reg.Create(ctx, rooms.Settings{Name: "busy"}); err != nil {
		t.Fatal(err)
	}
	tok := ts.token("busy", "maria", "Maria", auth.RoleParticipant)
	maria := ts.dial(client.Options{Token: tok})
	join(t, maria, "busy")
	pos := maria.Position("busy")
	maria.Close()

	bot, err := ts.reg.Join(ctx, rooms.Actor{Member: protocol.Member{Identity: "bridge", Name: "Bridge", Role: "bot"}},
		"busy", rooms.JoinParams{ID: 1}, nopSink{})
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Repeat("relayed message ", 12) // ~190 characters: an ordinary chat line
	for i := 0; i < 4000; i++ {                    // < MaxRecover (10000) and < the broker's ring
		if _, err := bot.Chat(ctx, text, ""); err != nil {
			t.Fatal(err)
		}
	}

	back := ts.dial(client.Options{Token: tok})
	reply, err := back.Join(ctx, "busy", client.JoinOptions{Since: &pos})
	if err != nil {
		t.Fatalf("recovery of 4000 missed events failed: %v (client ended with %v)", err, back.Err())
	}
	if !reply.Recovered || len(reply.Events) < 4000 {
		t.Fatalf("recovered %v with %d events", reply.Recovered, len(reply.Events))
	}
}

// gateBroker holds History calls that recover (Since set) until the test opens the gate.
type gateBroker struct {
	*broker.Memory
	mu      sync.Mutex
	gate    chan struct{}
	entered chan struct{}
}

func (g *gateBroker) History(ctx context.Context, room string, opts broker.HistoryOptions) (broker.History, error) {
	g.mu.Lock()
	gate, entered := g.gate, g.entered
	g.gate, g.entered = nil, nil
	g.mu.Unlock()
	if opts.Since != nil && gate != nil {
		close(entered)
		<-gate
	}
	return g.Memory.History(ctx, room, opts)
}

// A connection in rooms a and b joins room z; z is closed while that join is under way, so the join fails
// (and the connection got a "left z"). z stays in conn.kicked while joined is decremented, so the next
// kick — closing room a — counts 2 kicked of 2 joined and closes the whole connection with 4006 ("do not
// reconnect"), although the connection is still in room b.
func TestReviewFailedJoinLeavesStaleKickThatClosesOtherRooms(t *testing.T) {
	gb := &gateBroker{Memory: broker.NewMemory(broker.MemoryOptions{})}
	t.Cleanup(func() { gb.Close() })
	ts := newTestServerOn(t, gb, nil)
	reg := ts.reg
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, n := range []string{"a", "b", "z"} {
		if _, err := reg.Create(ctx, rooms.Settings{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	x := ts.dial(client.Options{Token: ts.token("*", "xavier", "Xavier", auth.RoleParticipant)})
	join(t, x, "a")
	join(t, x, "b")

	gate, entered := make(chan struct{}), make(chan struct{})
	gb.mu.Lock()
	gb.gate, gb.entered = gate, entered
	gb.mu.Unlock()
	joinErr := make(chan error, 1)
	go func() {
		_, err := x.Join(ctx, "z", client.JoinOptions{Since: &protocol.Position{Epoch: "whatever", Offset: 1}})
		joinErr <- err
	}()
	<-entered // x's session in z is registered; the join waits for its history
	if err := reg.CloseRoom(ctx, "z", "over"); err != nil {
		t.Fatal(err)
	}
	close(gate)
	var re *client.RequestError
	if err := <-joinErr; !errors.As(err, &re) {
		t.Fatalf("join of the closed room: %v", err)
	}

	if err := reg.CloseRoom(ctx, "a", "over too"); err != nil {
		t.Fatal(err)
	}
	// x must get "left a" and stay in b.
	deadline := time.After(5 * time.Second)
	for got := false; !got; {
		select {
		case ev, ok := <-x.Events():
			if !ok {
				t.Fatalf("connection closed although it is still in room b: %v", x.Err())
			}
			got = ev.Left != nil && ev.Room == "a"
		case <-deadline:
			t.Fatal("no left for room a")
		}
	}
	if _, err := x.Chat(ctx, "b", "still here", ""); err != nil {
		t.Fatalf("chat in b: %v (client ended with %v)", err, x.Err())
	}
}

// A room's log restarts (new epoch). A connection in two rooms gets "left r" with 1012, and the client
// (since 316476b) joins r again on the same connection to recover. But the room kicked its old session
// without dropping it, so that join finds the connection's own stale session in r.local and "replaces"
// it: the connection kicks itself with 4005 ("joined from another connection", final), the client
// forgets r and reports Left — while the server has in fact joined it again (and leaks the session once
// the read loop purges the kick).
func TestReviewEpochRestartRejoinKicksItself(t *testing.T) {
	b := broker.NewMemory(broker.MemoryOptions{})
	t.Cleanup(func() { b.Close() })
	ts := newTestServerOn(t, b, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, n := range []string{"a", "r"} {
		if _, err := ts.reg.Create(ctx, rooms.Settings{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	x := ts.dial(client.Options{Token: ts.token("*", "xavier", "Xavier", auth.RoleParticipant), Reconnect: true})
	join(t, x, "a")
	join(t, x, "r")
	talker, err := ts.reg.Join(ctx, rooms.Actor{Member: protocol.Member{Identity: "bridge", Name: "Bridge", Role: "bot"}},
		"r", rooms.JoinParams{ID: 1}, nopSink{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.RemoveLog(ctx, "r"); err != nil { // the log is lost (Redis flush/failover)
		t.Fatal(err)
	}
	if _, err := talker.Chat(ctx, "first of the new epoch", ""); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(5 * time.Second)
	for done := false; !done; {
		select {
		case ev, ok := <-x.Events():
			if !ok {
				t.Fatalf("client ended: %v", x.Err())
			}
			if ev.Room != "r" {
				continue
			}
			if ev.Left != nil {
				t.Fatalf("rejoin after the log restart got the connection kicked out of r: %+v", *ev.Left)
			}
			done = ev.Reset != nil
		case <-deadline:
			t.Fatal("no reset for r after its log restarted")
		}
	}
	if _, err := x.Chat(ctx, "r", "back in r", ""); err != nil {
		t.Fatalf("chat in r after the reset: %v", err)
	}
}
