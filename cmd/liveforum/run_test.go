package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/liveforum/liveforum/auth"
	"github.com/liveforum/liveforum/client"
	"github.com/liveforum/liveforum/protocol"
)

// clearEnv blanks every LIVEFORUM_ variable of the test process for the test, so that the machine's
// environment cannot change what the command does.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "LIVEFORUM_") {
			t.Setenv(k, "")
		}
	}
}

func TestVersionAndUnknownCommand(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"version"}, &out, io.Discard); err != nil || out.String() != "liveforum "+version+"\n" {
		t.Fatalf("version: %q %v", out.String(), err)
	}
	if err := run([]string{"frobnicate"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "frobnicate") {
		t.Fatalf("unknown command: %v", err)
	}
}

// `liveforum token` prints a token that the server's keys verify, with the claims asked for.
func TestTokenCommand(t *testing.T) {
	clearEnv(t)
	for _, secret := range []string{testSecret, "k2:" + testSecret + "-new,k1:" + testSecret} {
		var out, errOut bytes.Buffer
		err := run([]string{"token", "-secret", secret, "-room", "agora", "-identity", "u-1", "-name", "Una",
			"-role", "moderator", "-lang", "pt-BR", "-ttl", "10m"}, &out, &errOut)
		if err != nil {
			t.Fatalf("token: %v (%s)", err, errOut.String())
		}
		tok := strings.TrimSpace(out.String())
		if strings.Count(out.String(), "\n") != 1 || strings.Count(tok, ".") != 2 {
			t.Fatalf("output %q is not one token on a line", out.String())
		}
		keys, err := auth.ParseKeys(secret)
		if err != nil {
			t.Fatal(err)
		}
		cl, err := keys.Verify(tok, time.Now())
		if err != nil {
			t.Fatalf("printed token does not verify: %v", err)
		}
		if cl.Room != "agora" || cl.Identity != "u-1" || cl.Name != "Una" || cl.Role != auth.RoleModerator || cl.Lang != "pt-BR" ||
			cl.Expires.Before(time.Now().Add(9*time.Minute)) || cl.Expires.After(time.Now().Add(11*time.Minute)) || cl.Invite {
			t.Fatalf("claims %+v", cl)
		}
		other, _ := auth.ParseKeys(strings.Repeat("x", 40))
		if _, err := other.Verify(tok, time.Now()); err == nil {
			t.Fatal("token verifies with another secret")
		}
	}

	// The secret may come from the environment; the role defaults to participant.
	t.Setenv("LIVEFORUM_SECRET", testSecret)
	var out bytes.Buffer
	if err := run([]string{"token", "-room", "*", "-identity", "bot-1", "-name", "Bot"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	keys, _ := auth.ParseKeys(testSecret)
	if cl, err := keys.Verify(strings.TrimSpace(out.String()), time.Now()); err != nil || cl.Role != auth.RoleParticipant || cl.Room != "*" {
		t.Fatalf("token with the secret from the environment: %+v %v", cl, err)
	}

	for name, args := range map[string][]string{
		"bad role":     {"-room", "r", "-identity", "i", "-name", "N", "-role", "king"},
		"no ttl":       {"-room", "r", "-identity", "i", "-name", "N", "-ttl", "0s"},
		"no identity":  {"-room", "r", "-name", "N"},
		"no room":      {"-identity", "i", "-name", "N"},
		"bad room":     {"-room", "two words", "-identity", "i", "-name", "N"},
		"short secret": {"-secret", "short", "-room", "r", "-identity", "i", "-name", "N"},
	} {
		var out bytes.Buffer
		if err := run(append([]string{"token"}, args...), &out, io.Discard); err == nil || out.Len() != 0 {
			t.Errorf("%s: err %v, printed %q", name, err, out.String())
		}
	}
	t.Setenv("LIVEFORUM_SECRET", "")
	if err := run([]string{"token", "-room", "r", "-identity", "i", "-name", "N"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "secret") {
		t.Fatalf("no secret: %v", err)
	}
	if err := run([]string{"token", "-h"}, io.Discard, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("token -h: %v", err)
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader at a time.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// running is a serve call in progress.
type running struct {
	addr   string
	stdout *syncBuffer
	stderr *syncBuffer
	cancel context.CancelFunc
	done   chan error
	http   *http.Client
}

// startServe runs serve with args in a goroutine and waits until it listens.
func startServe(t *testing.T, args ...string) *running {
	t.Helper()
	clearEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{stdout: &syncBuffer{}, stderr: &syncBuffer{}, cancel: cancel, done: make(chan error, 1),
		http: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}}
	ready := make(chan string, 1)
	go func() {
		r.done <- serve(ctx, append([]string{"-addr", "127.0.0.1:0", "-ice-udp-addr", "127.0.0.1:0", "-log-level", "warn"}, args...), r.stdout, r.stderr, ready)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(15 * time.Second):
			t.Error("serve did not return after its context was canceled")
		}
	})
	select {
	case r.addr = <-ready:
	case err := <-r.done:
		t.Fatalf("serve returned before it was ready: %v\n%s", err, r.stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("serve not ready within 10s")
	}
	return r
}

// stop cancels serve's context and returns what serve returned.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not return after its context was canceled")
		return nil
	}
}

func (r *running) get(t *testing.T, path, key string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+r.addr+path, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := r.http.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func dialClient(t *testing.T, opts client.Options) (*client.Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, opts)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func closeCode(t *testing.T, c *client.Client) int {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-c.Events():
			if !ok {
				var ce *client.CloseError
				if errors.As(c.Err(), &ce) {
					return ce.Code
				}
				return 0
			}
		case <-timeout:
			t.Fatal("client not closed within 10s")
		}
	}
}

