package rooms

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/liveforum/liveforum/broker"
	"github.com/liveforum/liveforum/protocol"
)

// memSink is a Sink that keeps every frame it is given, as a connection's send queue would, and
// remembers how it was closed. Send refuses frames once it is closed, like the server's connections.
type memSink struct {
	mu     sync.Mutex
	frames [][]byte
	closed bool
	code   int
	reason string
}

var _ Sink = (*memSink)(nil)

func (s *memSink) Send(frame []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.frames = append(s.frames, bytes.Clone(frame))
	return true
}

func (s *memSink) Close(code int, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed, s.code, s.reason = true, code, reason
	}
}

// Kick closes the sink: it stands for a connection in one room.
func (s *memSink) Kick(_ string, code int, reason string) { s.Close(code, reason) }

// closeCode returns the code the sink was closed with, 0 while it is open.
func (s *memSink) closeCode() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.code
}

// messages decodes every frame received so far.
func (s *memSink) messages(t *testing.T) []protocol.ServerMessage {
	t.Helper()
	s.mu.Lock()
	frames := append([][]byte(nil), s.frames...)
	s.mu.Unlock()
	out := make([]protocol.ServerMessage, 0, len(frames))
	for _, f := range frames {
		// A frame may carry several messages, one a line.
		err := protocol.SplitFrame(f, func(msg []byte) error {
			m, err := protocol.DecodeServer(msg)
			if err == nil {
				m.Data = bytes.Clone(m.Data)
				out = append(out, m)
			}
			return err
		})
		if err != nil {
			t.Fatalf("undecodable frame %q: %v", f, err)
		}
	}
	return out
}

// logged is an event with its offset, as a sink or the log holds it.
type logged struct {
	Offset uint64
	protocol.Event
}

func decodeEvent(t *testing.T, off uint64, data []byte) logged {
	t.Helper()
	var e protocol.Event
	if err := json.Unmarshal(data, &e); err != nil {
		t.Fatalf("undecodable event %q: %v", data, err)
	}
	return logged{Offset: off, Event: e}
}

// events returns the live events the sink received (everything but the join reply).
func (s *memSink) events(t *testing.T) []logged {
	t.Helper()
	var out []logged
	for _, m := range s.messages(t) {
		if m.Type == protocol.TypeEvent {
			out = append(out, decodeEvent(t, m.Offset, m.Data))
		}
	}
	return out
}

// kinds counts the sink's live events by kind.
func (s *memSink) kinds(t *testing.T) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, e := range s.events(t) {
		n[e.Kind]++
	}
	return n
}

// clock is a fake time source the tests move by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// env is a registry over a real memory broker, with a fake clock and a sweeper that never fires on its own.
type env struct {
	t     *testing.T
	reg   *Registry
	b     *broker.Memory
	clock *clock
}

func newEnv(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	clk := &clock{now: time.Date(2030, 5, 1, 9, 0, 0, 0, time.UTC)}
	cfg := Config{Now: clk.Now, SweepEvery: 24 * time.Hour, Logger: slog.New(slog.DiscardHandler)}
	if mod != nil {
		mod(&cfg)
	}
	b := broker.NewMemory(broker.MemoryOptions{})
	reg := NewRegistry(b, cfg)
	t.Cleanup(func() {
		reg.Close(protocol.CloseShutdown, "test over")
		_ = b.Close()
	})
	return &env{t: t, reg: reg, b: b, clock: clk}
}

// create makes a room and fails the test on error.
func (e *env) create(s Settings) {
	e.t.Helper()
	if _, err := e.reg.Create(context.Background(), s); err != nil {
		e.t.Fatalf("create %q: %v", s.Name, err)
	}
}

func person(id, role string) Actor {
	return Actor{Member: protocol.Member{Identity: id, Name: "Name of " + id, Role: role}, Moderator: role == "moderator"}
}

// join joins and checks that the first frame the sink got is the join reply; it returns the reply.
func (e *env) join(a Actor, room string, p JoinParams) (*Session, *memSink, protocol.JoinReply) {
	e.t.Helper()
	sink := &memSink{}
	s, err := e.reg.Join(context.Background(), a, room, p, sink)
	if err != nil {
		e.t.Fatalf("%s joins %s: %v", a.Member.Identity, room, err)
	}
	return s, sink, replyOf(e.t, sink, p.ID)
}

// replyOf decodes the sink's first frame, which must be the join reply to request id.
func replyOf(t *testing.T, sink *memSink, id uint64) protocol.JoinReply {
	t.Helper()
	msgs := sink.messages(t)
	if len(msgs) == 0 {
		t.Fatal("no join reply queued")
	}
	m := msgs[0]
	if m.Type != protocol.TypeReply || m.ID != id {
		t.Fatalf("first frame is %s id %d, want the join reply to %d: %s", m.Type, m.ID, id, m.Data)
	}
	var r protocol.JoinReply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// logOf returns every event of the room's log, oldest first.
func (e *env) logOf(room string) []logged {
	e.t.Helper()
	h, err := e.b.History(context.Background(), room, broker.HistoryOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	out := make([]logged, 0, len(h.Events))
	for _, ev := range h.Events {
		out = append(out, decodeEvent(e.t, ev.Offset, ev.Data))
	}
	return out
}

// count counts the room's logged events of a kind about an identity (member or sender).
func (e *env) count(room, kind, identity string) int {
	e.t.Helper()
	n := 0
	for _, ev := range e.logOf(room) {
		if ev.Kind != kind {
			continue
		}
		if ev.Member != nil && ev.Member.Identity == identity || ev.From != nil && ev.From.Identity == identity {
			n++
		}
	}
	return n
}

// members returns the room's member count as the registry reports it.
func (e *env) members(room string) int {
	e.t.Helper()
	st, err := e.reg.Get(context.Background(), room)
	if err != nil {
		e.t.Fatalf("get %s: %v", room, err)
	}
	return st.Members
}

func (e *env) sweep(d time.Duration) {
	e.clock.Advance(d)
	e.reg.Sweep(context.Background())
}

func mustChat(t *testing.T, s *Session, text string) uint64 {
	t.Helper()
	off, err := s.Chat(context.Background(), text, "")
	if err != nil {
		t.Fatalf("chat %q: %v", text, err)
	}
	return off
}

func historyTexts(t *testing.T, r protocol.JoinReply) []string {
	t.Helper()
	var out []string
	for _, h := range r.Events {
		e := decodeEvent(t, h.Offset, h.Data)
		if e.Kind != protocol.KindChat {
			t.Fatalf("history holds a %s event at %d", e.Kind, h.Offset)
		}
		out = append(out, e.Text)
	}
	return out
}
