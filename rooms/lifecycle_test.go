package rooms

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/liveforum/liveforum/broker"
	"github.com/liveforum/liveforum/protocol"
)

// An empty room expires after its TTL: its record and log are gone, and a room created again under the
// same name starts a new log epoch.
func TestEmptyRoomExpires(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.EmptyTTL = 5 * time.Minute })
	ctx := context.Background()
	e.create(Settings{Name: "tmp"})
	e.sweep(time.Minute)
	ana, _, r1 := e.join(person("ana", "participant"), "tmp", JoinParams{})
	mustChat(t, ana, "remember me")
	ana.Leave(ctx, true) // empty from now

	e.sweep(5*time.Minute - time.Second)
	if _, err := e.reg.Get(ctx, "tmp"); err != nil {
		t.Fatalf("expired early: %v", err)
	}
	e.sweep(time.Second)
	if _, err := e.reg.Get(ctx, "tmp"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after expiry: %v", err)
	}
	if _, err := e.b.LoadRoom(ctx, "tmp"); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("record after expiry: %v", err)
	}
	if _, err := e.reg.Join(ctx, person("ana", "participant"), "tmp", JoinParams{}, &memSink{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("join after expiry: %v", err)
	}

	e.create(Settings{Name: "tmp"})
	_, _, r2 := e.join(person("bob", "participant"), "tmp", JoinParams{
		Since: &protocol.Position{Epoch: r1.Epoch, Offset: r1.Offset}})
	if r2.Epoch == r1.Epoch || r2.Recovered || len(r2.Events) != 0 || r2.Offset != 1 {
		t.Fatalf("re-created room: epoch %q (was %q), recovered %v, %d events, offset %d",
			r2.Epoch, r1.Epoch, r2.Recovered, len(r2.Events), r2.Offset)
	}
}

// A room's own EmptyTTL overrides the registry's.
func TestRoomEmptyTTLOverridesDefault(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.EmptyTTL = 10 * time.Minute })
	ctx := context.Background()
	e.create(Settings{Name: "short", EmptyTTL: time.Minute})
	e.create(Settings{Name: "default"})
	e.create(Settings{Name: "long", EmptyTTL: time.Hour})
	exists := func(name string) bool {
		_, err := e.reg.Get(ctx, name)
		if err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	e.sweep(time.Minute)
	if exists("short") || !exists("default") || !exists("long") {
		t.Fatalf("after 1m: short %v default %v long %v", exists("short"), exists("default"), exists("long"))
	}
	e.sweep(9 * time.Minute)
	if exists("default") || !exists("long") {
		t.Fatalf("after 10m: default %v long %v", exists("default"), exists("long"))
	}
	e.sweep(50 * time.Minute)
	if exists("long") {
		t.Fatal("long room outlived its own TTL")
	}
}

// A room with somebody in it never expires, and a dropped member in its grace still counts: the TTL runs
// from the logged leave.
func TestOccupiedRoomNeverExpires(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.EmptyTTL = time.Minute; c.LeaveGrace = 2 * time.Hour })
	ctx := context.Background()
	e.create(Settings{Name: "busy"})
	ana, _, _ := e.join(person("ana", "participant"), "busy", JoinParams{})
	e.sweep(1000 * time.Hour)
	if _, err := e.reg.Get(ctx, "busy"); err != nil {
		t.Fatalf("occupied room expired: %v", err)
	}
	ana.Leave(ctx, false)
	e.sweep(2*time.Hour - time.Second)
	if _, err := e.reg.Get(ctx, "busy"); err != nil {
		t.Fatalf("room of a member in grace expired: %v", err)
	}
	e.sweep(time.Second) // the leave is logged now; the room is empty from now
	if st, err := e.reg.Get(ctx, "busy"); err != nil || st.Members != 0 {
		t.Fatalf("right after the leave: %+v %v", st, err)
	}
	e.sweep(time.Minute)
	if _, err := e.reg.Get(ctx, "busy"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("empty room did not expire: %v", err)
	}
}

