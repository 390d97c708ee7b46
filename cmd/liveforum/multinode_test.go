package main

// Several liveforum processes sharing one real redis-server (with an append-only file), clients of the Go
// client package spread over them round robin.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/liveforum/liveforum/client"
	"github.com/liveforum/liveforum/protocol"
)

// sameAfter fails unless every member received the same events (offset and bytes), in the same order, above
// offset from.
func sameAfter(t *testing.T, from uint64, ms ...*member) {
	t.Helper()
	ref := ms[0]
	want := above(ref.Events(), from)
	for _, m := range ms[1:] {
		got := above(m.Events(), from)
		n := min(len(got), len(want))
		for i := range n {
			if got[i].Offset != want[i].Offset || !bytes.Equal(got[i].Data, want[i].Data) {
				t.Fatalf("%s and %s differ at event %d above offset %d: %d %s / %d %s", m.identity, ref.identity, i, from,
					got[i].Offset, got[i].Data, want[i].Offset, want[i].Data)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("%s received %d events above offset %d, %s %d", m.identity, len(got), from, ref.identity, len(want))
		}
	}
}

func above(evs []client.Event, from uint64) []client.Event {
	var out []client.Event
	for _, ev := range evs {
		if ev.Offset > from {
			out = append(out, ev)
		}
	}
	return out
}

// send sends text and records the acknowledged offset in acked (under mu).
func send(ctx context.Context, m *member, text string, mu *sync.Mutex, acked map[uint64]string) error {
	off, err := m.c.Chat(ctx, m.room, text, "")
	if err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	if prev, dup := acked[off]; dup {
		return fmt.Errorf("offset %d acknowledged twice: %q and %q", off, prev, text)
	}
	acked[off] = text
	return nil
}

// checkAcked fails unless every acknowledged message is in lines with its text.
func checkAcked(t *testing.T, who string, lines []chatLine, acked map[uint64]string) {
	t.Helper()
	have := map[uint64]string{}
	for _, l := range lines {
		have[l.Offset] = l.Text
	}
	for off, text := range acked {
		if got, ok := have[off]; !ok || got != text {
			t.Fatalf("%s: acknowledged message %d %q: received %q (present %v)", who, off, text, got, ok)
		}
	}
}

// Chat sent on any node reaches every member on every node once, in one order; a late joiner on another
// node gets the recent history; a member that leaves one node and comes back on another with its position
// recovers exactly what it missed. On one Redis and on a Redis Cluster.
func TestNodesShareRooms(t *testing.T) { forEachBackend(t, testNodesShareRooms) }

func testNodesShareRooms(t *testing.T, rb redisBackend) {
	cl := startCluster(t, rb.url, "share", 3, rb.args...)
	const room = "agora"
	var ms []*member
	for i := range 6 {
		ms = append(ms, joinMember(t, cl.next(i), room, fmt.Sprintf("u%d-on-%s", i, cl.next(i).id), memberOpts{}))
	}
	joinedAt := ms[len(ms)-1].reply.Offset

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	acked := map[uint64]string{}
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(func() {
			for k := range 10 {
				if err := send(ctx, m, fmt.Sprintf("%s says %d", m.identity, k), &mu, acked); err != nil {
					t.Errorf("%s: chat %d: %v", m.identity, k, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for _, m := range ms {
		m.waitFor(15*time.Second, func(evs []client.Event) bool { return hasOffsets(evs, acked) },
			func(evs []client.Event) string { return missing(evs, acked) })
	}
	for _, m := range ms {
		checkOrder(t, m.identity, m.Events())
		checkAcked(t, m.identity, chats(t, m.identity, m.Events()), acked)
	}
	sameAfter(t, joinedAt, ms...)
	ref := chats(t, ms[0].identity, ms[0].Events())
	if len(ref) != len(acked) {
		t.Fatalf("%d chat messages received, %d sent", len(ref), len(acked))
	}

	// A late joiner on the third node gets the recent history, the same as everyone saw it.
	late := joinMember(t, cl.nodes[2], room, "late", memberOpts{})
	if got := chats(t, "late", late.Events()); fmt.Sprint(got) != fmt.Sprint(ref) {
		t.Fatalf("late joiner's history:\n%v\nwant\n%v", got, ref)
	}

	// The first member leaves node a; while it is away the others chat; it comes back on node b from its
	// position and gets exactly what it missed, then live events.
	away := ms[0]
	pos := away.Position()
	away.Close()
	missed := map[uint64]string{}
	for k := range 5 {
		for _, m := range ms[1:] {
			if err := send(ctx, m, fmt.Sprintf("%s while u0 is away %d", m.identity, k), &mu, missed); err != nil {
				t.Fatal(err)
			}
		}
	}
	back := joinMember(t, cl.nodes[1], room, away.identity, memberOpts{Since: &pos})
	if err := send(ctx, ms[1], "welcome back", &mu, missed); err != nil {
		t.Fatal(err)
	}
	for _, m := range append(ms[1:], back) {
		m.waitFor(15*time.Second, func(evs []client.Event) bool { return hasOffsets(evs, missed) },
			func(evs []client.Event) string { return missing(evs, missed) })
	}
	evs := back.Events()
	checkOrder(t, "back", evs)
	if len(evs) == 0 || evs[0].Offset != pos.Offset+1 {
		t.Fatalf("recovery from %d starts at %v", pos.Offset, evs)
	}
	got := chats(t, "back", evs)
	checkAcked(t, "back", got, missed)
	if len(got) != len(missed) {
		t.Fatalf("back on node b: %d chat messages, %d sent while away: %v", len(got), len(missed), got)
	}
	sameAfter(t, pos.Offset, append([]*member{back}, ms[1:]...)...)
}

// Redis is killed in the middle of a steady broadcast and started again after 3 s: every acknowledged
// message reaches every member once, all in one order; sends during the outage fail (or are held briefly),
// never hang; the nodes stay up, say they are not ready meanwhile, and serve again once Redis is back. On
// a Redis Cluster, the master that holds the room is killed (the other masters stay up).
func TestRedisOutageMidBroadcast(t *testing.T) { forEachBackend(t, testRedisOutageMidBroadcast) }

func testRedisOutageMidBroadcast(t *testing.T, rb redisBackend) {
	cl := startCluster(t, rb.url, "outage", 3, rb.args...)
	const room = "steady"
	// The redis-server that holds the room's keys. /readyz reads the room records (lf:rooms): on a cluster
	// it says "not ready" only when their master is down, which for this room's master is so.
	rs := rb.holder("lf:{" + room + "}:log")
	if rb.holder("lf:rooms") != rs {
		t.Fatalf("the room %q is not on the master of lf:rooms: /readyz would not change", room)
	}
	var pubs, all []*member
	for i := range 6 {
		m := joinMember(t, cl.next(i), room, fmt.Sprintf("m%d-on-%s", i, cl.next(i).id), memberOpts{Reconnect: true})
		all = append(all, m)
		if i < 3 {
			pubs = append(pubs, m) // one publisher per node
		}
	}
	joinedAt := all[len(all)-1].reply.Offset
	var wire []*wireWatcher // one on each node, to see duplicates the client would drop
	for i, n := range cl.nodes {
		wire = append(wire, watchWire(t, n, room, fmt.Sprintf("wire%d-on-%s", i, n.id)))
	}

	var (
		mu      sync.Mutex
		acked   = map[uint64]string{}
		failed  = map[string]int{} // error → count
		slowest time.Duration
		lastOK  = map[string]time.Time{}
	)
	const maxSend = 8 * time.Second // a send that takes longer has hung
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, p := range pubs {
		wg.Go(func() {
			tick := time.NewTicker(40 * time.Millisecond) // 25/s per publisher, 75/s in all
			defer tick.Stop()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				ctx, cancel := context.WithTimeout(context.Background(), maxSend+2*time.Second)
				start := time.Now()
				err := send(ctx, p, fmt.Sprintf("%s %d", p.identity, k), &mu, acked)
				took := time.Since(start)
				cancel()
				mu.Lock()
				slowest = max(slowest, took)
				if err == nil {
					lastOK[p.identity] = time.Now()
				} else {
					failed[errKind(err)]++
				}
				mu.Unlock()
				if took > maxSend {
					t.Errorf("%s: a send took %v (%v)", p.identity, took, err)
				}
				if err != nil && strings.Contains(err.Error(), "acknowledged twice") {
					t.Error(err)
				}
			}
		})
	}
	stopped := false
	stopPublishers := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer stopPublishers()

	waitReady := func(n *node, want int, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			got := n.Ready()
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %s: /readyz %d, want %d within %v", n.id, got, want, within)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for _, n := range cl.nodes {
		waitReady(n, http.StatusOK, 5*time.Second)
	}
	time.Sleep(1500 * time.Millisecond) // steady broadcast
	mu.Lock()
	before := len(acked)
	mu.Unlock()
	if before == 0 {
		t.Fatal("nothing acknowledged before the outage")
	}

	rs.Kill()
	killed := time.Now()
	for _, n := range cl.nodes {
		waitReady(n, http.StatusServiceUnavailable, 5*time.Second)
	}
	time.Sleep(time.Until(killed.Add(3 * time.Second)))
	rs.Restart()
	restarted := time.Now()
	for _, n := range cl.nodes {
		waitReady(n, http.StatusOK, 10*time.Second)
	}
	// Sending works again on every node, without restarting any.
	deadline := time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		ok := true
		for _, p := range pubs {
			ok = ok && lastOK[p.identity].After(restarted)
		}
		mu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			mu.Lock()
			msg := fmt.Sprintf("last successes %v, failures %v", lastOK, failed)
			mu.Unlock()
			t.Fatalf("sends still failing 15s after Redis came back: %s", msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // steady again
	stopPublishers()
	for _, n := range cl.nodes {
		if n.exited() {
			t.Fatalf("node %s exited during the outage", n.id)
		}
	}

	mu.Lock()
	t.Logf("acknowledged %d (%d before the outage), failed %v, slowest send %v", len(acked), before, failed, slowest)
	for kind := range failed {
		// A send during the outage is held briefly, then refused as "unavailable": never another error.
		if !strings.HasPrefix(kind, protocol.CodeUnavailable+":") {
			t.Errorf("a send failed with %q, want %s", kind, protocol.CodeUnavailable)
		}
	}
	mu.Unlock()
	for _, m := range all {
		m.waitFor(20*time.Second, func(evs []client.Event) bool { return hasOffsets(evs, acked) },
			func(evs []client.Event) string { return missing(evs, acked) })
	}
	for _, m := range all {
		evs := m.Events()
		checkOrder(t, m.identity, evs)
		checkAcked(t, m.identity, chats(t, m.identity, evs), acked)
		if r := m.c.Reconnects(); r > 0 {
			t.Logf("%s reconnected %d times", m.identity, r)
		}
		// Nobody left: no node took another for dead because the outage stopped its heartbeats (on a
		// cluster too, whichever master was down).
		for _, ev := range above(evs, joinedAt) {
			if ev.Kind() == protocol.KindMemberLeft {
				t.Errorf("%s saw a member leave at offset %d: %s", m.identity, ev.Offset, ev.Data)
			}
		}
	}
	sameAfter(t, joinedAt, all...)
	for _, w := range wire {
		w.check(t, acked, 10*time.Second)
	}
}

// errKind shortens a send error for the test log.
func errKind(err error) string {
	var re *client.RequestError
	switch {
	case errors.As(err, &re):
		return re.Code + ": " + re.Message
	case errors.Is(err, client.ErrDisconnected):
		return "disconnected"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return err.Error()
}
