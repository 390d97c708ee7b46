package main

// A harness that runs liveforum nodes as real processes (the binary built from this package), so that tests
// can crash one with SIGKILL, stop it with SIGTERM and start it again, with clients of the Go client package
// spread over them.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/liveforum/liveforum/auth"
	"github.com/liveforum/liveforum/client"
	"github.com/liveforum/liveforum/internal/redistest"
	"github.com/liveforum/liveforum/protocol"
)

// binDir is where the liveforum binary is built, once, by the first test that starts a node; TestMain
// creates it and removes it after the tests.
var (
	binDir    string
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// nodeBinary builds the liveforum binary from this package (with -race when the tests run with it, so the
// nodes' races are caught too) and returns its path.
func nodeBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir == "" {
			buildErr = fmt.Errorf("binDir not set: TestMain must create it")
			return
		}
		binPath = filepath.Join(binDir, "liveforum")
		args := []string{"build", "-o", binPath}
		if raceBuild() {
			args = append(args, "-race")
		}
		cmd := exec.Command(goTool(), append(args, ".")...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			buildErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
	})
	if buildErr != nil {
		t.Fatalf("building liveforum: %v", buildErr)
	}
	return binPath
}

// raceBuild reports whether this test binary was built with -race.
func raceBuild() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin", "go")
}

// nodeLog collects a node's stderr over all its runs and signals every write.
type nodeLog struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{} // closed and replaced on each write
}

func newNodeLog() *nodeLog { return &nodeLog{changed: make(chan struct{})} }

func (l *nodeLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

// since returns what was written after byte n, and a channel closed on the next write.
func (l *nodeLog) since(n int) (string, chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b.Bytes()[n:]), l.changed
}

func (l *nodeLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *nodeLog) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

// node is a liveforum process.
type node struct {
	t    *testing.T
	id   string
	args []string
	log  *nodeLog

	mu   sync.Mutex
	addr string // host:port it listens on; kept across restarts
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// nodeArgs are the settings every test node gets besides its id and Redis: the test secret and admin key, a
// short leave grace and node heartbeat TTL, and limits high enough for test publishers.
var nodeArgs = []string{
	"-secret", testSecret, "-admin-key", testAdminKey, "-leave-grace", "1s", "-node-ttl", "3s", "-log-level", "info",
	"-chat-rate", "1000", "-chat-burst", "1000", "-msg-rate", "1000", "-msg-burst", "1000",
	"-shutdown-timeout", "5s", "-ice-udp-addr", "127.0.0.1:0", // media on a free port: many nodes run at once
}

var listeningRE = regexp.MustCompile(`msg="liveforum listening" addr=(\S+)`)

// startNode starts a node named id on a free port of 127.0.0.1 with nodeArgs, -node-id id and args. The
// node is killed when the test ends; if the test failed, its log is printed.
func startNode(t *testing.T, id string, args ...string) *node {
	t.Helper()
	n := &node{t: t, id: id, log: newNodeLog(), addr: "127.0.0.1:0",
		args: append(append([]string{"-node-id", id}, nodeArgs...), args...)}
	t.Cleanup(func() {
		n.kill()
		out := n.log.String()
		if strings.Contains(out, "DATA RACE") {
			t.Errorf("node %s: data race:\n%s", n.id, out)
		} else if t.Failed() {
			t.Logf("node %s log:\n%s", n.id, out)
		}
	})
	n.start()
	return n
}

// start runs the process and waits until it logs the address it listens on.
func (n *node) start() {
	n.t.Helper()
	bin := nodeBinary(n.t)
	n.mu.Lock()
	addr := n.addr
	n.mu.Unlock()
	cmd := exec.Command(bin, append([]string{"serve", "-addr", addr}, n.args...)...)
	cmd.Env = nodeEnv()
	cmd.Stdout = io.Discard
	cmd.Stderr = n.log
	from := n.log.Len()
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("node %s: start: %v", n.id, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	n.mu.Lock()
	n.cmd, n.done = cmd, done
	n.mu.Unlock()

	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		out, changed := n.log.since(from)
		if m := listeningRE.FindStringSubmatch(out); m != nil {
			n.mu.Lock()
			n.addr = m[1]
			n.mu.Unlock()
			return
		}
		select {
		case <-changed:
		case <-done:
			n.t.Fatalf("node %s exited at start: %v\n%s", n.id, cmd.ProcessState, out)
		case <-deadline.C:
			n.kill()
			n.t.Fatalf("node %s did not say it listens within 20s:\n%s", n.id, out)
		}
	}
}

// nodeEnv is the test's environment without LIVEFORUM_ variables, so the machine's cannot change a node.
func nodeEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LIVEFORUM_") {
			env = append(env, kv)
		}
	}
	return env
}

// Addr is the node's host:port.
func (n *node) Addr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.addr
}

