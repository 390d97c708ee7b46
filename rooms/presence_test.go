package rooms

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/liveforum/liveforum/protocol"
)

// A second connection of the same identity takes over: the first is closed as replaced, and the member
// neither leaves nor joins in the log.
func TestSameIdentityReplacesWithoutPresenceEvents(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.create(Settings{Name: "r"})
	_, obsSink, _ := e.join(person("obs", "participant"), "r", JoinParams{Presence: true})
	first, sink1, _ := e.join(person("ana", "participant"), "r", JoinParams{Presence: true})
	before := obsSink.kinds(t)

	second, _, r2 := e.join(person("ana", "participant"), "r", JoinParams{Presence: true})
	if sink1.closeCode() != protocol.CloseReplaced {
		t.Fatalf("first session closed with %d, want %d", sink1.closeCode(), protocol.CloseReplaced)
	}
	if r2.MemberCount != 2 || len(r2.Members) != 2 {
		t.Fatalf("after the takeover: %d members %v", r2.MemberCount, r2.Members)
	}
	// The old connection ends afterwards and leaves, as the server does when a connection closes.
	first.Leave(ctx, false)
	first.Leave(ctx, true)
	if _, err := first.Chat(ctx, "from the old connection", ""); !errors.Is(err, ErrClosed) {
		t.Fatalf("chat on a replaced session: %v", err)
	}
	if j, l := e.count("r", protocol.KindMemberJoined, "ana"), e.count("r", protocol.KindMemberLeft, "ana"); j != 1 || l != 0 {
		t.Fatalf("log holds %d joins and %d leaves of ana, want 1 and 0", j, l)
	}
	if after := obsSink.kinds(t); after[protocol.KindMemberJoined] != before[protocol.KindMemberJoined] || after[protocol.KindMemberLeft] != 0 {
		t.Fatalf("observer saw presence events for a takeover: %v then %v", before, after)
	}
	if n := e.members("r"); n != 2 {
		t.Fatalf("%d members", n)
	}
	off := mustChat(t, second, "from the new connection")
	if evs := obsSink.events(t); evs[len(evs)-1].Offset != off {
		t.Fatalf("observer's last event %+v", evs[len(evs)-1])
	}

	// Coming back under a new display name is a change others must see: it is logged as a join.
	renamed := person("ana", "participant")
	renamed.Member.Name = "Ana B."
	e.join(renamed, "r", JoinParams{Presence: true})
	evs := obsSink.events(t)
	if last := evs[len(evs)-1]; last.Kind != protocol.KindMemberJoined || last.Member.Name != "Ana B." {
		t.Fatalf("rename: observer's last event %+v", last)
	}
}

// A dropped member stays for LeaveGrace, then its leave is logged exactly once by a sweep.
func TestDroppedMemberLeavesAfterGrace(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.LeaveGrace = 30 * time.Second })
	e.create(Settings{Name: "r"})
	_, obsSink, _ := e.join(person("obs", "participant"), "r", JoinParams{Presence: true})
	ana, _, _ := e.join(person("ana", "participant"), "r", JoinParams{Presence: true})

	ana.Leave(context.Background(), false)
	if n := e.members("r"); n != 2 {
		t.Fatalf("dropped member gone at once: %d members", n)
	}
	e.sweep(29 * time.Second)
	if n, l := e.members("r"), e.count("r", protocol.KindMemberLeft, "ana"); n != 2 || l != 0 {
		t.Fatalf("before the grace ended: %d members, %d leaves", n, l)
	}
	e.sweep(time.Second)
	if n, l := e.members("r"), e.count("r", protocol.KindMemberLeft, "ana"); n != 1 || l != 1 {
		t.Fatalf("after the grace: %d members, %d leaves", n, l)
	}
	e.sweep(time.Hour)
	ana.Leave(context.Background(), true)
	if l := e.count("r", protocol.KindMemberLeft, "ana"); l != 1 {
		t.Fatalf("%d leaves logged", l)
	}
	if k := obsSink.kinds(t); k[protocol.KindMemberLeft] != 1 {
		t.Fatalf("observer saw %v", k)
	}
}

// Coming back within the grace is seamless: no leave, no second join.
func TestRejoinWithinGraceIsSeamless(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.LeaveGrace = 30 * time.Second })
	e.create(Settings{Name: "r"})
	_, obsSink, _ := e.join(person("obs", "participant"), "r", JoinParams{Presence: true})
	ana, _, r1 := e.join(person("ana", "participant"), "r", JoinParams{Presence: true})
	before := len(obsSink.events(t))

	ana.Leave(context.Background(), false)
	e.sweep(10 * time.Second)
	_, _, r2 := e.join(person("ana", "participant"), "r", JoinParams{Presence: true,
		Since: &protocol.Position{Epoch: r1.Epoch, Offset: r1.Offset}})
	if !r2.Recovered || len(r2.Events) != 0 || r2.MemberCount != 2 {
		t.Fatalf("rejoin reply: %+v", r2)
	}
	e.sweep(time.Hour)
	if j, l := e.count("r", protocol.KindMemberJoined, "ana"), e.count("r", protocol.KindMemberLeft, "ana"); j != 1 || l != 0 {
		t.Fatalf("%d joins and %d leaves of ana logged", j, l)
	}
	if n := e.members("r"); n != 2 {
		t.Fatalf("%d members", n)
	}
	if after := len(obsSink.events(t)); after != before {
		t.Fatalf("observer got %d events for a quiet reconnect", after-before)
	}
}

