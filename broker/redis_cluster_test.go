package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/liveforum/liveforum/internal/redistest"
)

// newClusterRedis returns a Redis broker on the cluster c (see newTestRedis).
func newClusterRedis(t *testing.T, c *redistest.Cluster, opts RedisOptions) *Redis {
	t.Helper()
	if opts.URL == "" {
		opts.URL = c.URL()
	}
	opts.Cluster = true
	return newTestRedis(t, nil, opts)
}

// rawClusterClient is a plain go-redis cluster client on c.
func rawClusterClient(t *testing.T, c *redistest.Cluster) *redis.ClusterClient {
	t.Helper()
	opt, err := redis.ParseClusterURL(c.URL())
	if err != nil {
		t.Fatal(err)
	}
	cc := redis.NewClusterClient(opt)
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// roomOn returns a new room name whose slot is served by the given node.
func roomOn(t *testing.T, c *redistest.Cluster, node *redistest.Server) string {
	t.Helper()
	for i := 0; ; i++ {
		room := uniqueName(t, "room"+strconv.Itoa(i))
		if c.NodeOf(redistest.KeySlot("{"+room+"}")) == node {
			return room
		}
	}
}

// TestRedisCluster runs, on one 3-master Redis Cluster, the shared suite and the tests that leave the
// cluster as it is. Those that kill connections or servers, or move slots, start a cluster of their own.
func TestRedisCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3)
	t.Run("Contract", func(t *testing.T) {
		runContract(t, func(t *testing.T) Broker { return newClusterRedis(t, c, RedisOptions{}) })
	})
	t.Run("RoomsOnEveryMaster", func(t *testing.T) { testClusterRoomsOnEveryMaster(t, c) })
	// An event whose SPUBLISH was lost is read from the stream.
	t.Run("GapFill", func(t *testing.T) {
		testGapFill(t, newClusterRedis(t, c, RedisOptions{}), rawClusterClient(t, c))
	})
	// The cluster client retries commands after network errors, but not the append script.
	t.Run("AppendNotRetried", func(t *testing.T) { testAppendNotRetried(t, c.URL(), true) })
}

// testClusterRoomsOnEveryMaster: rooms whose slots are on different masters each deliver, in order,
// through sharded pub/sub on their own master; their keys are all on that master.
func testClusterRoomsOnEveryMaster(t *testing.T, c *redistest.Cluster) {
	sub := newClusterRedis(t, c, RedisOptions{})
	pub := newClusterRedis(t, c, RedisOptions{Prefix: sub.prefix})
	raw := rawClusterClient(t, c)
	ctx := t.Context()

	const rooms = 6 // two per master
	names := make([]string, rooms)
	sinks := make([]*sink, rooms)
	for i := range names {
		node := c.Nodes()[i%3]
		names[i] = roomOn(t, c, node)
		logKey, _, channel := sub.keys(names[i])
		// The test's slot arithmetic agrees with Redis's.
		if slot, err := raw.ClusterKeySlot(ctx, logKey).Result(); err != nil || int(slot) != redistest.KeySlot(logKey) {
			t.Fatalf("CLUSTER KEYSLOT %s = %d, %v; want %d", logKey, slot, err, redistest.KeySlot(logKey))
		}
		if redistest.KeySlot(channel) != redistest.KeySlot(logKey) {
			t.Fatalf("channel %s and key %s in different slots", channel, logKey)
		}
		sinks[i] = newSink(32)
		mustSubscribe(t, sub, names[i], sinks[i].handle)
	}
	// Interleave the rooms' appends.
	epochs := make([]string, rooms)
	for n := 1; n <= 5; n++ {
		for i, room := range names {
			pos := mustAppend(t, pub, room, fmt.Sprintf("%d-e%d", i, n))
			if pos.Offset != uint64(n) {
				t.Fatalf("room %d append %d: offset %d", i, n, pos.Offset)
			}
			epochs[i] = pos.Epoch
		}
	}
	for i := range names {
		var want []string
		for n := 1; n <= 5; n++ {
			want = append(want, fmt.Sprintf("%d-e%d", i, n))
		}
		expectDeliveries(t, sinks[i], epochs[i], 1, want...)
		sinks[i].nothingQueued(t)
	}

	for i, room := range names {
		node := rawClient(t, c.Nodes()[i%3])
		logKey, metaKey, channel := sub.keys(room)
		if n, err := node.Exists(ctx, logKey, metaKey).Result(); err != nil || n != 2 {
			t.Fatalf("room %d: EXISTS on its master = %d, %v; want 2", i, n, err)
		}
		// Sharded pub/sub: the subscriber's connection is on the room's master, and a plain PUBLISH
		// channel has no subscriber.
		if m, err := node.PubSubShardNumSub(ctx, channel).Result(); err != nil || m[channel] != 1 {
			t.Fatalf("room %d: PUBSUB SHARDNUMSUB %s on its master = %v, %v; want 1", i, channel, m, err)
		}
		if m, err := node.PubSubNumSub(ctx, channel).Result(); err != nil || m[channel] != 0 {
			t.Fatalf("room %d: PUBSUB NUMSUB %s = %v, %v; want 0", i, channel, m, err)
		}
	}

	// Unsubscribe closes the room's connection.
	if err := sub.Unsubscribe(ctx, names[0]); err != nil {
		t.Fatal(err)
	}
	_, _, channel := sub.keys(names[0])
	deadline := time.Now().Add(waitTimeout)
	for {
		m, err := rawClient(t, c.Nodes()[0]).PubSubShardNumSub(ctx, channel).Result()
		if err != nil {
			t.Fatal(err)
		}
		if m[channel] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PUBSUB SHARDNUMSUB %s after Unsubscribe = %d", channel, m[channel])
		}
		time.Sleep(10 * time.Millisecond)
	}
	mustAppend(t, pub, names[0], "after unsubscribe")
	mustAppend(t, pub, names[1], "sentinel")
	if d := sinks[1].next(t); string(d.ev.Data) != "sentinel" {
		t.Fatalf("room 1 got %q, want sentinel", d.ev.Data)
	}
	sinks[0].nothingQueued(t)

	// Records and heartbeats work across slots.
	if err := pub.SaveRoom(ctx, names[2], []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if list, err := sub.ListRooms(ctx); err != nil || string(list[names[2]]) != "{}" {
		t.Fatalf("ListRooms: %v, %v", list, err)
	}
}

