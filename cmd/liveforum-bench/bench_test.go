package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/liveforum/liveforum/auth"
	"github.com/liveforum/liveforum/broker"
	"github.com/liveforum/liveforum/protocol"
	"github.com/liveforum/liveforum/rooms"
	"github.com/liveforum/liveforum/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	testSecret   = "k1:bench-test-secret-0123456789abcdefghij"
	testAdminKey = "bench-admin-key-0123456789"
)

// startServer runs a real server in the process, with the in-memory broker, and returns its websocket URL.
func startServer(t *testing.T, mod func(*server.Config)) string {
	t.Helper()
	keys, err := auth.ParseKeys(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := auth.NewAdminKey(testAdminKey)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	cfg := server.Config{Keys: keys, AdminKey: admin, AutoCreate: true, Logger: log}
	if mod != nil {
		mod(&cfg)
	}
	b := broker.NewMemory(broker.MemoryOptions{})
	reg := rooms.NewRegistry(b, rooms.Config{Logger: log})
	srv, err := server.New(cfg, reg, b)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler(nil))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		reg.Close(protocol.CloseShutdown, "")
		b.Close()
		hs.Close()
	})
	return "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"
}

// summary is the part of the JSON line the tests check.
type summary struct {
	Expected, Delivered, Lost, Dups int64
	OutOfOrder                      int64    `json:"out_of_order"`
	OffsetErrors                    int64    `json:"offset_errors"`
	MsgsPerSec                      *float64 `json:"msgs_per_sec"`
	P50                             *float64 `json:"p50_ms"`
	P99                             *float64 `json:"p99_ms"`
	Max                             *float64 `json:"max_ms"`
	ConnectS                        *float64 `json:"connect_s"`
	HeapPerConn                     *int64   `json:"heap_per_conn_bytes"`
	StackPerConn                    *int64   `json:"stack_per_conn_bytes"`
	N, M, Publishers, Size          int
	Rate                            *float64
	Sent                            int64
	Tokens                          string
}

func TestChat(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		env      map[string]string
		server   func(*server.Config)
		tokens   string
		measured bool // heap per connection
	}{
		{name: "minted tokens, unlimited rate", args: []string{"-secret", testSecret, "-admin-key", testAdminKey},
			tokens: "minted", measured: true},
		{name: "secrets from the environment, paced", args: []string{"-rate", "500", "-room", "paced"},
			env: map[string]string{"LIVEFORUM_SECRET": testSecret, "LIVEFORUM_ADMIN_KEY": testAdminKey}, tokens: "minted", measured: true},
		{name: "guests", args: []string{"-room", "guests"}, tokens: "guest",
			server: func(c *server.Config) { c.DevMode, c.ChatRate, c.ChatBurst = true, 1000, 1000 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := startServer(t, tc.server)
			args := append([]string{"-url", url + "," + url, "-n", "20", "-m", "50", "-publishers", "2", "-size", "80",
				"-timeout", "20s"}, tc.args...)
			var out, errb bytes.Buffer
			err := runChat(t.Context(), args, &out, &errb, func(k string) string { return tc.env[k] })
			if err != nil {
				t.Fatalf("chat: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
			}
			lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
			var s summary
			dec := json.NewDecoder(strings.NewReader(lines[len(lines)-1]))
			if err := dec.Decode(&s); err != nil {
				t.Fatalf("last line is not JSON: %v\n%s", err, out.String())
			}
			if s.Expected != 20*50 || s.Delivered != s.Expected || s.Lost != 0 || s.Dups != 0 || s.OutOfOrder != 0 ||
				s.OffsetErrors != 0 || s.Sent != 50 {
				t.Errorf("delivery: %+v\n%s", s, out.String())
			}
			if s.N != 20 || s.M != 50 || s.Publishers != 2 || s.Size != 80 || s.Rate == nil || s.Tokens != tc.tokens {
				t.Errorf("settings: %+v", s)
			}
			for name, v := range map[string]*float64{"msgs_per_sec": s.MsgsPerSec, "p50_ms": s.P50, "p99_ms": s.P99,
				"max_ms": s.Max, "connect_s": s.ConnectS} {
				if v == nil || *v <= 0 {
					t.Errorf("%s missing or not positive in %s", name, lines[len(lines)-1])
				}
			}
			if s.P50 != nil && s.P99 != nil && s.Max != nil && !(*s.P50 <= *s.P99 && *s.P99 <= *s.Max) {
				t.Errorf("percentiles out of order: p50 %v p99 %v max %v", *s.P50, *s.P99, *s.Max)
			}
			if tc.measured != (s.HeapPerConn != nil) || tc.measured != (s.StackPerConn != nil) {
				t.Errorf("heap and stack per connection: measured %v, got %v %v", tc.measured, s.HeapPerConn, s.StackPerConn)
			}
		})
	}
}

// TestChatReportsLoss times out before the publisher, paced at one message a second, sent all, so the
// checks must fail and say so.
func TestChatReportsLoss(t *testing.T) {
	url := startServer(t, nil)
	var out, errb bytes.Buffer
	args := []string{"-url", url, "-n", "3", "-m", "5", "-publishers", "1", "-rate", "1", "-secret", testSecret, "-timeout", "500ms"}
	err := runChat(t.Context(), args, &out, &errb, func(string) string { return "" })
	if err != errChecksFailed {
		t.Fatalf("chat: %v, want %v\n%s%s", err, errChecksFailed, out.String(), errb.String())
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	var s summary
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &s); err != nil || s.Lost != 12 || s.Sent != 1 {
		t.Errorf("want a JSON line with 1 sent, 12 lost, got %v:\n%s", err, out.String())
	}
}

func TestChatFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-n", "0"},
		{"-publishers", "5", "-m", "4"},
		{"-url", "http://127.0.0.1/ws"},
		{"-room", "bad room"},
		{"-secret", "short"},
		{"-rate", "-1"},
		{"extra"},
	} {
		t.Run(fmt.Sprint(args), func(t *testing.T) {
			var errb bytes.Buffer
			if _, err := parseChat(args, &errb, func(string) string { return "" }); err == nil {
				t.Errorf("parseChat(%q) accepted", args)
			}
		})
	}
}
