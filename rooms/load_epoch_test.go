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

// historyHookBroker runs a hook once, at the first History call: while a room is loading, between its
// reading the room's state and its folding the events delivered meanwhile.
type historyHookBroker struct {
	*broker.Memory
	once sync.Once
	hook func()
}

func (b *historyHookBroker) History(ctx context.Context, room string, opts broker.HistoryOptions) (broker.History, error) {
	b.once.Do(b.hook)
	return b.Memory.History(ctx, room, opts)
}

// When the room's log is replaced (a new epoch) while this node loads the room, the events of the new
// log delivered meanwhile are newer than the state it read: they must be folded, not dropped as if
// they came from an older log.
func TestLoadKeepsEventsOfALogReplacedMeanwhile(t *testing.T) {
	b := &historyHookBroker{Memory: broker.NewMemory(broker.MemoryOptions{})}
	ctx := context.Background()
	if err := b.SaveRoom(ctx, "r", []byte(`{"name":"r","guests":true}`)); err != nil {
		t.Fatal(err)
	}
	foreignJoin(t, b.Memory, "r", "al", "other~1") // the old log
	b.hook = func() {
		if err := b.RemoveLog(ctx, "r"); err != nil {
			t.Error(err)
		}
		foreignJoin(t, b.Memory, "r", "bo", "other~1") // the first event of the new log
	}
	reg := NewRegistry(b, Config{SweepEvery: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	defer b.Close()
	defer reg.Close(protocol.CloseShutdown, "")
	sink := &memSink{}
	if _, err := reg.Join(ctx, person("ana", "participant"), "r", JoinParams{ID: 1, Presence: true}, sink); err != nil {
		t.Fatal(err)
	}
	top, state, err := b.State(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	st, err := reg.Get(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	if st.Epoch != top.Epoch || st.Offset != top.Offset || st.Members != len(state) {
		t.Fatalf("this node has %d members at %s/%d; the log has %d at %s/%d", st.Members, st.Epoch, st.Offset,
			len(state), top.Epoch, top.Offset)
	}
}
