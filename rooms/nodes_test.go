package rooms

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/liveforum/liveforum/broker"
	"github.com/liveforum/liveforum/internal/redistest"
	"github.com/liveforum/liveforum/protocol"
)

// Presence across nodes: several registries, each with its own Redis broker on one real redis-server, as
// several liveforum processes would be. Real time: heartbeats expire on Redis's clock.

type node struct {
	reg    *Registry
	b      *broker.Redis
	killed bool
}

func newNode(t *testing.T, srv *redistest.Server, historySize int) *node {
	t.Helper()
	b, err := broker.NewRedis(context.Background(), broker.RedisOptions{URL: srv.URL(), HistorySize: historySize,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	n := &node{b: b}
	n.reg = NewRegistry(b, Config{SweepEvery: 50 * time.Millisecond, NodeTTL: 600 * time.Millisecond,
		UnloadAfter: 300 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(n.kill)
	return n
}

// kill stops the node as a crash would: no leave is logged, its heartbeat just stops.
func (n *node) kill() {
	if n.killed {
		return
	}
	n.killed = true
	n.reg.Close(protocol.CloseShutdown, "killed")
	_ = n.b.Close()
}

func (n *node) join(t *testing.T, id, room string) (*Session, *memSink) {
	t.Helper()
	sink := &memSink{}
	a := person(id, "participant")
	a.Create = &Settings{Guests: true}
	s, err := n.reg.Join(context.Background(), a, room, JoinParams{ID: 1, Presence: true}, sink)
	if err != nil {
		t.Fatalf("%s joins %s on node %s: %v", id, room, n.reg.Node(), err)
	}
	return s, sink
}

// memberSet is the room's members as the node's fold has them, "identity@node" sorted.
func (n *node) memberSet(room string) string {
	r := n.reg.loadedRoom(room)
	if r == nil {
		return "(not loaded)"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := ""
	for _, id := range sortedKeys(r.members) {
		out += id + "@" + r.nodes[id] + " "
	}
	return out
}

func sortedKeys(m map[string]protocol.Member) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := range keys {
		for j := i + 1; j < len(keys); j++ {
			if keys[j] < keys[i] {
				keys[i], keys[j] = keys[j], keys[i]
			}
		}
	}
	return keys
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kindsIn counts a room's logged events by kind and identity ("member.left u1").
func kindsIn(t *testing.T, b broker.Broker, room string) map[string]int {
	t.Helper()
	h, err := b.History(context.Background(), room, broker.HistoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, ev := range h.Events {
		e := decodeEvent(t, ev.Offset, ev.Data)
		if e.Member != nil {
			out[e.Kind+" "+e.Member.Identity]++
		}
	}
	return out
}

// A node that loads a room whose joins were trimmed from the log long ago still knows its members: it
// reads them from the room's state, with the position they are as of.
func TestMembersFromStateAfterTrim(t *testing.T) {
	srv := redistest.Start(t)
	a, b := newNode(t, srv, 8), newNode(t, srv, 8)
	sa, _ := a.join(t, "ana", "plaza")
	b.join(t, "bo", "plaza")
	for i := range 40 { // push the joins out of the stream
		mustChat(t, sa, fmt.Sprintf("message %d", i))
	}
	want := "ana@" + a.reg.Node() + " bo@" + b.reg.Node() + " "
	eventually(t, "both nodes fold both members", func() bool { return a.memberSet("plaza") == want && b.memberSet("plaza") == want })

	c := newNode(t, srv, 8)
	_, sink := c.join(t, "cy", "plaza")
	reply := replyOf(t, sink, 1)
	if reply.MemberCount != 3 || len(reply.Members) != 3 {
		t.Fatalf("join reply on a third node: %d members %v; want ana, bo and cy", reply.MemberCount, reply.Members)
	}
	all := want + "cy@" + c.reg.Node() + " "
	eventually(t, "every node folds three members", func() bool {
		return a.memberSet("plaza") == all && b.memberSet("plaza") == all && c.memberSet("plaza") == all
	})
	if n := len(reply.Events); n == 0 || n > 8 {
		t.Fatalf("the third node's join reply has %d history events", n)
	}
}

// A member who joins from another node replaces its connection on the first node, as on one node, and
// stays one member: no leave, one more join.
func TestJoinOnAnotherNodeReplaces(t *testing.T) {
	srv := redistest.Start(t)
	a, b := newNode(t, srv, 0), newNode(t, srv, 0)
	_, first := a.join(t, "ana", "plaza")
	b.join(t, "ana", "plaza")
	eventually(t, "the first connection is replaced", func() bool { return first.closeCode() == protocol.CloseReplaced })
	want := "ana@" + b.reg.Node() + " "
	eventually(t, "both nodes see ana on node b", func() bool { return a.memberSet("plaza") == want && b.memberSet("plaza") == want })
	if k := kindsIn(t, a.b, "plaza"); k["member.joined ana"] != 2 || k["member.left ana"] != 0 {
		t.Fatalf("log: %v; want two joins of ana and no leave", k)
	}
}

// When a node dies, each of its members is logged as left exactly once although every other node
// notices; members on live nodes stay.
func TestDeadNodeMembersLeaveOnce(t *testing.T) {
	srv := redistest.Start(t)
	a, b, c := newNode(t, srv, 0), newNode(t, srv, 0), newNode(t, srv, 0)
	a.join(t, "ana", "plaza")
	a.join(t, "al", "plaza")
	b.join(t, "bo", "plaza")
	c.join(t, "cy", "plaza")
	eventually(t, "every node folds four members", func() bool {
		return len(b.reg.loadedRoom("plaza").Info().Name) > 0 && b.reg.loadedRoom("plaza").status().Members == 4 &&
			c.reg.loadedRoom("plaza").status().Members == 4
	})
	a.kill()
	want := "bo@" + b.reg.Node() + " cy@" + c.reg.Node() + " "
	eventually(t, "the survivors drop the dead node's members", func() bool {
		return b.memberSet("plaza") == want && c.memberSet("plaza") == want
	})
	time.Sleep(300 * time.Millisecond) // several more sweeps of both survivors
	k := kindsIn(t, b.b, "plaza")
	if k["member.left ana"] != 1 || k["member.left al"] != 1 || k["member.left bo"] != 0 || k["member.left cy"] != 0 {
		t.Fatalf("log: %v; want exactly one leave of ana and of al, none of bo and cy", k)
	}
}

// A node that was taken for dead (its heartbeat could not reach the broker) logs its live members' joins
// again when it sees their leaves.
func TestNodeTakenForDeadReasserts(t *testing.T) {
	srv := redistest.Start(t)
	a := newNode(t, srv, 0)
	_, sink := a.join(t, "ana", "plaza")
	m := person("ana", "participant").Member
	// What another node would log after ana's node's heartbeat expired.
	_, ok, err := a.b.AppendIf(context.Background(), "plaza", []byte(`{"kind":"member.left","time":1,"member":{"identity":"ana","name":"Name of ana","role":"participant"}}`),
		broker.Update{Key: memberKey("ana"), Cond: broker.IfEqual, Expect: memberValue(a.reg.Node(), m)})
	if err != nil || !ok {
		t.Fatalf("conditional leave: ok %v err %v", ok, err)
	}
	want := "ana@" + a.reg.Node() + " "
	eventually(t, "ana is logged as joined again", func() bool {
		return kindsIn(t, a.b, "plaza")["member.joined ana"] == 2 && a.memberSet("plaza") == want
	})
	if sink.closeCode() != 0 {
		t.Fatalf("ana's connection was closed (%d)", sink.closeCode())
	}
}

// A node unloads (unsubscribes) a room none of its members is in while others are; it loads it again
// with the right members when one joins.
func TestIdleRoomUnloads(t *testing.T) {
	srv := redistest.Start(t)
	a, b := newNode(t, srv, 0), newNode(t, srv, 0)
	a.join(t, "ana", "plaza")
	sb, _ := b.join(t, "bo", "plaza")
	sb.Leave(context.Background(), true)
	eventually(t, "node b unloads the room", func() bool { return b.reg.loadedRoom("plaza") == nil })
	if a.reg.loadedRoom("plaza") == nil {
		t.Fatal("node a unloaded a room its member is in")
	}
	b.join(t, "bo", "plaza")
	want := "ana@" + a.reg.Node() + " bo@" + b.reg.Node() + " "
	eventually(t, "both nodes fold both members", func() bool { return a.memberSet("plaza") == want && b.memberSet("plaza") == want })
}
