package redistest

import (
	"net"
	"strconv"
	"testing"
	"time"
)

// TestStartCluster: the cluster forms within a few seconds, every node agrees, KeySlot matches CLUSTER
// KEYSLOT, and a migrated slot has a new owner.
func TestStartCluster(t *testing.T) {
	t.Parallel()
	start := time.Now()
	c := StartCluster(t, 3)
	t.Logf("cluster of 3 ok after %v: %s", time.Since(start), c.URL())
	for _, key := range []string{"a", "foo", "lf:{room-1}:log", "{user1000}.following", "x{}y", "{}", "a{b}c{d}", "{{x}}"} {
		got, err := c.Nodes()[1].do("CLUSTER", "KEYSLOT", key)
		if err != nil {
			t.Fatal(err)
		}
		if want := strconv.Itoa(KeySlot(key)); got != want {
			t.Errorf("KeySlot(%q) = %s, CLUSTER KEYSLOT says %s", key, want, got)
		}
	}
	key := "{k}x"
	slot := KeySlot(key)
	owner := c.NodeOf(slot)
	if _, err := owner.do("SET", key, "v"); err != nil {
		t.Fatalf("SET on the slot's owner: %v", err)
	}
	to := c.Nodes()[0]
	if to == owner {
		to = c.Nodes()[1]
	}
	c.MigrateSlot(slot, to)
	if c.NodeOf(slot) != to {
		t.Fatal("NodeOf after MigrateSlot is not the target")
	}
	if v, err := to.do("GET", key); err != nil || v != "v" {
		t.Fatalf("GET on the new owner: %q, %v", v, err)
	}
	if _, err := owner.do("GET", key); err == nil {
		t.Fatal("GET on the old owner succeeded; want MOVED")
	}
}

// TestClusterPassword: every node of a cluster started with a password requires it.
func TestClusterPassword(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 3, Password("pw"))
	if _, err := c.Nodes()[2].do("PING"); err != nil {
		t.Fatal(err)
	}
	noAuth := &Server{port: c.Nodes()[1].port}
	if _, err := noAuth.do("PING"); err == nil {
		t.Fatal("PING without the password succeeded")
	}
}

// A first start whose port was taken between freePort and the bind moves to another port; the test then
// reaches the server where URL says.
func TestStartMovesOffATakenPort(t *testing.T) {
	a := Start(t)
	b := newServer(t, nil)
	b.port = a.port // as if another process had taken it since freePort
	b.start()
	if b.port == a.port {
		t.Fatalf("both on port %d", a.port)
	}
	if err := ping(b.Addr(), ""); err != nil {
		t.Fatalf("the moved server: %v", err)
	}
}

// A port held by a process that is not a Redis (redis-server logs "Address already in use") is left
// for another one too.
func TestStartMovesOffAPortHeldByAnotherProgram(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() { // answers nothing: a connection is closed at once, so a ping fails fast
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	held := l.Addr().(*net.TCPAddr).Port
	s := newServer(t, nil)
	s.port = held
	s.start()
	if s.port == held {
		t.Fatalf("started on port %d, which another program holds", held)
	}
	if err := ping(s.Addr(), ""); err != nil {
		t.Fatalf("the moved server: %v", err)
	}
}
