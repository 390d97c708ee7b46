package rooms

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/liveforum/liveforum/broker"
	"github.com/liveforum/liveforum/protocol"
)

// assertAlive checks, for a while, that the node's heartbeat never lapses: other nodes would take it for
// dead and log its members as left.
func assertAlive(t *testing.T, b broker.Broker, node string, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		alive, err := b.Alive(context.Background(), []string{node})
		if err != nil {
			t.Fatal(err)
		}
		if !alive[node] {
			t.Fatalf("the node's heartbeat lapsed")
		}
	}
}

// A node's heartbeat is renewed every third of NodeTTL, as Config documents, whatever the sweep interval:
// with a heartbeat lifetime shorter than the sweep interval (here the default, 1 s) it must not lapse
// between sweeps. (liveforum serve allows -node-ttl 1s, as long as its sweep interval: a renewal
// that comes a little late leaves a gap.)
func TestHeartbeatOutlivesTheSweepInterval(t *testing.T) {
	b := broker.NewMemory(broker.MemoryOptions{})
	reg := NewRegistry(b, Config{NodeTTL: 300 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	defer b.Close()
	defer reg.Close(protocol.CloseShutdown, "")
	eventually(t, "the first heartbeat", func() bool {
		alive, _ := b.Alive(context.Background(), []string{reg.Node()})
		return alive[reg.Node()]
	})
	assertAlive(t, b, reg.Node(), 1500*time.Millisecond)
}

// slowLeaveBroker holds every append of a leave for a while, as Redis does while the master of the
// room's slot is down (an append that cannot connect waits up to 2 s for it).
type slowLeaveBroker struct {
	*broker.Memory
	hold time.Duration
}

func (b *slowLeaveBroker) AppendIf(ctx context.Context, room string, data []byte, u broker.Update) (broker.Position, bool, error) {
	if isPresence(data) && u.Cond == broker.IfEqual {
		time.Sleep(b.hold)
	}
	return b.Memory.AppendIf(ctx, room, data, u)
}

// A sweep slowed down by the broker (here, leaves whose appends are held) must not stop the node's
// heartbeat: the node is alive, and its members would be logged as left by the others.
func TestSlowSweepKeepsTheHeartbeat(t *testing.T) {
	b := &slowLeaveBroker{Memory: broker.NewMemory(broker.MemoryOptions{}), hold: 800 * time.Millisecond}
	reg := NewRegistry(b, Config{SweepEvery: 20 * time.Millisecond, NodeTTL: 300 * time.Millisecond,
		LeaveGrace: time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	defer b.Close()
	defer reg.Close(protocol.CloseShutdown, "")
	ctx := context.Background()
	a := person("ana", "participant")
	a.Create = &Settings{}
	s, err := reg.Join(ctx, a, "r", JoinParams{}, &memSink{})
	if err != nil {
		t.Fatal(err)
	}
	s.Leave(ctx, false) // its leave is logged by the sweeper, slowly
	assertAlive(t, b, reg.Node(), 1200*time.Millisecond)
}
