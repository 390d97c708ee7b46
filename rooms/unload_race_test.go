package rooms

import (
	"context"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/liveforum/liveforum/broker"
	"github.com/liveforum/liveforum/protocol"
)

// foreignJoin logs, as another node would, that member id joined there.
func foreignJoin(t *testing.T, b broker.Broker, room, id, node string) {
	t.Helper()
	m := person(id, "participant").Member
	data, err := protocol.Encode(protocol.Event{Kind: protocol.KindMemberJoined, Time: 1, Member: &m, Node: node})
	if err != nil {
		t.Fatal(err)
	}
	v := memberValue(node, m)
	if _, ok, err := b.AppendIf(context.Background(), room, data,
		broker.Update{Key: memberKey(id), Value: v, Cond: broker.IfNotEqual, Expect: v}); err != nil || !ok {
		t.Fatalf("foreign join of %s: ok %v err %v", id, ok, err)
	}
}

// waitBlockedIn waits until a goroutine whose stack has fn in it is blocked taking a mutex.
func waitBlockedIn(t *testing.T, fn string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.Stack(buf, true)
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			if strings.Contains(g, fn) && strings.Contains(g, "sync.(*Mutex).Lock") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no goroutine blocked on a mutex in %s", fn)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A join that gets the room from the registry just before the sweeper unloads it (no local member,
// members on other nodes) must load the room again, not report that the room does not exist.
func TestJoinRacingUnloadLoadsTheRoomAgain(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.create(Settings{Name: "r"})
	foreignJoin(t, e.b, "r", "bo", "other~1") // the room is idle here: its only member is elsewhere
	r := e.reg.loadedRoom("r")
	r.presence.Lock()
	type result struct {
		s   *Session
		err error
	}
	done := make(chan result, 1)
	sink := &memSink{}
	go func() {
		s, err := e.reg.Join(ctx, person("ana", "participant"), "r", JoinParams{ID: 1, Presence: true}, sink)
		done <- result{s, err}
	}()
	waitBlockedIn(t, "rooms.(*Registry).Join") // it has the room, and waits for its presence lock
	if err := e.reg.remove(ctx, r, removeUnload); err != nil {
		t.Fatal(err)
	}
	r.presence.Unlock()
	res := <-done
	if res.err != nil {
		t.Fatalf("join racing an unload: %v", res.err)
	}
	if got := replyOf(t, sink, 1).MemberCount; got != 2 {
		t.Fatalf("join reply: %d members, want ana and bo", got)
	}
	if _, err := res.s.Chat(ctx, "hello", ""); err != nil {
		t.Fatalf("chat after the join: %v", err)
	}
}

// An operator's close of a room that the sweeper is unloading at that moment must still delete the
// room: an unload only forgets it on this node.
func TestCloseRacingUnloadDeletesTheRoom(t *testing.T) {
	b := &pausingBroker{Memory: broker.NewMemory(broker.MemoryOptions{}), entered: make(chan struct{}), release: make(chan struct{})}
	reg := NewRegistry(b, Config{SweepEvery: time.Hour, UnloadAfter: time.Minute, Logger: slog.New(slog.DiscardHandler)})
	defer b.Close()
	defer reg.Close(protocol.CloseShutdown, "")
	ctx := context.Background()
	if _, err := reg.Create(ctx, Settings{Name: "r"}); err != nil {
		t.Fatal(err)
	}
	foreignJoin(t, b, "r", "bo", "other~1")
	r := reg.loadedRoom("r")
	unloaded := make(chan error, 1)
	go func() { unloaded <- reg.remove(ctx, r, removeUnload) }()
	<-b.entered // the unload is under way: its Unsubscribe waits
	closed := make(chan error, 1)
	go func() { closed <- reg.remove(ctx, r, removeClose, "over") }() // as CloseRoom, which had the room already
	select {
	case err := <-closed:
		closed <- err
	case <-time.After(100 * time.Millisecond):
	}
	close(b.release)
	if err := <-unloaded; err != nil {
		t.Fatal(err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if _, err := b.LoadRoom(ctx, "r"); err == nil {
		t.Fatal("the closed room's record is still there: it loads again on the next join")
	}
}