// An explicit leave is logged at once, whatever the grace.
func TestExplicitLeaveIsLoggedAtOnce(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.LeaveGrace = time.Hour })
	e.create(Settings{Name: "r"})
	_, obsSink, _ := e.join(person("obs", "participant"), "r", JoinParams{Presence: true})
	ana, _, _ := e.join(person("ana", "participant"), "r", JoinParams{Presence: true})
	ana.Leave(context.Background(), true)
	ana.Leave(context.Background(), true)
	ana.Leave(context.Background(), false)
	if n, l := e.members("r"), e.count("r", protocol.KindMemberLeft, "ana"); n != 1 || l != 1 {
		t.Fatalf("explicit leave: %d members, %d leaves", n, l)
	}
	evs := obsSink.events(t)
	if last := evs[len(evs)-1]; last.Kind != protocol.KindMemberLeft || last.Member.Identity != "ana" {
		t.Fatalf("observer's last event %+v", last)
	}
	if _, err := ana.Chat(context.Background(), "still here?", ""); !errors.Is(err, ErrClosed) {
		t.Fatalf("chat after leaving: %v", err)
	}
}

// A moderator removes a member: the removal is logged with who did it, the member's connection is closed
// as removed, and everyone else learns of it.
func TestModeratorRemovesMember(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.LeaveGrace = time.Minute })
	ctx := context.Background()
	e.create(Settings{Name: "r"})
	mod, modSink, _ := e.join(person("mod", "moderator"), "r", JoinParams{Presence: true})
	par, parSink, _ := e.join(person("par", "participant"), "r", JoinParams{Presence: true})
	_, botSink, _ := e.join(person("bot", "bot"), "r", JoinParams{Presence: false})
	_, obsSink, _ := e.join(person("obs", "participant"), "r", JoinParams{Presence: true})

	if err := par.Remove(ctx, "obs", "I do not like them"); !errors.Is(err, ErrForbidden) {
		t.Fatalf("participant removing: %v", err)
	}
	if err := mod.Remove(ctx, "nobody", ""); !errors.Is(err, ErrNoMember) {
		t.Fatalf("removing an unknown identity: %v", err)
	}
	if n := e.count("r", protocol.KindMemberRemoved, "obs"); n != 0 {
		t.Fatalf("refused removals logged %d events", n)
	}

	if err := mod.Remove(ctx, "par", "  spam\x00  "); err != nil {
		t.Fatal(err)
	}
	if parSink.closeCode() != protocol.CloseRemoved {
		t.Fatalf("removed member's sink closed with %d", parSink.closeCode())
	}
	for name, s := range map[string]*memSink{"moderator": modSink, "observer": obsSink} {
		evs := s.events(t)
		last := evs[len(evs)-1]
		if last.Kind != protocol.KindMemberRemoved || last.Member.Identity != "par" || last.By == nil ||
			last.By.Identity != "mod" || last.Reason != "spam" {
			t.Fatalf("%s's last event: %+v", name, last)
		}
	}
	if k := botSink.kinds(t); k[protocol.KindMemberRemoved] != 0 {
		t.Fatalf("presence-less session got %v", k)
	}
	if n := e.members("r"); n != 3 {
		t.Fatalf("%d members after the removal", n)
	}
	if _, err := par.Chat(ctx, "let me back", ""); !errors.Is(err, ErrClosed) {
		t.Fatalf("removed member's chat: %v", err)
	}
	// The removed connection ends and leaves; no leave is logged on top of the removal, even after the grace.
	par.Leave(ctx, false)
	e.sweep(time.Hour)
	if n := e.count("r", protocol.KindMemberLeft, "par"); n != 0 {
		t.Fatalf("%d leaves logged for a removed member", n)
	}
	if err := mod.Remove(ctx, "par", ""); !errors.Is(err, ErrNoMember) {
		t.Fatalf("removing twice: %v", err)
	}

	// A member whose connection dropped can be removed during its grace; its leave is then never logged.
	late, _, _ := e.join(person("late", "participant"), "r", JoinParams{Presence: true})
	late.Leave(ctx, false)
	if err := mod.Remove(ctx, "late", ""); err != nil {
		t.Fatalf("removing a member in its grace: %v", err)
	}
	e.sweep(time.Hour)
	if r, l := e.count("r", protocol.KindMemberRemoved, "late"), e.count("r", protocol.KindMemberLeft, "late"); r != 1 || l != 0 {
		t.Fatalf("member in grace: %d removals, %d leaves", r, l)
	}
}