// exited reports whether the node's process has ended (by itself or killed).
func (n *node) exited() bool {
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// WS is the node's websocket URL.
func (n *node) WS() string { return "ws://" + n.Addr() + "/ws" }

// signal sends sig and waits up to wait for the process to exit; then it kills it.
func (n *node) signal(sig syscall.Signal, wait time.Duration) (graceful bool) {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.cmd, n.done = nil, nil
	n.mu.Unlock()
	if cmd == nil {
		return true
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return true
	case <-time.After(wait):
		_ = cmd.Process.Kill()
		<-done
		return false
	}
}

func (n *node) kill() { n.signal(syscall.SIGKILL, time.Minute) }

// Kill crashes the node with SIGKILL: no goodbye to its clients, no cleanup in Redis.
func (n *node) Kill() {
	n.t.Helper()
	n.kill()
}

// Stop asks the node to shut down with SIGTERM and waits for it (failing the test if it takes more than
// 15 s).
func (n *node) Stop() {
	n.t.Helper()
	if !n.signal(syscall.SIGTERM, 15*time.Second) {
		n.t.Errorf("node %s did not stop within 15s of SIGTERM", n.id)
	}
}

// Restart starts the node again (stopping it first if it runs) on the same address.
func (n *node) Restart() {
	n.t.Helper()
	n.kill()
	n.start()
}

var nodeHTTP = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}

// Ready returns the status of GET /readyz (0 if the request failed).
func (n *node) Ready() int {
	resp, err := nodeHTTP.Get("http://" + n.Addr() + "/readyz")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// redisBackend is the Redis that the nodes of one test share, with an append-only file (fsync always).
type redisBackend struct {
	url  string   // -redis-url of every node
	args []string // more settings of every node: -redis-cluster on a cluster
	// holder returns the redis-server that holds a key: the one server, or on a cluster the master of the
	// key's slot.
	holder func(key string) *redistest.Server
}

// backends are the Redis setups the multi-node tests run on, each test once per backend as a subtest: one
// redis-server, and a Redis Cluster of 3 masters (no replicas; about 2 s to start).
var backends = []struct {
	name  string
	start func(t *testing.T) redisBackend
}{
	{"redis", func(t *testing.T) redisBackend {
		rs := redistest.Start(t, redistest.AOF())
		return redisBackend{url: rs.URL(), holder: func(string) *redistest.Server { return rs }}
	}},
	{"cluster", func(t *testing.T) redisBackend {
		c := redistest.StartCluster(t, 3, redistest.AOF())
		return redisBackend{url: c.URL(), args: []string{"-redis-cluster"},
			holder: func(key string) *redistest.Server { return c.NodeOf(redistest.KeySlot(key)) }}
	}},
}

// forEachBackend runs test as a subtest on each backend, with a Redis of its own.
func forEachBackend(t *testing.T, test func(t *testing.T, rb redisBackend)) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) { test(t, be.start(t)) })
	}
}

// cluster is a set of nodes sharing one Redis.
type cluster struct {
	t     *testing.T
	nodes []*node
}

// startCluster starts count nodes named <prefix>-a, <prefix>-b… on redisURL.
func startCluster(t *testing.T, redisURL, prefix string, count int, args ...string) *cluster {
	t.Helper()
	c := &cluster{t: t}
	for i := range count {
		c.nodes = append(c.nodes, startNode(t, fmt.Sprintf("%s-%c", prefix, 'a'+i), append([]string{"-redis-url", redisURL}, args...)...))
	}
	return c
}

// next returns the node of the i-th client (round robin).
func (c *cluster) next(i int) *node { return c.nodes[i%len(c.nodes)] }

