package rooms

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/liveforum/liveforum/protocol"
)

// Fifty members join, chat and leave one room at once. Every session then holds a join reply followed by
// strictly increasing offsets with no gap among the events it should get, and its history is exactly the
// newest chats as of its reply.
func TestConcurrentJoinChatLeave(t *testing.T) {
	for _, delay := range []time.Duration{0, time.Millisecond} {
		t.Run(fmt.Sprintf("fanout delay %v", delay), func(t *testing.T) {
			testConcurrentJoinChatLeave(t, delay)
		})
	}
}

func testConcurrentJoinChatLeave(t *testing.T, fanoutDelay time.Duration) {
	const n, chats, historyOnJoin = 50, 5, 20
	e := newEnv(t, func(c *Config) { c.HistoryOnJoin = historyOnJoin; c.FanoutDelay = fanoutDelay })
	ctx := context.Background()
	e.create(Settings{Name: "crowd"})

	type member struct {
		sink     *memSink
		reply    protocol.JoinReply
		presence bool
		stayed   bool
	}
	members := make([]*member, n)
	stop := make(chan struct{})
	var side sync.WaitGroup
	side.Add(1)
	go func() { // the sweeper and the admin API run meanwhile
		defer side.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			e.reg.Sweep(ctx)
			if _, err := e.reg.List(ctx); err != nil {
				t.Error(err)
			}
		}
	}()
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := &member{sink: &memSink{}, presence: i%5 != 0, stayed: i%3 != 0}
			members[i] = m
			s, err := e.reg.Join(ctx, person(fmt.Sprintf("m%02d", i), "participant"), "crowd",
				JoinParams{ID: uint64(i + 1), Presence: m.presence}, m.sink)
			if err != nil {
				t.Errorf("join %d: %v", i, err)
				return
			}
			for k := range chats {
				if _, err := s.Chat(ctx, fmt.Sprintf("m%02d says %d", i, k), ""); err != nil {
					t.Errorf("chat %d/%d: %v", i, k, err)
				}
			}
			if !m.stayed {
				s.Leave(ctx, i%2 == 0)
			}
		}()
	}
	wg.Wait()
	close(stop)
	side.Wait()
	if t.Failed() {
		return
	}

	log := e.logOf("crowd")
	top := log[len(log)-1].Offset
	should := func(m *member, ev logged) bool {
		return m.presence || ev.Kind == protocol.KindChat
	}
	// With a fan-out delay the last batch goes out on a timer: wait until every member still in the room
	// has the last event it should get.
	deadline := time.Now().Add(5 * time.Second)
	for _, m := range members {
		if !m.stayed {
			continue
		}
		var want uint64
		for _, ev := range log {
			if should(m, ev) {
				want = ev.Offset
			}
		}
		for {
			evs := m.sink.events(t)
			if len(evs) > 0 && evs[len(evs)-1].Offset >= want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("a member never got the last event %d", want)
			}
			time.Sleep(time.Millisecond)
		}
	}

	stayers := 0
	for i, m := range members {
		m.reply = replyOf(t, m.sink, uint64(i+1))
		if m.stayed {
			stayers++
		}
		// History: the newest chats up to the reply's offset.
		var chatsBefore []uint64
		for _, ev := range log {
			if ev.Kind == protocol.KindChat && ev.Offset <= m.reply.Offset {
				chatsBefore = append(chatsBefore, ev.Offset)
			}
		}
		wantHist := chatsBefore[max(0, len(chatsBefore)-historyOnJoin):]
		var gotHist []uint64
		for _, h := range m.reply.Events {
			gotHist = append(gotHist, h.Offset)
		}
		if !slices.Equal(gotHist, wantHist) && !(len(gotHist) == 0 && len(wantHist) == 0) {
			t.Errorf("m%02d: history %v, want %v (reply at %d)", i, gotHist, wantHist, m.reply.Offset)
		}
		// Live events: every event it should get after its reply, in order, up to the last it received
		// (everything, for those who stayed).
		var got []uint64
		for _, ev := range m.sink.events(t) {
			got = append(got, ev.Offset)
		}
		last := m.reply.Offset
		if len(got) > 0 {
			last = got[len(got)-1]
		}
		if m.stayed && last < top && m.presence {
			t.Errorf("m%02d stayed but its last event is %d of %d", i, last, top)
		}
		var want []uint64
		for _, ev := range log {
			if ev.Offset > m.reply.Offset && ev.Offset <= last && should(m, ev) {
				want = append(want, ev.Offset)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("m%02d (presence %v, stayed %v): live offsets %v, want %v (reply at %d)", i, m.presence, m.stayed, got, want, m.reply.Offset)
		}
	}
	if got := e.members("crowd"); got != stayers {
		t.Errorf("%d members, %d stayed", got, stayers)
	}
	nchat := 0
	for _, ev := range log {
		if ev.Kind == protocol.KindChat {
			nchat++
		}
	}
	if nchat != n*chats {
		t.Errorf("%d chats logged, want %d", nchat, n*chats)
	}
}
