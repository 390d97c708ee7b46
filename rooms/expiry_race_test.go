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