// memberToken mints an access token of the test secret for one identity in room.
func memberToken(t *testing.T, room, identity string) string {
	t.Helper()
	keys, err := auth.ParseKeys(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := keys.Sign(auth.Claims{Room: room, Identity: identity, Name: identity, Role: auth.RoleParticipant,
		Expires: time.Now().Add(time.Hour), IssuedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// member is a client of one identity in one room that records every event it receives, in order.
type member struct {
	t        *testing.T
	identity string
	room     string
	token    string
	node     *node
	c        *client.Client
	reply    *protocol.JoinReply

	mu      sync.Mutex
	events  []client.Event // in delivery order: the join reply's events first, then live ones
	changed chan struct{}
	done    chan struct{} // closed when the collector has seen Events close
}

// memberOpts are optional details of joinMember.
type memberOpts struct {
	// Since recovers from a position (another client's, of the same identity) instead of a fresh join.
	Since *protocol.Position
	// Reconnect lets the client reconnect to its node and recover by itself.
	Reconnect bool
}

// joinMember dials n as identity, joins room and starts recording its events. The client is closed when
// the test ends.
func joinMember(t *testing.T, n *node, room, identity string, opts memberOpts) *member {
	t.Helper()
	since := opts.Since
	m := &member{t: t, identity: identity, room: room, token: memberToken(t, room, identity), node: n,
		changed: make(chan struct{}), done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{URL: n.WS(), Token: m.token, Reconnect: opts.Reconnect,
		MaxBackoff: time.Second})
	if err != nil {
		t.Fatalf("%s: dial %s: %v", identity, n.id, err)
	}
	t.Cleanup(func() { m.Close() })
	m.c = c
	go m.collect()
	reply, err := c.Join(ctx, room, client.JoinOptions{Since: since})
	if err != nil {
		t.Fatalf("%s: join %q on %s: %v", identity, room, n.id, err)
	}
	m.reply = reply
	if since != nil && !reply.Recovered {
		t.Fatalf("%s: join on %s since %+v was not a recovery (log at %s/%d)", identity, n.id, *since, reply.Epoch, reply.Offset)
	}
	// The reply's events come first; the collector may have started recording live ones (above the reply's
	// offset) meanwhile.
	var first []client.Event
	for _, ev := range reply.Events {
		first = append(first, client.Event{Room: room, Offset: ev.Offset, Data: ev.Data})
	}
	m.mu.Lock()
	m.events = append(first, m.events...)
	m.mu.Unlock()
	return m
}

func (m *member) collect() {
	defer close(m.done)
	for ev := range m.c.Events() {
		m.mu.Lock()
		m.events = append(m.events, ev)
		close(m.changed)
		m.changed = make(chan struct{})
		m.mu.Unlock()
	}
}

// Close closes the client and waits for its collector.
func (m *member) Close() {
	_ = m.c.Close()
	<-m.done
}

// Events returns a copy of what the member has received so far.
func (m *member) Events() []client.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]client.Event(nil), m.events...)
}

// Position is the client's position in the room.
func (m *member) Position() protocol.Position { return m.c.Position(m.room) }

// waitFor waits until cond holds for the member's events, failing the test after timeout with what
// describe says.
func (m *member) waitFor(timeout time.Duration, cond func([]client.Event) bool, describe func([]client.Event) string) {
	m.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		m.mu.Lock()
		evs, changed := append([]client.Event(nil), m.events...), m.changed
		m.mu.Unlock()
		if cond(evs) {
			return
		}
		select {
		case <-changed:
		case <-m.done:
			if !cond(m.Events()) {
				m.t.Fatalf("%s on %s: client ended (%v) before %s", m.identity, m.node.id, m.c.Err(), describe(m.Events()))
			}
			return
		case <-deadline.C:
			m.t.Fatalf("%s on %s: after %v: %s", m.identity, m.node.id, timeout, describe(m.Events()))
		}
	}
}

// chatLine is one chat message as a member saw it.
type chatLine struct {
	Offset uint64
	Text   string
}

// chats returns the chat messages among evs, in order, and fails the test on an event it cannot decode,
// a Reset or a Left: none of those may happen in these tests.
func chats(t *testing.T, who string, evs []client.Event) []chatLine {
	t.Helper()
	var out []chatLine
	for _, ev := range evs {
		if ev.Reset != nil || ev.Left != nil {
			t.Fatalf("%s: unexpected reset/left: reset %v left %+v", who, ev.Reset != nil, ev.Left)
		}
		if ev.Kind() != protocol.KindChat {
			continue
		}
		e, err := ev.Decode()
		if err != nil {
			t.Fatalf("%s: event %d: %v", who, ev.Offset, err)
		}
		out = append(out, chatLine{ev.Offset, e.Text})
	}
	return out
}

// checkOrder fails unless the offsets of evs strictly increase (no duplicate, no reordering).
func checkOrder(t *testing.T, who string, evs []client.Event) {
	t.Helper()
	var last uint64
	for i, ev := range evs {
		if ev.Reset != nil || ev.Left != nil {
			continue
		}
		if ev.Offset <= last {
			t.Fatalf("%s: event %d has offset %d after %d (duplicate or out of order)", who, i, ev.Offset, last)
		}
		last = ev.Offset
	}
}

// hasOffsets reports whether evs hold every offset of want.
func hasOffsets(evs []client.Event, want map[uint64]string) bool {
	seen := 0
	for _, ev := range evs {
		if _, ok := want[ev.Offset]; ok {
			seen++
		}
	}
	return seen >= len(want)
}

// missing lists (at most 10 of) the offsets of want absent from evs.
func missing(evs []client.Event, want map[uint64]string) string {
	have := map[uint64]bool{}
	for _, ev := range evs {
		have[ev.Offset] = true
	}
	var miss []uint64
	for off := range want {
		if !have[off] {
			miss = append(miss, off)
		}
	}
	if len(miss) > 10 {
		return fmt.Sprintf("%d offsets missing, such as %v", len(miss), miss[:10])
	}
	return fmt.Sprintf("offsets missing: %v", miss)
}
