package rooms

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/liveforum/liveforum/broker"
	"github.com/liveforum/liveforum/protocol"
)

// pausingBroker is the memory broker with the first Unsubscribe held until the test releases it, to make
// the window between an expiry's forgetting a room and its broker clean-up wide.
type pausingBroker struct {
	*broker.Memory
	once             sync.Once
	entered, release chan struct{}
}

func (p *pausingBroker) Unsubscribe(ctx context.Context, room string) error {
	p.once.Do(func() { close(p.entered); <-p.release })
	return p.Memory.Unsubscribe(ctx, room)
}

// A member who joins while an expiry of the room is cleaning up must end in a working room.
func TestJoinDuringExpiryKeepsAWorkingRoom(t *testing.T) {
	clk := &clock{now: time.Now()}
	b := &pausingBroker{Memory: broker.NewMemory(broker.MemoryOptions{}), entered: make(chan struct{}), release: make(chan struct{})}
	reg := NewRegistry(b, Config{Now: clk.Now, SweepEvery: time.Hour, EmptyTTL: time.Minute, Logger: slog.New(slog.DiscardHandler)})
	defer b.Close()
	defer reg.Close(protocol.CloseShutdown, "")
	ctx := context.Background()
	if _, err := reg.Create(ctx, Settings{Name: "r"}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	swept := make(chan struct{})
	go func() { reg.Sweep(ctx); close(swept) }()
	<-b.entered
	a := person("ana", "moderator")
	a.Create = &Settings{}
	sink := &memSink{}
	type joined struct {
		s   *Session
		err error
	}
	jc := make(chan joined, 1)
	go func() { // may wait for the expiry's clean-up
		s, err := reg.Join(ctx, a, "r", JoinParams{Presence: true}, sink)
		jc <- joined{s, err}
	}()
	select { // give the join the chance to slip into the window (it need not wait for the sweep)
	case j := <-jc:
		jc <- j
	case <-time.After(100 * time.Millisecond):
	}
	close(b.release)
	<-swept
	j := <-jc
	s, err := j.s, j.err
	if err != nil {
		t.Fatal(err)
	}
	off, err := s.Chat(ctx, "hello?", "")
	if err != nil {
		t.Fatal(err)
	}
	if evs := sink.events(t); len(evs) == 0 || evs[len(evs)-1].Offset != off {
		t.Errorf("the member's own chat at %d never reached it: %+v", off, evs)
	}
	if _, err := b.LoadRoom(ctx, "r"); err != nil {
		t.Errorf("the room has a member but no record: %v", err)
	}
}

// joinOnUnsubscribe is the memory broker where, when this node unsubscribes a room (an expiry, after
// it has checked the broker's state), another node's member joins that room.
type joinOnUnsubscribe struct {
	*broker.Memory
	t    *testing.T
	once sync.Once
}

func (b *joinOnUnsubscribe) Unsubscribe(ctx context.Context, room string) error {
	b.once.Do(func() { foreignJoin(b.t, b.Memory, room, "bo", "other~1") })
	return b.Memory.Unsubscribe(ctx, room)
}

// An expiry deletes the room only if nobody joined it anywhere since it checked the broker's state: a
// join on another node landing in between must keep the room's log and record.
func TestExpiryKeepsARoomJoinedElsewhereMeanwhile(t *testing.T) {
	clk := &clock{now: time.Now()}
	b := &joinOnUnsubscribe{Memory: broker.NewMemory(broker.MemoryOptions{}), t: t}
	reg := NewRegistry(b, Config{Now: clk.Now, SweepEvery: time.Hour, EmptyTTL: time.Minute, Logger: slog.New(slog.DiscardHandler)})
	defer b.Close()
	defer reg.Close(protocol.CloseShutdown, "")
	ctx := context.Background()
	if _, err := reg.Create(ctx, Settings{Name: "r"}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	reg.Sweep(ctx)
	if _, err := b.LoadRoom(ctx, "r"); err != nil {
		t.Errorf("the room's record was deleted under a member who joined on another node: %v", err)
	}
	if _, state, err := b.State(ctx, "r"); err != nil || len(state) != 1 {
		t.Errorf("the room's state after the expiry: %d members (%v), want bo", len(state), err)
	}
}