// The development server starts, prints a moderator link that works, serves health checks, and stops
// cleanly when its context ends, telling clients to reconnect.
func TestServeDevModeSmoke(t *testing.T) {
	r := startServe(t)
	if code, body := r.get(t, "/healthz", ""); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("healthz: %d %q", code, body)
	}
	if code, _ := r.get(t, "/readyz", ""); code != http.StatusOK {
		t.Fatalf("readyz: %d", code)
	}

	banner := r.stdout.String()
	link := regexp.MustCompile(`moderator link for room "lobby": (\S+)`).FindStringSubmatch(banner)
	key := regexp.MustCompile(`admin key: (\S+)`).FindStringSubmatch(banner)
	if link == nil || key == nil || !strings.Contains(banner, "ws://"+r.addr+"/ws") {
		t.Fatalf("banner:\n%s", banner)
	}
	prefix := "http://" + r.addr + "/r/lobby#invite="
	if !strings.HasPrefix(link[1], prefix) {
		t.Fatalf("moderator link %q, want it to start with %q", link[1], prefix)
	}
	if code, body := r.get(t, "/api/rooms/lobby", key[1]); code != http.StatusOK || !strings.Contains(body, `"guests":true`) {
		t.Fatalf("lobby through the admin API with the printed key: %d %s", code, body)
	}
	if code, body := r.get(t, "/metrics", key[1]); code != http.StatusOK || !strings.Contains(body, "liveforum_connections 0") {
		t.Fatalf("metrics: %d %s", code, body)
	}

	ws := "ws://" + r.addr + "/ws"
	mod, err := dialClient(t, client.Options{URL: ws, Token: strings.TrimPrefix(link[1], prefix), Name: "First Moderator"})
	if err != nil {
		t.Fatalf("the moderator link's token does not authenticate: %v", err)
	}
	if m := mod.Member(); m.Role != "moderator" || !strings.HasPrefix(m.Identity, "inv-") || m.Name != "First Moderator" {
		t.Fatalf("moderator from the link: %+v", m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if reply, err := mod.Join(ctx, "lobby", client.JoinOptions{}); err != nil || reply.Self.Role != "moderator" {
		t.Fatalf("join lobby: %+v %v", reply, err)
	}
	// Development mode: a guest may create a room by joining it.
	guest, err := dialClient(t, client.Options{URL: ws, Name: "Guest"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := guest.Join(ctx, "brand-new", client.JoinOptions{}); err != nil {
		t.Fatalf("dev-mode guest creating a room: %v", err)
	}

	if err := r.stop(t); err != nil {
		t.Fatalf("serve returned %v", err)
	}
	for _, c := range []*client.Client{mod, guest} {
		if code := closeCode(t, c); code != protocol.CloseShutdown {
			t.Fatalf("client closed with %d at shutdown", code)
		}
	}
}

// With a secret the server is not in development mode: no banner, no room made up, guests create nothing,
// and the configured admin key opens the admin API.
func TestServeWithSecret(t *testing.T) {
	r := startServe(t, "-secret", testSecret, "-admin-key", testAdminKey)
	if out := r.stdout.String(); out != "" {
		t.Fatalf("printed %q", out)
	}
	if code, _ := r.get(t, "/api/rooms", testAdminKey); code != http.StatusOK {
		t.Fatalf("admin API with the configured key: %d", code)
	}
	if code, _ := r.get(t, "/api/rooms/lobby", testAdminKey); code != http.StatusNotFound {
		t.Fatalf("lobby exists outside development mode: %d", code)
	}
	guest, err := dialClient(t, client.Options{URL: "ws://" + r.addr + "/ws", Name: "Guest"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var re *client.RequestError
	if _, err := guest.Join(ctx, "brand-new", client.JoinOptions{}); !errors.As(err, &re) || re.Code != protocol.CodeNotFound {
		t.Fatalf("guest creating a room: %v", err)
	}
	keys, _ := auth.ParseKeys(testSecret)
	tok, _ := keys.Sign(auth.Claims{Room: "agora", Identity: "u", Name: "U", Role: auth.RoleParticipant, Expires: time.Now().Add(time.Minute)})
	member, err := dialClient(t, client.Options{URL: "ws://" + r.addr + "/ws", Token: tok})
	if err != nil {
		t.Fatalf("token of the configured secret: %v", err)
	}
	if _, err := member.Join(ctx, "agora", client.JoinOptions{}); err != nil { // auto-create: the token names it
		t.Fatal(err)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}

// serve refuses a bad configuration or an address it cannot listen on, and leaves nothing running.
func TestServeFailsCleanly(t *testing.T) {
	clearEnv(t)
	ctx := context.Background()
	if err := serve(ctx, []string{"-history-size", "1"}, io.Discard, io.Discard, nil); err == nil || !strings.Contains(err.Error(), "history-size") {
		t.Fatalf("bad config: %v", err)
	}
	r := startServe(t)
	if err := serve(ctx, []string{"-addr", r.addr}, io.Discard, io.Discard, nil); err == nil {
		t.Fatal("serve on an address in use succeeded")
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}
