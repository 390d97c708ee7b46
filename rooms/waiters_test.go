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

// laggingBroker is the memory broker with delivery held back while lag is set, as a Redis node's fold
// lags behind the log: events are kept, undelivered.
type laggingBroker struct {
	*broker.Memory
	mu   sync.Mutex
	lag  bool
	held []broker.Event
}

func (b *laggingBroker) Subscribe(ctx context.Context, room string, h broker.Handler) error {
	return b.Memory.Subscribe(ctx, room, func(epoch string, ev broker.Event) {
		b.mu.Lock()
		lag := b.lag
		if lag {
			b.held = append(b.held, ev)
		}
		b.mu.Unlock()
		if !lag {
			h(epoch, ev)
		}
	})
}

// A join waiting for this node to fold its own join is released when an operator closes the room here:
// the room's subscription is gone, so that event will never come.
func TestCloseReleasesAJoinWaitingForItsFold(t *testing.T) {
	b := &laggingBroker{Memory: broker.NewMemory(broker.MemoryOptions{})}
	reg := NewRegistry(b, Config{SweepEvery: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	defer b.Close()
	defer reg.Close(protocol.CloseShutdown, "")
	ctx := context.Background()
	if _, err := reg.Create(ctx, Settings{Name: "r"}); err != nil {
		t.Fatal(err)
	}
	r := reg.loadedRoom("r")
	b.mu.Lock()
	b.lag = true
	b.mu.Unlock()
	joined := make(chan error, 1)
	go func() {
		_, err := reg.Join(ctx, person("ana", "participant"), "r", JoinParams{ID: 1}, &memSink{})
		joined <- err
	}()
	eventually(t, "the join waits for its fold", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.waiters) == 1
	})
	if err := reg.CloseRoom(ctx, "r", "over"); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	waiting := len(r.waiters)
	r.mu.Unlock()
	if waiting != 0 {
		t.Errorf("%d joins still wait for a removed room's fold", waiting)
	}
	select {
	case err := <-joined:
		if err == nil {
			t.Error("a join into a room closed meanwhile succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the join never returned")
	}
}