// TestRedisClusterPubSubKilled: the masters drop every pub/sub connection; go-redis reconnects them, and
// the events appended meanwhile are filled from the streams, once each and in order.
func TestRedisClusterPubSubKilled(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3)
	sub := newClusterRedis(t, c, RedisOptions{})
	pub := newClusterRedis(t, c, RedisOptions{Prefix: sub.prefix})
	var rooms []string
	var sinks []*sink
	for _, node := range c.Nodes() {
		rooms = append(rooms, roomOn(t, c, node))
		sinks = append(sinks, newSink(64))
		mustSubscribe(t, sub, rooms[len(rooms)-1], sinks[len(sinks)-1].handle)
	}
	first := make([]Position, len(rooms))
	for i, room := range rooms {
		first[i] = mustAppend(t, pub, room, "e1")
		expectDeliveries(t, sinks[i], first[i].Epoch, 1, "e1")
	}
	for round := range 3 {
		for _, node := range c.Nodes() {
			if err := rawClient(t, node).ClientKillByFilter(t.Context(), "TYPE", "pubsub").Err(); err != nil {
				t.Fatal(err)
			}
		}
		for i, room := range rooms {
			var want []string
			for n := range 5 {
				data := fmt.Sprintf("r%d-%d", round, n)
				mustAppend(t, pub, room, data)
				want = append(want, data)
			}
			expectDeliveries(t, sinks[i], first[i].Epoch, uint64(2+5*round), want...)
		}
	}
	for i, room := range rooms {
		pos := mustAppend(t, pub, room, "sentinel")
		expectDeliveries(t, sinks[i], first[i].Epoch, pos.Offset, "sentinel")
		sinks[i].nothingQueued(t)
	}
}

