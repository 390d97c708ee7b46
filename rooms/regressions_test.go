package rooms

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/liveforum/liveforum/protocol"
)

// A message made only of control characters is empty once they are dropped: it must be refused, not
// logged as an empty chat message.
func TestChatOfOnlyControlCharactersIsEmpty(t *testing.T) {
	e := newEnv(t, nil)
	e.create(Settings{Name: "r"})
	ana, _, _ := e.join(person("ana", "participant"), "r", JoinParams{})
	for _, text := range []string{"\x00", "\x00\x01\x1b", "\x07 \x07"} {
		if _, err := ana.Chat(context.Background(), text, ""); !errors.Is(err, ErrEmptyText) {
			t.Errorf("chat %q: %v, want ErrEmptyText", text, err)
		}
	}
}

// A join whose reply cannot be queued must not leave a member behind: its join was logged, so its leave
// must be too, and the room must become empty and expire.
func TestFailedJoinReplyLeavesNoGhostMember(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.EmptyTTL = time.Minute })
	ctx := context.Background()
	e.create(Settings{Name: "r"})
	dead := &memSink{}
	dead.Close(protocol.CloseShutdown, "")
	if _, err := e.reg.Join(ctx, person("ana", "participant"), "r", JoinParams{}, dead); err == nil {
		t.Fatal("join with a closed sink succeeded")
	}
	e.sweep(time.Hour) // its leave is due
	e.sweep(time.Hour) // and the room, empty, expires
	if st, err := e.reg.Get(ctx, "r"); err == nil {
		t.Fatalf("room kept alive by a member whose join failed: %d members", st.Members)
	}
}

// Config.HistoryOnJoin < 0 means "no history on join" (documented); a fresh join must then get no events.
func TestHistoryOnJoinNegativeMeansNone(t *testing.T) {
	none := newEnv(t, func(c *Config) { c.HistoryOnJoin = -1 })
	none.create(Settings{Name: "r"})
	s, _, _ := none.join(person("ana", "participant"), "r", JoinParams{})
	mustChat(t, s, "hello")
	if _, _, r := none.join(person("bob", "participant"), "r", JoinParams{}); len(r.Events) != 0 {
		t.Fatalf("HistoryOnJoin<0 still sent %d events", len(r.Events))
	}
}

// A join reply is bounded in bytes: a recovery that would not fit is answered as a fresh join, and the
// recent history is cut to its newest messages that fit. HTML-like text is not inflated by escaping.
func TestJoinReplyIsBoundedInBytes(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxReplyBytes = 2000 })
	e.create(Settings{Name: "r"})
	ana, _, _ := e.join(person("ana", "participant"), "r", JoinParams{Presence: true})
	bobS, _, first := e.join(person("bob", "participant"), "r", JoinParams{Presence: true})
	pos := protocol.Position{Epoch: first.Epoch, Offset: first.Offset}
	bobS.Leave(context.Background(), false)
	var last uint64
	for range 20 {
		last = mustChat(t, ana, strings.Repeat("<b>", 60)) // 180 bytes of text, not 1080 once escaped
	}
	_, _, r := e.join(person("bob", "participant"), "r", JoinParams{Since: &pos, Presence: true})
	if r.Recovered {
		t.Fatalf("a recovery of %d events over a 2000-byte budget was honoured", len(r.Events))
	}
	if n := len(r.Events); n == 0 || n >= 20 || r.Events[n-1].Offset != last {
		t.Fatalf("fresh join history: %d events, last %v (want the newest, fewer than 20)", n, r.Events)
	}
	if !strings.Contains(string(r.Events[0].Data), "<b><b>") {
		t.Fatalf("event text was escaped: %s", r.Events[0].Data)
	}
}
