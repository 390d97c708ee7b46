package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/liveforum/liveforum/client"
	"github.com/liveforum/liveforum/internal/redistest"
)

// With -redis-url the node uses Redis and says so with its node id; two development nodes on one Redis
// both print a working banner, and a room created on one is joined on the other.
func TestServeWithRedisDevMode(t *testing.T) {
	rs := redistest.Start(t)
	a := startServe(t, "-redis-url", rs.URL(), "-node-id", "dev-a", "-log-level", "info")
	b := startServe(t, "-redis-url", rs.URL(), "-log-level", "info") // a made-up node id
	if log := a.stderr.String(); !strings.Contains(log, "broker=redis node=dev-a") || !strings.Contains(log, "connected to Redis") {
		t.Fatalf("node a's log:\n%s", log)
	}
	m := regexp.MustCompile(`broker=redis node=(\S+)`).FindStringSubmatch(b.stderr.String())
	if m == nil || !validNodeID(m[1]) || m[1] == "dev-a" {
		t.Fatalf("node b's log:\n%s", b.stderr.String())
	}
	for _, r := range []*running{a, b} {
		if !strings.Contains(r.stdout.String(), `moderator link for room "lobby"`) {
			t.Fatalf("banner:\n%s", r.stdout.String())
		}
		if code, _ := r.get(t, "/readyz", ""); code != http.StatusOK {
			t.Fatalf("readyz %d", code)
		}
	}
	chatAcross(t, a, b)
}

// A Redis that does not answer fails startup at once, with an error that names it; so does a bad URL.
func TestServeRedisUnreachable(t *testing.T) {
	clearEnv(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	start := time.Now()
	err = serve(context.Background(), []string{"-addr", "127.0.0.1:0", "-redis-url", "redis://:hunter2@" + dead + "/0"},
		io.Discard, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "redis-url") || !strings.Contains(err.Error(), dead) ||
		strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("unreachable Redis: %v", err)
	}
	if took := time.Since(start); took > redisConnectTimeout+time.Second {
		t.Fatalf("took %v", took)
	}
	err = serve(context.Background(), []string{"-addr", "127.0.0.1:0", "-redis-url", "https://" + dead}, io.Discard, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "redis://") {
		t.Fatalf("bad scheme: %v", err)
	}
}

// With -redis-cluster the node uses a Redis Cluster named by one of its nodes (with the password) and says
// so; a room is shared by two nodes. A cluster whose nodes do not answer fails startup, naming the URL
// without its password.
func TestServeWithRedisCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3, redistest.Password("hunter2"))
	one := "redis://:hunter2@" + c.Nodes()[1].Addr() // the client finds the other masters
	a := startServe(t, "-redis-cluster", "-redis-url", c.URL(), "-node-id", "cl-a", "-log-level", "info", "-dev")
	b := startServe(t, "-redis-cluster", "-redis-url", one, "-node-id", "cl-b", "-log-level", "info", "-dev")
	for _, r := range []*running{a, b} {
		log := r.stderr.String()
		if !regexp.MustCompile(`broker=redis-cluster node=cl-[ab]`).MatchString(log) || !strings.Contains(log, "cluster=true") ||
			strings.Contains(log, "hunter2") {
			t.Fatalf("log:\n%s", log)
		}
		if code, _ := r.get(t, "/readyz", ""); code != http.StatusOK {
			t.Fatalf("readyz %d", code)
		}
	}
	chatAcross(t, a, b)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	start := time.Now()
	err = serve(context.Background(), []string{"-addr", "127.0.0.1:0", "-redis-cluster", "-redis-url", "redis://:hunter2@" + dead + "?addr=" + dead},
		io.Discard, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "Redis Cluster") || !strings.Contains(err.Error(), dead) ||
		strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("unreachable cluster: %v", err)
	}
	if took := time.Since(start); took > redisConnectTimeout+time.Second {
		t.Fatalf("took %v", took)
	}
	t.Logf("unreachable cluster, after %v: %v", time.Since(start).Round(time.Millisecond), err)
}

// chatAcross has a guest on node b chat in a room a guest on node a made, checks that node a delivers it,
// and stops both nodes.
func chatAcross(t *testing.T, a, b *running) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ga, err := dialClient(t, client.Options{URL: "ws://" + a.addr + "/ws", Name: "A"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ga.Join(ctx, "made-on-a", client.JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	gb, err := dialClient(t, client.Options{URL: "ws://" + b.addr + "/ws", Name: "B"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gb.Join(ctx, "made-on-a", client.JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	off, err := gb.Chat(ctx, "made-on-a", "from b", "")
	if err != nil {
		t.Fatal(err)
	}
	for seen := false; !seen; {
		select {
		case ev, ok := <-ga.Events():
			if !ok {
				t.Fatalf("client on node a ended: %v", ga.Err())
			}
			seen = ev.Offset == off
		case <-ctx.Done():
			t.Fatal("the message sent on node b did not reach node a")
		}
	}
	for _, r := range []*running{a, b} {
		if err := r.stop(t); err != nil {
			t.Fatal(err)
		}
	}
}