// TestRedisClusterSlotMigration: a subscribed room's slot moves, keys and all, to another master. Redis
// drops the subscription; the broker subscribes on the new master and catches up, and appends follow the
// slot (MOVED).
func TestRedisClusterSlotMigration(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3)
	sub := newClusterRedis(t, c, RedisOptions{})
	pub := newClusterRedis(t, c, RedisOptions{Prefix: sub.prefix})
	from, to := c.Nodes()[0], c.Nodes()[1]
	room := roomOn(t, c, from)
	s := newSink(64)
	mustSubscribe(t, sub, room, s.handle)
	first := mustAppend(t, pub, room, "e1")
	mustAppend(t, pub, room, "e2")
	expectDeliveries(t, s, first.Epoch, 1, "e1", "e2")

	logKey, _, _ := sub.keys(room)
	c.MigrateSlot(redistest.KeySlot(logKey), to)
	var want []string
	for n := 3; n <= 10; n++ {
		data := fmt.Sprintf("e%d", n)
		pos := mustAppend(t, pub, room, data)
		if pos.Epoch != first.Epoch || pos.Offset != uint64(n) {
			t.Fatalf("append after the migration: %+v, want offset %d of %q", pos, n, first.Epoch)
		}
		want = append(want, data)
	}
	expectDeliveries(t, s, first.Epoch, 3, want...)
	if n, err := rawClient(t, to).Exists(t.Context(), logKey).Result(); err != nil || n != 1 {
		t.Fatalf("EXISTS %s on the new master: %d, %v", logKey, n, err)
	}
	// The subscription is on the new master now: later events arrive by pub/sub.
	_, _, channel := sub.keys(room)
	deadline := time.Now().Add(waitTimeout)
	for {
		m, err := rawClient(t, to).PubSubShardNumSub(t.Context(), channel).Result()
		if err != nil {
			t.Fatal(err)
		}
		if m[channel] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no subscriber of %s on the new master", channel)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mustAppend(t, pub, room, "e11")
	expectDeliveries(t, s, first.Epoch, 11, "e11")
	s.nothingQueued(t)
}

// TestRedisClusterRestartAOF: the master of a subscribed room's slot is killed and restarted with its data;
// every event appended after it is back reaches the handler once, in order.
func TestRedisClusterRestartAOF(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3, redistest.AOF())
	sub := newClusterRedis(t, c, RedisOptions{})
	pub := newClusterRedis(t, c, RedisOptions{Prefix: sub.prefix})
	node := c.Nodes()[2]
	room := roomOn(t, c, node)
	other := roomOn(t, c, c.Nodes()[0])
	s, so := newSink(64), newSink(64)
	mustSubscribe(t, sub, room, s.handle)
	mustSubscribe(t, sub, other, so.handle)
	first := mustAppend(t, pub, room, "e1")
	expectDeliveries(t, s, first.Epoch, 1, "e1")

	node.Kill()
	// The other masters' rooms carry on.
	po := mustAppend(t, pub, other, "o1")
	expectDeliveries(t, so, po.Epoch, 1, "o1")
	node.Restart()
	var want []string
	for n := 2; n <= 8; n++ {
		data := fmt.Sprintf("e%d", n)
		pos := appendEventually(t, pub, room, data)
		if pos.Epoch != first.Epoch || pos.Offset != uint64(n) {
			t.Fatalf("append after the restart: %+v, want offset %d of %q", pos, n, first.Epoch)
		}
		want = append(want, data)
	}
	expectDeliveries(t, s, first.Epoch, 2, want...)
	mustAppend(t, pub, room, "e9")
	expectDeliveries(t, s, first.Epoch, 9, "e9")
	s.nothingQueued(t)
	so.nothingQueued(t)
}

// TestRedisClusterHoldOverRestart: while the master of a room's slot is down an append waits up to
// AppendHold and then fails as ErrUnavailable; one made while the master restarts succeeds, once. A restarted
// master refuses every command with CLUSTERDOWN for about 2 s after it answers again (it waits before it
// takes writes as a master of the cluster again): the command did not run, so the append is held through
// that too, as it is through a refused connection.
func TestRedisClusterHoldOverRestart(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3, redistest.AOF())
	short := newClusterRedis(t, c, RedisOptions{AppendHold: 300 * time.Millisecond})
	long := newClusterRedis(t, c, RedisOptions{Prefix: short.prefix, AppendHold: 10 * time.Second})
	node := c.Nodes()[1]
	room := roomOn(t, c, node)
	mustAppend(t, short, room, "before")
	node.Kill()

	start := time.Now()
	_, err := short.Append(t.Context(), room, []byte("refused"))
	if took := time.Since(start); !errors.Is(err, ErrUnavailable) || took < 300*time.Millisecond || took > 5*time.Second {
		t.Fatalf("append with its master down: %v after %v; want ErrUnavailable after the 300ms hold", err, took)
	}
	done := make(chan error, 1)
	go func() {
		pos, err := long.Append(context.Background(), room, []byte("held"))
		if err == nil && pos.Offset != 2 {
			err = fmt.Errorf("held append at offset %d, want 2", pos.Offset)
		}
		done <- err
	}()
	time.Sleep(500 * time.Millisecond)
	node.Restart()
	restarted := time.Now()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("append held over a restart of its master: %v", err)
		}
		t.Logf("held append done %v after the master answered again", time.Since(restarted).Round(time.Millisecond))
	case <-time.After(waitTimeout):
		t.Fatal("held append never returned")
	}
	h, err := short.History(t.Context(), room, HistoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := eventsString(h.Events), "1:before 2:held"; got != want {
		t.Fatalf("log after the outage: %s, want %s", got, want)
	}
}

