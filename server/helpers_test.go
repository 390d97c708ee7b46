package server

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/liveforum/liveforum/auth"
	"github.com/liveforum/liveforum/broker"
	"github.com/liveforum/liveforum/client"
	"github.com/liveforum/liveforum/protocol"
	"github.com/liveforum/liveforum/rooms"
)

const testAdminKey = "test-admin-key-0123456789"

// testServer is a real server on a real listener, with the in-memory broker.
type testServer struct {
	t     *testing.T
	srv   *Server
	reg   *rooms.Registry
	keys  *auth.Keyring
	http  *httptest.Server
	wsURL string
	now   func() time.Time
}

func newTestServer(t *testing.T, mod func(*Config, *rooms.Config)) *testServer {
	t.Helper()
	b := broker.NewMemory(broker.MemoryOptions{})
	t.Cleanup(func() { b.Close() }) // after the server's own clean-up (cleanups run last first)
	return newTestServerOn(t, b, mod)
}

// newTestServerOn is newTestServer over a broker the test holds (and closes).
func newTestServerOn(t *testing.T, b broker.Broker, mod func(*Config, *rooms.Config)) *testServer {
	t.Helper()
	keys, err := auth.NewKeyring(auth.GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	admin, err := auth.NewAdminKey(testAdminKey)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg := Config{Keys: keys, AdminKey: admin, AutoCreate: true, Logger: log}
	rcfg := rooms.Config{Logger: log}
	if mod != nil {
		mod(&cfg, &rcfg)
	}
	reg := rooms.NewRegistry(b, rcfg)
	srv, err := New(cfg, reg, b)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler(nil))
	ts := &testServer{t: t, srv: srv, reg: reg, keys: keys, http: hs,
		wsURL: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws", now: time.Now}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		reg.Close(protocol.CloseShutdown, "")
		hs.Close()
	})
	return ts
}

// token mints an access token.
func (ts *testServer) token(room, identity, name string, role auth.Role) string {
	ts.t.Helper()
	tok, err := ts.keys.Sign(auth.Claims{Room: room, Identity: identity, Name: name, Role: role,
		Expires: time.Now().Add(time.Hour)})
	if err != nil {
		ts.t.Fatal(err)
	}
	return tok
}

// dial connects a client and closes it at the end of the test.
func (ts *testServer) dial(opts client.Options) *client.Client {
	ts.t.Helper()
	if opts.URL == "" {
		opts.URL = ts.wsURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, opts)
	if err != nil {
		ts.t.Fatalf("dial: %v", err)
	}
	ts.t.Cleanup(func() { c.Close() })
	return c
}

// join joins and fails the test on error.
func join(t *testing.T, c *client.Client, room string) *protocol.JoinReply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Join(ctx, room, client.JoinOptions{})
	if err != nil {
		t.Fatalf("join %s: %v", room, err)
	}
	return r
}

func chat(t *testing.T, c *client.Client, room, text string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	off, err := c.Chat(ctx, room, text, "")
	if err != nil {
		t.Fatalf("chat: %v", err)
	}
	return off
}

// nextChat waits for the next chat event on c, skipping other kinds.
func nextChat(t *testing.T, c *client.Client) (client.Event, protocol.Event) {
	t.Helper()
	return nextOf(t, c, protocol.KindChat)
}

// nextKind waits for the next event of a kind on c.
func nextKind(t *testing.T, c *client.Client, kind string) protocol.Event {
	t.Helper()
	_, d := nextOf(t, c, kind)
	return d
}

// nextOf waits for the next event of a kind on c and returns it decoded.
func nextOf(t *testing.T, c *client.Client, kind string) (client.Event, protocol.Event) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatalf("events closed: %v", c.Err())
			}
			if ev.Kind() == kind {
				d, err := ev.Decode()
				if err != nil {
					t.Fatal(err)
				}
				return ev, d
			}
		case <-timeout:
			t.Fatalf("no %s event within 5s", kind)
		}
	}
}

// waitClosed waits until the client ends and returns its close code (0 if it ended otherwise).
func waitClosed(t *testing.T, c *client.Client) int {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-c.Events():
			if !ok {
				if ce, isClose := c.Err().(*client.CloseError); isClose {
					return ce.Code
				}
				return 0
			}
		case <-timeout:
			t.Fatal("client not closed within 10s")
		}
	}
}
