package rooms

// Review tests: each fails against the code it was written for. Drop into rooms/ and run
// go test -race -run TestReview ./rooms

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/liveforum/liveforum/protocol"
)

// stickySink stands for a connection that is in other rooms too: Kick takes it out of one room (the
// server then forgets that room's session and never calls Leave on it) but the connection stays open.
type stickySink struct {
	memSink
	kmu    sync.Mutex
	kicked int // frames held when the kick came
	kcode  int
}

func (s *stickySink) Kick(_ string, code int, _ string) {
	s.mu.Lock()
	n := len(s.frames)
	s.mu.Unlock()
	s.kmu.Lock()
	if s.kcode == 0 {
		s.kicked, s.kcode = n, code
	}
	s.kmu.Unlock()
}

// When a room's log restarts (new epoch), handle kicks every local session ("room log restarted") but
// leaves them registered: they stay in r.sessions and r.local, keep receiving the room's events, can
// still chat, count as local connections (so the room never expires) — while the server, told by Kick
// that the connection is out of the room, drops its reference and never calls Leave. Every other Kick
// (removal, replacement, room closed) also drops the session.
func TestReviewEpochChangeKickForgetsTheSessions(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.create(Settings{Name: "r"})
	ana := &stickySink{}
	sa, err := e.reg.Join(ctx, person("ana", "participant"), "r", JoinParams{ID: 1, Presence: true}, ana)
	if err != nil {
		t.Fatal(err)
	}
	bo, _, _ := e.join(person("bo", "participant"), "r", JoinParams{ID: 1, Presence: true})

	// The log is lost and restarts (a Redis flush or failover; here the memory broker's RemoveLog, which
	// keeps the room's handler subscribed).
	if err := e.b.RemoveLog(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	mustChat(t, bo, "first message of the new epoch")
	if ana.kcode != protocol.CloseShutdown {
		t.Fatalf("ana was not kicked (code %d)", ana.kcode)
	}
	// A member who joins in the new epoch talks; ana's connection is no longer in the room.
	cy, _, _ := e.join(person("cy", "participant"), "r", JoinParams{ID: 1, Presence: true})
	for i := 0; i < 4; i++ { // past the old epoch's offsets, which the stale liveAfter would skip
		mustChat(t, cy, "more of the new epoch")
	}

	var after []logged
	for _, m := range ana.messages(t)[ana.kicked:] {
		if m.Type == protocol.TypeEvent {
			after = append(after, decodeEvent(t, m.Offset, m.Data))
		}
	}
	if len(after) > 0 {
		t.Errorf("ana's connection was taken out of the room but still received %d of its events: %+v", len(after), after)
	}
	if st, _ := e.reg.Get(ctx, "r"); st.Local != 1 {
		t.Errorf("%d local sessions, want 1 (cy): the kicked ones are still registered", st.Local)
	}
	if _, err := sa.Chat(ctx, "am I still in?", ""); !errors.Is(err, ErrClosed) {
		t.Errorf("kicked session can still chat: err %v", err)
	}
}
