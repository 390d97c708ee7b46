package client_test

// Review tests: each fails against the code it was written for. Drop into client/ and run
// go test -race -run TestReview ./client

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/liveforum/liveforum/auth"
	"github.com/liveforum/liveforum/broker"
	"github.com/liveforum/liveforum/client"
	"github.com/liveforum/liveforum/protocol"
	"github.com/liveforum/liveforum/rooms"
	"github.com/liveforum/liveforum/server"
)

// failingHistory makes the next recovery (History with Since) fail as a broker outage would.
type failingHistory struct {
	*broker.Memory
	fail atomic.Bool
}

func (f *failingHistory) History(ctx context.Context, room string, opts broker.HistoryOptions) (broker.History, error) {
	if opts.Since != nil && f.fail.CompareAndSwap(true, false) {
		return broker.History{}, broker.ErrClosed // the server answers "unavailable: retry later"
	}
	return f.Memory.History(ctx, room, opts)
}

type reviewNode struct {
	b    *failingHistory
	reg  *rooms.Registry
	srv  *server.Server
	hs   *httptest.Server
	keys *auth.Keyring
	url  string
}

func startReviewNode(t *testing.T, wrap func(http.Handler) http.Handler) *reviewNode {
	t.Helper()
	keys, _ := auth.NewKeyring(auth.GenerateKey())
	admin, _ := auth.NewAdminKey("client-test-admin-key")
	log := slog.New(slog.DiscardHandler)
	b := &failingHistory{Memory: broker.NewMemory(broker.MemoryOptions{})}
	reg := rooms.NewRegistry(b, rooms.Config{Logger: log})
	srv, err := server.New(server.Config{Keys: keys, AdminKey: admin, AutoCreate: true, Logger: log}, reg, b)
	if err != nil {
		t.Fatal(err)
	}
	h := srv.Handler(nil)
	if wrap != nil {
		h = wrap(h)
	}
	hs := httptest.NewServer(h)
	n := &reviewNode{b: b, reg: reg, srv: srv, hs: hs, keys: keys, url: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		reg.Close(protocol.CloseShutdown, "")
		hs.Close()
		b.Close()
	})
	return n
}

func (n *reviewNode) token(t *testing.T, id string, role auth.Role) string {
	t.Helper()
	tok, err := n.keys.Sign(auth.Claims{Room: "r", Identity: id, Name: id, Role: role, Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Close called while the client is re-dialling after a drop never returns: connect() installs the new
// socket after Close looked at c.ws, run() goes straight back to readLoop without checking c.done, and
// the server's pings keep that read alive, so Close's wg.Wait() blocks as long as the server is up.
func TestReviewCloseDuringReconnectReturns(t *testing.T) {
	var conns atomic.Int32
	dialing := make(chan struct{})
	n := startReviewNode(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/ws" && conns.Add(1) == 2 {
				close(dialing)
				time.Sleep(300 * time.Millisecond) // a slow network on the reconnect
			}
			h.ServeHTTP(w, r)
		})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{URL: n.url, Token: n.token(t, "ana", auth.RoleParticipant),
		Reconnect: true, MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Join(ctx, "r", client.JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	c.Drop()
	<-dialing
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		t.Error("Close has not returned 3 s after it was called during a reconnect")
		n.srv.Shutdown(context.Background()) // let the stuck client go so the test can end
		<-closed
	}
}

// A rejoin refused with "unavailable" (the log/broker is briefly unavailable, a 5 s request timeout, the
// node shutting down) is, per docs/protocol.md §6, "retry later". The client treats every error answer
// as "the room is gone": it forgets the room and delivers Left, although the room still exists.
func TestReviewRejoinUnavailableIsNotLeavingTheRoom(t *testing.T) {
	n := startReviewNode(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ana, err := client.Dial(ctx, client.Options{URL: n.url, Token: n.token(t, "ana", auth.RoleParticipant),
		Reconnect: true, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer ana.Close()
	bo, err := client.Dial(ctx, client.Options{URL: n.url, Token: n.token(t, "bo", auth.RoleBot)})
	if err != nil {
		t.Fatal(err)
	}
	defer bo.Close()
	for _, c := range []*client.Client{ana, bo} {
		if _, err := c.Join(ctx, "r", client.JoinOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	n.b.fail.Store(true)
	ana.Drop()
	for ana.Reconnects() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	// Keep talking until ana hears bo again (or gives the room up).
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			_, _ = bo.Chat(ctx, "r", "are you back?", "")
		}
	}()
	for {
		select {
		case ev, ok := <-ana.Events():
			if !ok {
				t.Fatalf("ana ended: %v", ana.Err())
			}
			if ev.Left != nil {
				t.Fatalf("a transient 'unavailable' on rejoin made the client leave room %s for good: %+v", ev.Room, *ev.Left)
			}
			if ev.Kind() == protocol.KindChat {
				return
			}
		case <-ctx.Done():
			t.Fatal("ana never heard bo again")
		}
	}
}
