package client_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/liveforum/liveforum/auth"
	"github.com/liveforum/liveforum/broker"
	"github.com/liveforum/liveforum/client"
	"github.com/liveforum/liveforum/protocol"
	"github.com/liveforum/liveforum/rooms"
	"github.com/liveforum/liveforum/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// node is a liveforum server on a fixed address, so that a test can stop it and start another in its
// place, as an operator restarting the process would.
type node struct {
	srv *server.Server
	reg *rooms.Registry
	b   *broker.Memory
	hs  *http.Server
	ln  net.Listener
}

func startNode(t *testing.T, addr string, keys *auth.Keyring) *node {
	t.Helper()
	admin, _ := auth.NewAdminKey("client-test-admin-key")
	log := slog.New(slog.DiscardHandler)
	b := broker.NewMemory(broker.MemoryOptions{})
	reg := rooms.NewRegistry(b, rooms.Config{Logger: log})
	srv, err := server.New(server.Config{Keys: keys, AdminKey: admin, AutoCreate: true, Logger: log}, reg, b)
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	for deadline := time.Now().Add(5 * time.Second); ; {
		if ln, err = net.Listen("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // the previous node's port is being released
	}
	if err != nil {
		t.Fatal(err)
	}
	n := &node{srv: srv, reg: reg, b: b, hs: &http.Server{Handler: srv.Handler(nil)}, ln: ln}
	go n.hs.Serve(ln)
	return n
}

func (n *node) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = n.hs.Shutdown(ctx)
	_ = n.srv.Shutdown(ctx)
	n.reg.Close(protocol.CloseShutdown, "")
	n.b.Close()
}

func token(t *testing.T, keys *auth.Keyring, id string, role auth.Role) string {
	t.Helper()
	tok, err := keys.Sign(auth.Claims{Room: "r", Identity: id, Name: id, Role: role, Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func waitChat(t *testing.T, c *client.Client) client.Event {
	t.Helper()
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatalf("client ended: %v", c.Err())
			}
			if ev.Reset != nil || ev.Kind() == protocol.KindChat {
				return ev
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no event in 10 s")
		}
	}
}

// When the server restarts with an empty log, a reconnecting client cannot recover: it receives a Reset
// with the fresh room state, then live events again.
func TestRestartedServerGivesReset(t *testing.T) {
	keys, _ := auth.NewKeyring(auth.GenerateKey())
	first := startNode(t, "127.0.0.1:0", keys)
	addr := first.ln.Addr().String()
	url := "ws://" + addr + "/ws"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	alice, err := client.Dial(ctx, client.Options{URL: url, Token: token(t, keys, "alice", auth.RoleParticipant),
		Reconnect: true, MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	if _, err := alice.Join(ctx, "r", client.JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	before := alice.Position("r")

	first.stop()
	second := startNode(t, addr, keys)
	defer second.stop()

	ev := waitChat(t, alice)
	if ev.Reset == nil {
		t.Fatalf("expected a reset, got %s", ev.Data)
	}
	if ev.Reset.Recovered || ev.Reset.Epoch == before.Epoch || ev.Reset.Room.Name != "r" {
		t.Fatalf("reset reply: recovered %v epoch %q (was %q)", ev.Reset.Recovered, ev.Reset.Epoch, before.Epoch)
	}
	epoch := ev.Reset.Epoch
	bob, err := client.Dial(ctx, client.Options{URL: url, Token: token(t, keys, "bob", auth.RoleBot)})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	if _, err := bob.Join(ctx, "r", client.JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	off, err := bob.Chat(ctx, "r", "after the restart", "n1")
	if err != nil {
		t.Fatal(err)
	}
	ev = waitChat(t, alice)
	d, _ := ev.Decode()
	if ev.Offset != off || d.Text != "after the restart" || d.Nonce != "n1" {
		t.Fatalf("got %+v at %d", d, ev.Offset)
	}
	if p := alice.Position("r"); p.Epoch != epoch || p.Offset != off {
		t.Fatalf("position %+v after reset", p)
	}
}

// A close code that says "do not come back" ends a reconnecting client with a CloseError.
func TestFinalCloseCodeEndsTheClient(t *testing.T) {
	keys, _ := auth.NewKeyring(auth.GenerateKey())
	n := startNode(t, "127.0.0.1:0", keys)
	defer n.stop()
	url := "ws://" + n.ln.Addr().String() + "/ws"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	mod, err := client.Dial(ctx, client.Options{URL: url, Token: token(t, keys, "mod", auth.RoleModerator)})
	if err != nil {
		t.Fatal(err)
	}
	defer mod.Close()
	guest, err := client.Dial(ctx, client.Options{URL: url, Token: token(t, keys, "troll", auth.RoleParticipant), Reconnect: true})
	if err != nil {
		t.Fatal(err)
	}
	defer guest.Close()
	for _, c := range []*client.Client{mod, guest} {
		if _, err := c.Join(ctx, "r", client.JoinOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := mod.Remove(ctx, "r", "troll", "spam"); err != nil {
		t.Fatal(err)
	}
	for range guest.Events() {
	}
	var ce *client.CloseError
	if err := guest.Err(); !errors.As(err, &ce) || ce.Code != protocol.CloseRemoved || guest.Reconnects() != 0 {
		t.Fatalf("client ended with %v after %d reconnects", err, guest.Reconnects())
	}
	if _, err := guest.Chat(ctx, "r", "let me back", ""); !errors.Is(err, client.ErrDisconnected) {
		t.Fatalf("chat after removal: %v", err)
	}
}

// A bad token is reported by Dial as the server's error code.
func TestDialWithBadTokenFails(t *testing.T) {
	keys, _ := auth.NewKeyring(auth.GenerateKey())
	n := startNode(t, "127.0.0.1:0", keys)
	defer n.stop()
	other, _ := auth.NewKeyring(auth.GenerateKey())
	_, err := client.Dial(context.Background(), client.Options{URL: "ws://" + n.ln.Addr().String() + "/ws",
		Token: token(t, other, "x", auth.RoleParticipant)})
	var re *client.RequestError
	if !errors.As(err, &re) || re.Code != protocol.CodeUnauthorized {
		t.Fatalf("dial: %v", err)
	}
}
