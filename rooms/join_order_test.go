package rooms

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/liveforum/liveforum/broker"
	"github.com/liveforum/liveforum/protocol"
)

// interleavingBroker runs a hook before or after the next AppendIf (a member's join), to put another
// node's event into the log just before or after it, as happens when this node's fold lags behind the log.
type interleavingBroker struct {
	*broker.Memory
	mu            sync.Mutex
	before, after func()
}

func (b *interleavingBroker) AppendIf(ctx context.Context, room string, data []byte, u broker.Update) (broker.Position, bool, error) {
	b.mu.Lock()
	before, after := b.before, b.after
	b.before, b.after = nil, nil
	b.mu.Unlock()
	if before != nil {
		before()
	}
	pos, ok, err := b.Memory.AppendIf(ctx, room, data, u)
	if after != nil {
		after()
	}
	return pos, ok, err
}

// A member's join on another node that is logged just before this node's join of the same member (and
// folded here while that join is in progress) is the older one: this node's connection is the member's,
// it must not be kicked, and the member must not stay in the room as this node's without a connection.
func TestEarlierJoinElsewhereDoesNotKickAJoiningSession(t *testing.T) {
	clk := &clock{now: time.Date(2030, 5, 1, 9, 0, 0, 0, time.UTC)}
	b := &interleavingBroker{Memory: broker.NewMemory(broker.MemoryOptions{})}
	reg := NewRegistry(b, Config{Now: clk.Now, SweepEvery: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	defer b.Close()
	defer reg.Close(protocol.CloseShutdown, "")
	ctx := context.Background()
	if _, err := reg.Create(ctx, Settings{Name: "r"}); err != nil {
		t.Fatal(err)
	}
	b.before = func() { foreignJoin(t, b.Memory, "r", "ana", "other~1") }
	sink := &memSink{}
	s, err := reg.Join(ctx, person("ana", "participant"), "r", JoinParams{ID: 1, Presence: true}, sink)
	if err != nil {
		t.Errorf("join: %v", err)
	}
	if sink.closeCode() != 0 {
		t.Errorf("the joining connection was closed (%d) by an older join elsewhere", sink.closeCode())
	}
	clk.Advance(time.Hour)
	reg.Sweep(ctx)
	_, state, err := b.State(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	held := string(state[memberKey("ana")])
	switch {
	case s != nil && held != string(memberValue(reg.Node(), person("ana", "participant").Member)):
		t.Errorf("ana is connected here but the room's state has %q", held)
	case s == nil && strings.Contains(held, reg.Node()):
		t.Errorf("ana has no connection here but stays in the room as this node's: %q", held)
	}
}

// A join of the same member on another node logged just after this node's join, and folded while this
// join is in progress, replaces this node's connection, as it would a connection already in the room.
func TestLaterJoinElsewhereReplacesAJoiningSession(t *testing.T) {
	b := &interleavingBroker{Memory: broker.NewMemory(broker.MemoryOptions{})}
	reg := NewRegistry(b, Config{SweepEvery: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	defer b.Close()
	defer reg.Close(protocol.CloseShutdown, "")
	ctx := context.Background()
	if _, err := reg.Create(ctx, Settings{Name: "r"}); err != nil {
		t.Fatal(err)
	}
	b.after = func() { foreignJoin(t, b.Memory, "r", "ana", "other~1") }
	sink := &memSink{}
	if _, err := reg.Join(ctx, person("ana", "participant"), "r", JoinParams{ID: 1, Presence: true}, sink); err == nil {
		t.Error("the join succeeded although a later join elsewhere replaced it")
	}
	if sink.closeCode() != protocol.CloseReplaced {
		t.Errorf("the replaced connection was closed with %d, want %d", sink.closeCode(), protocol.CloseReplaced)
	}
	if st, _ := reg.Get(ctx, "r"); st.Local != 0 || st.Members != 1 {
		t.Errorf("%d local sessions and %d members, want none here and ana elsewhere", st.Local, st.Members)
	}
}

// A join whose session is taken out of the room while it waits for its own join to be folded (here by
// an older removal of the same member, folded late) fails; but its join is logged, so the member must
// not stay in the room as this node's without a connection: its leave is logged.
func TestJoinTakenOutMeanwhileLeavesNoGhost(t *testing.T) {
	clk := &clock{now: time.Date(2030, 5, 1, 9, 0, 0, 0, time.UTC)}
	b := &interleavingBroker{Memory: broker.NewMemory(broker.MemoryOptions{})}
	reg := NewRegistry(b, Config{Now: clk.Now, SweepEvery: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	defer b.Close()
	defer reg.Close(protocol.CloseShutdown, "")
	ctx := context.Background()
	if _, err := reg.Create(ctx, Settings{Name: "r"}); err != nil {
		t.Fatal(err)
	}
	b.before = func() { // ana, in the room on another node, is removed there just before she joins here
		foreignJoin(t, b.Memory, "r", "ana", "other~1")
		m, by := person("ana", "participant").Member, person("mod", "moderator").Member
		data, err := protocol.Encode(protocol.Event{Kind: protocol.KindMemberRemoved, Time: 1, Member: &m, By: &by})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok, err := b.Memory.AppendIf(ctx, "r", data, broker.Update{Key: memberKey("ana"), Cond: broker.IfPresent}); err != nil || !ok {
			t.Fatalf("removal: ok %v err %v", ok, err)
		}
	}
	s, err := reg.Join(ctx, person("ana", "participant"), "r", JoinParams{ID: 1, Presence: true}, &memSink{})
	if err == nil {
		return // kept: nothing left behind
	}
	t.Logf("join: %v", err)
	clk.Advance(time.Hour)
	reg.Sweep(ctx)
	_, state, err := b.State(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	if held, ok := state[memberKey("ana")]; ok && s == nil {
		t.Fatalf("ana's join failed but she stays in the room: %s", held)
	}
}