// TestRedisClusterHeartbeatsOnOneMaster: node heartbeats fail all together or not at all when a master goes
// down. A node that has heartbeated without failure for a whole TTL takes any node whose heartbeat it does
// not find for dead (package rooms): if heartbeats were spread over the masters, the death of one master
// would make the nodes whose heartbeats it held look dead to the others, and their members would be logged
// as leaving while still connected. With every heartbeat on one master, a master outage is for heartbeats
// what the outage of one Redis is: every node's or none.
func TestRedisClusterHeartbeatsOnOneMaster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3)
	b := newClusterRedis(t, c, RedisOptions{})
	ctx := t.Context()
	var nodes []string
	for i := range 12 { // "n0".."n11": spread over every master were their keys not in one slot
		nodes = append(nodes, "n"+strconv.Itoa(i))
	}
	holder := c.NodeOf(redistest.KeySlot(b.nodeKey(nodes[0])))
	for _, n := range nodes {
		if got := c.NodeOf(redistest.KeySlot(b.nodeKey(n))); got != holder {
			t.Errorf("heartbeat of %s on master %s, of %s on %s", n, got.Addr(), nodes[0], holder.Addr())
		}
	}
	// Another master goes down: every heartbeat still works, and every node is alive.
	other := c.Nodes()[0]
	if other == holder {
		other = c.Nodes()[1]
	}
	other.Kill()
	for _, n := range nodes {
		if err := b.Heartbeat(ctx, n, time.Minute); err != nil {
			t.Fatalf("heartbeat of %s with master %s down: %v", n, other.Addr(), err)
		}
	}
	alive, err := b.Alive(ctx, nodes)
	if err != nil {
		t.Fatalf("alive with master %s down: %v", other.Addr(), err)
	}
	for _, n := range nodes {
		if !alive[n] {
			t.Errorf("%s not alive", n)
		}
	}
	// The heartbeats' master goes down: no heartbeat works, and no node is judged.
	holder.Kill()
	// One is enough (they are in one slot, as checked above); each takes about 1.5 s of go-redis retries.
	if err := b.Heartbeat(ctx, nodes[1], time.Minute); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("heartbeat of %s with its master down: %v, want ErrUnavailable", nodes[1], err)
	}
	if alive, err := b.Alive(ctx, nodes); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("alive with the heartbeats' master down: %v, %v; want ErrUnavailable", alive, err)
	}
}

// TestRedisClusterURL: a URL naming one node with the password reaches the whole cluster; a wrong
// password, none, a database, or another scheme fails NewRedis.
func TestRedisClusterURL(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3, redistest.Password("s3cret"))
	// One node is enough: the client finds the others.
	b := newClusterRedis(t, c, RedisOptions{URL: "redis://:s3cret@" + c.Nodes()[1].Addr()})
	room := uniqueName(t, "room")
	s := newSink(4)
	mustSubscribe(t, b, room, s.handle)
	pos := mustAppend(t, b, room, "x")
	expectDeliveries(t, s, pos.Epoch, 1, "x")

	ctx := t.Context()
	addr := c.Nodes()[0].Addr()
	for _, u := range []string{
		"redis://:wrong@" + addr,
		"redis://" + addr,
		"redis://:s3cret@" + addr + "/3",
		"http://" + addr,
	} {
		if r, err := NewRedis(ctx, RedisOptions{URL: u, Cluster: true}); err == nil {
			_ = r.Close()
			t.Errorf("NewRedis(%q) on a cluster succeeded", u)
		} else {
			t.Logf("NewRedis(%q): %v", u, err)
		}
	}
}