// Closing a room tells its members, disconnects them and forgets the room.
func TestCloseRoom(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.create(Settings{Name: "hall"})
	ana, anaSink, _ := e.join(person("ana", "moderator"), "hall", JoinParams{Presence: true})
	_, botSink, _ := e.join(person("bot", "bot"), "hall", JoinParams{Presence: false})

	if err := e.reg.CloseRoom(ctx, "hall", "meeting over"); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*memSink{"ana": anaSink, "bot": botSink} {
		evs := s.events(t)
		if len(evs) == 0 {
			t.Fatalf("%s got no room.closed event", name)
		}
		last := evs[len(evs)-1]
		if last.Kind != protocol.KindRoomClosed || last.Reason != "meeting over" || last.Room == nil || last.Room.Name != "hall" {
			t.Fatalf("%s's last event: %+v", name, last)
		}
		if s.closeCode() != protocol.CloseRoomClosed {
			t.Fatalf("%s closed with %d", name, s.closeCode())
		}
	}
	if _, err := e.reg.Get(ctx, "hall"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a closed room: %v", err)
	}
	if _, err := ana.Chat(ctx, "anyone?", ""); !errors.Is(err, ErrClosed) {
		t.Fatalf("chat in a closed room: %v", err)
	}
	if _, err := e.reg.Join(ctx, person("cai", "participant"), "hall", JoinParams{}, &memSink{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("join of a closed room: %v", err)
	}
	if err := e.reg.CloseRoom(ctx, "hall", ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("closing twice: %v", err)
	}
	// Closing a room that exists but is not loaded on this node works too.
	e.create(Settings{Name: "idle"})
	if err := e.reg.CloseRoom(ctx, "idle", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.Get(ctx, "idle"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of closed idle room: %v", err)
	}
}

func TestChatValidation(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxChatRunes = 10 })
	ctx := context.Background()
	e.create(Settings{Name: "r"})
	ana, sink, _ := e.join(person("ana", "participant"), "r", JoinParams{})
	for _, c := range []struct {
		name, text, nonce, want string
		err                     error
	}{
		{name: "empty", text: "", err: ErrEmptyText},
		{name: "blank", text: " \n\t\u00a0 ", err: ErrEmptyText},
		{name: "too long", text: "12345678901", err: ErrTooLong},
		{name: "limit counts characters", text: "éééééééééé", want: "éééééééééé"},
		{name: "trimmed", text: "  padded \n", want: "padded"},
		{name: "controls dropped, newline and tab kept", text: "a\x00b\x1b\r\nd\t\u0085f", want: "ab\nd\tf"},
		{name: "nonce too long", text: "hi", nonce: string(make([]byte, protocol.MaxNonceLen+1)), err: ErrTooLong},
		{name: "nonce echoed", text: "hi", nonce: "n-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd", want: "hi"},
	} {
		t.Run(c.name, func(t *testing.T) {
			off, err := ana.Chat(ctx, c.text, c.nonce)
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("got %v, want %v", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			evs := sink.events(t)
			last := evs[len(evs)-1]
			if last.Offset != off || last.Kind != protocol.KindChat || last.Text != c.want || last.Nonce != c.nonce ||
				last.From == nil || *last.From != ana.Member() || last.Time != e.clock.Now().UnixMilli() {
				t.Fatalf("logged %+v (from %+v) at %d, want %q at %d", last, last.From, last.Offset, c.want, off)
			}
		})
	}
	if n := e.count("r", protocol.KindChat, "ana"); n != 4 {
		t.Fatalf("%d chats logged, want 4", n)
	}
}

// Recovery gives exactly the events after the given position, then live events continue from there.
func TestRecoveryGivesExactlyTheMissedEvents(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxRecover = 8 })
	ctx := context.Background()
	e.create(Settings{Name: "r"})
	obs, _, _ := e.join(person("obs", "participant"), "r", JoinParams{Presence: true})
	ana, anaSink, r0 := e.join(person("ana", "participant"), "r", JoinParams{Presence: true})
	mustChat(t, ana, "c1")
	mustChat(t, obs, "c2")
	evs := anaSink.events(t)
	since := protocol.Position{Epoch: r0.Epoch, Offset: evs[len(evs)-1].Offset}
	ana.Leave(ctx, false) // dropped: with no grace, its leave is logged

	mustChat(t, obs, "c3")
	bob, _, _ := e.join(person("bob", "participant"), "r", JoinParams{Presence: true})
	mustChat(t, bob, "c4")
	bob.Leave(ctx, true)

	_, s2, r := e.join(person("ana", "participant"), "r", JoinParams{ID: 9, Presence: true, Since: &since})
	if !r.Recovered || r.Epoch != since.Epoch {
		t.Fatalf("not recovered: %+v", r)
	}
	log := e.logOf("r")
	var want []logged
	for _, ev := range log {
		if ev.Offset > since.Offset {
			want = append(want, ev)
		}
	}
	if len(r.Events) != len(want) || r.Offset != log[len(log)-1].Offset {
		t.Fatalf("recovered %d events up to %d, log has %d after %d up to %d", len(r.Events), r.Offset, len(want), since.Offset, log[len(log)-1].Offset)
	}
	for i, h := range r.Events {
		got := decodeEvent(t, h.Offset, h.Data)
		if got.Offset != want[i].Offset || got.Kind != want[i].Kind {
			t.Fatalf("recovered event %d: %d %s, want %d %s", i, got.Offset, got.Kind, want[i].Offset, want[i].Kind)
		}
	}
	// The recovery includes ana's own leave and join, which happened after her position.
	if k := decodeEvent(t, r.Events[len(r.Events)-1].Offset, r.Events[len(r.Events)-1].Data); k.Kind != protocol.KindMemberJoined || k.Member.Identity != "ana" {
		t.Fatalf("last recovered event %+v", k)
	}
	off := mustChat(t, obs, "c5")
	if live := s2.events(t); len(live) != 1 || live[0].Offset != off || off != r.Offset+1 {
		t.Fatalf("live after recovery: %+v (chat at %d, reply at %d)", live, off, r.Offset)
	}

	// Nothing missed: recovered, no events.
	top := protocol.Position{Epoch: r.Epoch, Offset: off}
	if _, _, r := e.join(person("cai", "participant"), "r", JoinParams{Since: &top}); !r.Recovered || len(r.Events) != 0 {
		t.Fatalf("recovery at the top: %+v", r)
	}
	// Another epoch, a position beyond the log, or more missed events than MaxRecover: not recovered,
	// the recent chat instead.
	for name, p := range map[string]protocol.Position{
		"other epoch": {Epoch: "elsewhere", Offset: 2},
		"future":      {Epoch: r.Epoch, Offset: off + 5},
		"too far":     {Epoch: r.Epoch, Offset: 1},
	} {
		_, _, r := e.join(person("dan", "participant"), "r", JoinParams{Since: &p})
		if r.Recovered || r.Epoch != since.Epoch {
			t.Fatalf("%s: recovered=%v epoch %q", name, r.Recovered, r.Epoch)
		}
		if got := historyTexts(t, r); len(got) != 5 || got[0] != "c1" || got[4] != "c5" {
			t.Fatalf("%s: history %q", name, got)
		}
	}
}

// A join whose reply cannot be queued (the connection is closing) fails.
func TestJoinIntoClosedSinkFails(t *testing.T) {
	e := newEnv(t, nil)
	e.create(Settings{Name: "r"})
	dead := &memSink{}
	dead.Close(protocol.CloseShutdown, "")
	if _, err := e.reg.Join(context.Background(), person("ana", "participant"), "r", JoinParams{}, dead); err == nil {
		t.Fatal("join with a closed sink succeeded")
	}
}
