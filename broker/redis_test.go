package broker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/liveforum/liveforum/internal/redistest"
)

// newTestRedis returns a Redis broker on srv with a prefix of its own, closed when t ends.
func newTestRedis(t *testing.T, srv *redistest.Server, opts RedisOptions) *Redis {
	t.Helper()
	if opts.URL == "" {
		opts.URL = srv.URL()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if opts.Prefix == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		opts.Prefix = "lf" + hex.EncodeToString(b[:]) + ":"
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	r, err := NewRedis(ctx, opts)
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// rawClient is a plain go-redis client on srv, for looking behind the broker's back.
func rawClient(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestRedisContract runs the shared suite against brokers that share one redis-server, each with its own
// key prefix.
func TestRedisContract(t *testing.T) {
	srv := redistest.Start(t)
	runContract(t, func(t *testing.T) Broker { return newTestRedis(t, srv, RedisOptions{}) })
}

// TestRedisContractSmallHistory runs the suite with a stream that is trimmed during the concurrent test.
func TestRedisContractSmallHistory(t *testing.T) {
	srv := redistest.Start(t)
	runContract(t, func(t *testing.T) Broker { return newTestRedis(t, srv, RedisOptions{HistorySize: 64}) })
}

// expectDeliveries waits for the given events, in order, and then for nothing else after a sentinel.
func expectDeliveries(t *testing.T, s *sink, epoch string, from uint64, data ...string) {
	t.Helper()
	for i, want := range data {
		d := s.next(t)
		if d.epoch != epoch || d.ev.Offset != from+uint64(i) || string(d.ev.Data) != want {
			t.Fatalf("delivery %d: epoch %q offset %d data %q; want %q %d %q",
				i, d.epoch, d.ev.Offset, d.ev.Data, epoch, from+uint64(i), want)
		}
	}
}

// appendEventually retries Append until Redis answers (it may be restarting), within waitTimeout. An
// Append that failed never reached Redis here: the server was down or the connection dead before sending.
func appendEventually(t *testing.T, b Broker, room, data string) Position {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		pos, err := b.Append(ctx, room, []byte(data))
		cancel()
		if err == nil {
			return pos
		}
		if time.Now().After(deadline) {
			t.Fatalf("Append(%q) kept failing for %v: %v", data, waitTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRedisGapFill: an event whose PUBLISH was lost is read from the stream before the next published one.
func TestRedisGapFill(t *testing.T) {
	srv := redistest.Start(t)
	testGapFill(t, newTestRedis(t, srv, RedisOptions{}), rawClient(t, srv))
}

// testGapFill is TestRedisGapFill with b, and raw on the same Redis.
func testGapFill(t *testing.T, b *Redis, raw redis.UniversalClient) {
	ctx := t.Context()
	room := uniqueName(t, "room")
	s := newSink(16)
	mustSubscribe(t, b, room, s.handle)
	first := mustAppend(t, b, room, "e1")
	mustAppend(t, b, room, "e2")
	expectDeliveries(t, s, first.Epoch, 1, "e1", "e2")

	// What the append script does, without its PUBLISH: pub/sub lost this event.
	logKey, metaKey, _ := b.keys(room)
	top, err := raw.HIncrBy(ctx, metaKey, "top", 1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.XAdd(ctx, &redis.XAddArgs{Stream: logKey, ID: strconv.FormatInt(top, 10) + "-0", Values: []string{"d", "silent"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if pos := mustAppend(t, b, room, "e4"); pos.Offset != 4 {
		t.Fatalf("append after the silent event: offset %d, want 4", pos.Offset)
	}
	expectDeliveries(t, s, first.Epoch, 3, "silent", "e4")
	mustAppend(t, b, room, "e5")
	expectDeliveries(t, s, first.Epoch, 5, "e5")
	s.nothingQueued(t)
}

// TestRedisRestartAOF: Redis is killed while a room is subscribed and restarted with its data; events
// appended after the restart reach the handler once each and in order, including those published before
// the subscriber's pub/sub connection was back.
func TestRedisRestartAOF(t *testing.T) {
	srv := redistest.Start(t, redistest.AOF())
	sub := newTestRedis(t, srv, RedisOptions{Prefix: "lfaof:"})
	pub := newTestRedis(t, srv, RedisOptions{Prefix: "lfaof:"})
	room := uniqueName(t, "room")
	s := newSink(64)
	mustSubscribe(t, sub, room, s.handle)
	first := mustAppend(t, pub, room, "e1")
	mustAppend(t, pub, room, "e2")
	expectDeliveries(t, s, first.Epoch, 1, "e1", "e2")

	srv.Kill()
	srv.Restart()
	// Append at once: the subscriber is most likely still reconnecting, so these are filled from the
	// stream; the later ones arrive by pub/sub.
	var want []string
	for i := 3; i <= 12; i++ {
		data := fmt.Sprintf("e%d", i)
		pos := appendEventually(t, pub, room, data)
		if pos.Epoch != first.Epoch || pos.Offset != uint64(i) {
			t.Fatalf("append after restart: %+v, want epoch %q offset %d", pos, first.Epoch, i)
		}
		want = append(want, data)
	}
	expectDeliveries(t, s, first.Epoch, 3, want...)
	mustAppend(t, pub, room, "e13")
	expectDeliveries(t, s, first.Epoch, 13, "e13")
	s.nothingQueued(t)

	h, err := pub.History(t.Context(), room, HistoryOptions{Since: &first})
	if err != nil {
		t.Fatalf("History since the first event after the restart: %v", err)
	}
	if len(h.Events) != 12 || h.Events[0].Offset != 2 {
		t.Fatalf("History after the restart: %s", eventsString(h.Events))
	}
}

// TestRedisRestartLost: Redis is restarted without its data; the log starts again in a new epoch, the
// handler sees it from offset 1, and the old position is gone.
func TestRedisRestartLost(t *testing.T) {
	srv := redistest.Start(t)
	b := newTestRedis(t, srv, RedisOptions{})
	room := uniqueName(t, "room")
	s := newSink(16)
	mustSubscribe(t, b, room, s.handle)
	mustAppend(t, b, room, "old1")
	old := mustAppend(t, b, room, "old2")
	expectDeliveries(t, s, old.Epoch, 1, "old1", "old2")

	srv.Kill()
	srv.Restart()
	first := appendEventually(t, b, room, "new1")
	if first.Offset != 1 || first.Epoch == old.Epoch {
		t.Fatalf("first append after losing the log: %+v; want offset 1 in an epoch other than %q", first, old.Epoch)
	}
	mustAppend(t, b, room, "new2")
	expectDeliveries(t, s, first.Epoch, 1, "new1", "new2")
	s.nothingQueued(t)

	if h, err := b.History(t.Context(), room, HistoryOptions{Since: &old}); !errors.Is(err, ErrHistoryGone) {
		t.Fatalf("History since the lost log's position: events %q, err %v; want ErrHistoryGone", eventsString(h.Events), err)
	}
}

// TestRedisBinaryData: events are arbitrary bytes, separators and invalid UTF-8 included.
func TestRedisBinaryData(t *testing.T) {
	srv := redistest.Start(t)
	b := newTestRedis(t, srv, RedisOptions{})
	room := uniqueName(t, "room")
	s := newSink(16)
	mustSubscribe(t, b, room, s.handle)
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	payloads := [][]byte{[]byte("a|b|c"), []byte("|"), []byte("||"), {}, {0, '|', 0xff, 0xfe, '\n', '\r'}, all}
	for i, p := range payloads {
		pos, err := b.Append(t.Context(), room, p)
		if err != nil {
			t.Fatal(err)
		}
		d := s.next(t)
		if d.ev.Offset != pos.Offset || !bytes.Equal(d.ev.Data, p) {
			t.Fatalf("payload %d: delivered %d %q, appended %d %q", i, d.ev.Offset, d.ev.Data, pos.Offset, p)
		}
	}
	h, err := b.History(t.Context(), room, HistoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Events) != len(payloads) {
		t.Fatalf("History: %d events, want %d", len(h.Events), len(payloads))
	}
	for i, ev := range h.Events {
		if !bytes.Equal(ev.Data, payloads[i]) {
			t.Fatalf("History event %d: %q, want %q", i, ev.Data, payloads[i])
		}
	}
}

// TestRedisKeys: a room's keys share its hash tag and expire after KeyTTL, refreshed by each Append.
func TestRedisKeys(t *testing.T) {
	srv := redistest.Start(t)
	const ttl = time.Hour
	b := newTestRedis(t, srv, RedisOptions{Prefix: "lfkeys:", KeyTTL: ttl})
	raw := rawClient(t, srv)
	ctx := t.Context()
	room := uniqueName(t, "room")
	logKey, metaKey, channel := b.keys(room)
	if want := "lfkeys:{" + room + "}:log"; logKey != want {
		t.Fatalf("log key %q, want %q", logKey, want)
	}
	if want := "lfkeys:{" + room + "}:meta"; metaKey != want {
		t.Fatalf("meta key %q, want %q", metaKey, want)
	}
	if want := "lfkeys:{" + room + "}:ch"; channel != want {
		t.Fatalf("channel %q, want %q", channel, want)
	}
	mustAppend(t, b, room, "x")
	for _, k := range []string{logKey, metaKey} {
		d, err := raw.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if d <= 0 || d > ttl {
			t.Fatalf("PTTL %s = %v, want in (0, %v]", k, d, ttl)
		}
	}
	// An Append refreshes the TTL.
	if err := raw.PExpire(ctx, logKey, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, b, room, "y")
	if d, err := raw.PTTL(ctx, logKey).Result(); err != nil || d <= time.Minute {
		t.Fatalf("PTTL after Append: %v, %v; want more than a minute", d, err)
	}
	if err := b.SaveRoom(ctx, room, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if n, err := raw.HLen(ctx, "lfkeys:rooms").Result(); err != nil || n != 1 {
		t.Fatalf("HLEN lfkeys:rooms = %d, %v; want 1", n, err)
	}
}

// TestRedisTrim: the stream keeps about HistorySize events; History since a trimmed position is gone.
func TestRedisTrim(t *testing.T) {
	srv := redistest.Start(t)
	b := newTestRedis(t, srv, RedisOptions{HistorySize: 10})
	raw := rawClient(t, srv)
	room := uniqueName(t, "room")
	var top Position
	for i := 1; i <= 500; i++ {
		top = mustAppend(t, b, room, fmt.Sprintf("e%d", i))
	}
	logKey, _, _ := b.keys(room)
	if n, err := raw.XLen(t.Context(), logKey).Result(); err != nil || n < 10 || n >= 500 {
		t.Fatalf("XLEN = %d, %v; want trimmed to about 10", n, err)
	}
	if h, err := b.History(t.Context(), room, HistoryOptions{Since: &Position{Epoch: top.Epoch, Offset: 0}, Limit: 1000}); !errors.Is(err, ErrHistoryGone) {
		t.Fatalf("History since 0: %d events, %v; want ErrHistoryGone", len(h.Events), err)
	}
	h, err := b.History(t.Context(), room, HistoryOptions{Since: &Position{Epoch: top.Epoch, Offset: 495}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := eventsString(h.Events), "496:e496 497:e497 498:e498 499:e499 500:e500"; got != want {
		t.Fatalf("History since 495: %s, want %s", got, want)
	}
	h, err = b.History(t.Context(), room, HistoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Events) != 10 || h.Events[9].Offset != 500 {
		t.Fatalf("History: %s; want the newest 10", eventsString(h.Events))
	}
}

// TestRedisURL: password and database come from the URL; a wrong password fails NewRedis.
func TestRedisURL(t *testing.T) {
	srv := redistest.Start(t, redistest.Password("s3cret"))
	b := newTestRedis(t, srv, RedisOptions{URL: srv.URL() + "/3", Prefix: "lfurl:"})
	if err := b.SaveRoom(t.Context(), "r", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	opt, err := redis.ParseURL(srv.URL() + "/3")
	if err != nil {
		t.Fatal(err)
	}
	raw := redis.NewClient(opt)
	defer raw.Close()
	if n, err := raw.Exists(t.Context(), "lfurl:rooms").Result(); err != nil || n != 1 {
		t.Fatalf("EXISTS lfurl:rooms in db 3 = %d, %v; want 1", n, err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	if r, err := NewRedis(ctx, RedisOptions{URL: "redis://:wrong@" + srv.Addr()}); err == nil {
		_ = r.Close()
		t.Fatal("NewRedis with a wrong password succeeded")
	}
	if _, err := NewRedis(ctx, RedisOptions{URL: "http://" + srv.Addr()}); err == nil {
		t.Fatal("NewRedis with an http:// URL succeeded")
	}
	if _, err := NewRedis(ctx, RedisOptions{URL: srv.URL(), Prefix: "a{b"}); err == nil {
		t.Fatal("NewRedis with '{' in the prefix succeeded")
	}
}

func TestParseMessage(t *testing.T) {
	tests := []struct {
		in    string
		epoch string
		off   uint64
		data  string
		bad   bool
	}{
		{in: "ab|1|x", epoch: "ab", off: 1, data: "x"},
		{in: "ab|12|a|b|", epoch: "ab", off: 12, data: "a|b|"},
		{in: "ab|3|", epoch: "ab", off: 3, data: ""},
		{in: "ab|3", bad: true},
		{in: "ab", bad: true},
		{in: "ab|x|d", bad: true},
	}
	for _, tt := range tests {
		epoch, ev, err := parseMessage(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("parseMessage(%q) succeeded", tt.in)
			}
			continue
		}
		if err != nil || epoch != tt.epoch || ev.Offset != tt.off || string(ev.Data) != tt.data {
			t.Errorf("parseMessage(%q) = %q %d %q %v", tt.in, epoch, ev.Offset, ev.Data, err)
		}
	}
}

// TestRedisClientOptions: what NewRedis reads from its URL, on one Redis and on a cluster.
func TestRedisClientOptions(t *testing.T) {
	ro, co, err := clientOptions(RedisOptions{URL: "rediss://ann:pw@redis.example:6380/2?dial_timeout=3s"})
	if err != nil || co != nil {
		t.Fatalf("rediss:// URL: %v, cluster options %v", err, co)
	}
	if ro.TLSConfig == nil || ro.TLSConfig.ServerName != "redis.example" {
		t.Fatalf("rediss:// URL: TLS config %+v, want one for redis.example", ro.TLSConfig)
	}
	if ro.Addr != "redis.example:6380" || ro.Username != "ann" || ro.Password != "pw" || ro.DB != 2 ||
		ro.DialTimeout != 3*time.Second || ro.MaxRetries != -1 {
		t.Fatalf("rediss:// URL: addr %q user %q password %q db %d dial timeout %v max retries %d",
			ro.Addr, ro.Username, ro.Password, ro.DB, ro.DialTimeout, ro.MaxRetries)
	}
	if ro, _, err := clientOptions(RedisOptions{URL: "redis://h:1?max_retries=5"}); err != nil || ro.TLSConfig != nil || ro.MaxRetries != -1 {
		t.Fatalf("redis:// URL asking for retries: %v, TLS %v, max retries %d; want no TLS, -1", err, ro.TLSConfig, ro.MaxRetries)
	}

	_, co, err = clientOptions(RedisOptions{Cluster: true, URL: "rediss://:pw@n1.example:7000?addr=n2.example:7001&addr=10.0.0.3:7002&max_retries=3"})
	if err != nil {
		t.Fatalf("cluster rediss:// URL: %v", err)
	}
	if co.TLSConfig == nil || co.TLSConfig.ServerName != "n1.example" {
		t.Fatalf("cluster rediss:// URL: TLS config %+v", co.TLSConfig)
	}
	if got := strings.Join(co.Addrs, " "); got != "n1.example:7000 n2.example:7001 10.0.0.3:7002" || co.Password != "pw" || co.MaxRetries != -1 {
		t.Fatalf("cluster URL: addrs %q password %q max retries %d", got, co.Password, co.MaxRetries)
	}
	for _, bad := range []string{"redis://h:1/2", "redis://h:1?addr=nope", "redis://h:1?bogus=1", "unix:///tmp/redis.sock"} {
		if _, _, err := clientOptions(RedisOptions{Cluster: true, URL: bad}); err == nil {
			t.Errorf("cluster URL %q accepted", bad)
		}
	}
}

// lossyDialer opens connections that, once armed, lose the reply of the next command that contains
// match: the command is sent (and runs), then the connection is closed before its reply is read.
type lossyDialer struct {
	match []byte
	armed atomic.Bool
}

func (d *lossyDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &lossyConn{Conn: c, d: d}, nil
}

type lossyConn struct {
	net.Conn
	d *lossyDialer
}

func (c *lossyConn) Write(p []byte) (int, error) {
	if bytes.Contains(p, c.d.match) && c.d.armed.CompareAndSwap(true, false) {
		n, err := c.Conn.Write(p)
		time.Sleep(100 * time.Millisecond) // Redis runs it
		_ = c.Conn.Close()
		return n, err
	}
	return c.Conn.Write(p)
}

// testAppendNotRetried: an Append whose reply is lost returns an error and is not sent again: the event
// is logged once.
func testAppendNotRetried(t *testing.T, url string, cluster bool) {
	d := &lossyDialer{match: []byte(appendScript.Hash())}
	b := newTestRedis(t, nil, RedisOptions{URL: url, Cluster: cluster, dial: d.dial})
	room := uniqueName(t, "room")
	s := newSink(8)
	mustSubscribe(t, b, room, s.handle)
	mustAppend(t, b, room, "first") // EVAL: Redis has the script from now on, EVALSHA runs it
	d.armed.Store(true)
	if pos, err := b.Append(t.Context(), room, []byte("lost reply")); err == nil {
		t.Fatalf("Append whose reply was lost: %+v, no error", pos)
	} else {
		t.Logf("Append whose reply was lost: %v", err)
	}
	if d.armed.Load() {
		t.Fatal("the append script was never sent")
	}
	pos := mustAppend(t, b, room, "next")
	if pos.Offset != 3 {
		t.Fatalf("Append after the lost reply: offset %d, want 3 (the lost one logged once)", pos.Offset)
	}
	expectDeliveries(t, s, pos.Epoch, 1, "first", "lost reply", "next")
	s.nothingQueued(t)
}

func TestRedisAppendNotRetried(t *testing.T) {
	srv := redistest.Start(t)
	testAppendNotRetried(t, srv.URL(), false)
}

// While Redis is down an append waits up to AppendHold and then fails as ErrUnavailable; one made while
// Redis restarts within the hold succeeds, once.
func TestRedisUnavailableAndHold(t *testing.T) {
	srv := redistest.Start(t, redistest.AOF())
	short := newTestRedis(t, srv, RedisOptions{AppendHold: 300 * time.Millisecond})
	long := newTestRedis(t, srv, RedisOptions{Prefix: short.prefix, AppendHold: 10 * time.Second})
	room := uniqueName(t, "room")
	mustAppend(t, short, room, "before")
	srv.Kill()

	start := time.Now()
	_, err := short.Append(t.Context(), room, []byte("refused"))
	if took := time.Since(start); !errors.Is(err, ErrUnavailable) || took < 300*time.Millisecond || took > 5*time.Second {
		t.Fatalf("append with Redis down: %v after %v; want ErrUnavailable after the 300ms hold", err, took)
	}
	if _, err := short.History(t.Context(), room, HistoryOptions{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("history with Redis down: %v, want ErrUnavailable", err)
	}
	if _, err := short.ListRooms(t.Context()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("list rooms with Redis down: %v, want ErrUnavailable", err)
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
	srv.Restart()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("append held over a restart: %v", err)
		}
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
	// A refusal from Redis itself is not "unavailable".
	if err := rawClient(t, srv).Do(t.Context(), "NOSUCHCOMMAND").Err(); err == nil || unavailable(err) {
		t.Fatalf("a command error (%v) counted as unavailable", err)
	}
}
