package broker

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitTimeout bounds every wait for an asynchronous delivery. It is a deadline, not a sleep: a passing test
// never waits for it.
const waitTimeout = 10 * time.Second

// runContract is the test suite every Broker implementation must pass. newBroker returns a fresh broker for
// one subtest and arranges (with t.Cleanup) to close it; a broker may be closed twice, the second Close's
// error being ignored by the factory. Brokers may share a backing store (one redis-server for the whole
// run): every subtest uses its own room and record names, and asserts nothing about other rooms.
//
// Deliveries may be asynchronous: the suite waits for them with a deadline and never assumes a handler has
// run when Append returns.
func runContract(t *testing.T, newBroker func(t *testing.T) Broker) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, b Broker)
	}{
		{"AppendOffsets", testAppendOffsets},
		{"EmptyLogEpoch", testEmptyLogEpoch},
		{"DeliveryInOrder", testDeliveryInOrder},
		{"ConcurrentAppends", testConcurrentAppends},
		{"HistorySince", testHistorySince},
		{"HistorySinceGone", testHistorySinceGone},
		{"HistoryLimitMatch", testHistoryLimitMatch},
		{"Unsubscribe", testUnsubscribe},
		{"SubscribeReplaces", testSubscribeReplaces},
		{"RemoveLog", testRemoveLog},
		{"RoomRecords", testRoomRecords},
		{"AppendIfState", testAppendIfState},
		{"StateAfterRemoveLog", testStateAfterRemoveLog},
		{"RemoveLogIf", testRemoveLogIf},
		{"ConcurrentAppendIf", testConcurrentAppendIf},
		{"Heartbeats", testHeartbeats},
		{"Leases", testLeases},
		{"Inbox", testInbox},
		{"Close", testClose},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newBroker(t))
		})
	}
}

// uniqueName returns a name no other subtest or run uses, made of characters valid in room names and
// Redis keys.
func uniqueName(t *testing.T, what string) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	base := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, t.Name())
	suffix := "-" + what + "-" + hex.EncodeToString(b[:])
	if keep := 64 - len(suffix); len(base) > keep {
		base = base[len(base)-keep:]
	}
	return base + suffix
}

// delivery is one call of a handler.
type delivery struct {
	epoch string
	ev    Event
}

// sink is a Handler that queues what it receives, so tests can wait for deliveries with a deadline. It
// also checks that the broker never calls it concurrently.
type sink struct {
	ch       chan delivery
	inflight atomic.Int32
	overlap  atomic.Bool // the handler was called while another call was running
	overflow atomic.Bool // more deliveries than the queue holds
}

func newSink(capacity int) *sink { return &sink{ch: make(chan delivery, capacity)} }

func (s *sink) handle(epoch string, ev Event) {
	if s.inflight.Add(1) != 1 {
		s.overlap.Store(true)
	}
	defer s.inflight.Add(-1)
	ev.Data = bytes.Clone(ev.Data)
	select {
	case s.ch <- delivery{epoch, ev}:
	default:
		s.overflow.Store(true) // never block the broker; the test fails below
	}
}

// next waits for the next delivery.
func (s *sink) next(t *testing.T) delivery {
	t.Helper()
	s.check(t)
	select {
	case d := <-s.ch:
		return d
	case <-time.After(waitTimeout):
		t.Fatalf("no delivery within %v", waitTimeout)
		return delivery{}
	}
}

// nothingQueued fails if the handler received something not yet consumed.
func (s *sink) nothingQueued(t *testing.T) {
	t.Helper()
	s.check(t)
	select {
	case d := <-s.ch:
		t.Fatalf("unexpected delivery: epoch %q offset %d data %q", d.epoch, d.ev.Offset, d.ev.Data)
	default:
	}
}

func (s *sink) check(t *testing.T) {
	t.Helper()
	if s.overlap.Load() {
		t.Fatal("handler called concurrently for one room")
	}
	if s.overflow.Load() {
		t.Fatal("handler received more deliveries than the test expected")
	}
}

func mustAppend(t *testing.T, b Broker, room, data string) Position {
	t.Helper()
	pos, err := b.Append(t.Context(), room, []byte(data))
	if err != nil {
		t.Fatalf("Append(%q, %q): %v", room, data, err)
	}
	return pos
}

func mustSubscribe(t *testing.T, b Broker, room string, h Handler) {
	t.Helper()
	if err := b.Subscribe(t.Context(), room, h); err != nil {
		t.Fatalf("Subscribe(%q): %v", room, err)
	}
}

// eventsString renders events compactly for failure messages and comparisons.
func eventsString(evs []Event) string {
	var sb strings.Builder
	for i, ev := range evs {
		if i > 0 {
			sb.WriteByte(' ')
		}
		fmt.Fprintf(&sb, "%d:%s", ev.Offset, ev.Data)
	}
	return sb.String()
}

func testAppendOffsets(t *testing.T, b Broker) {
	room := uniqueName(t, "room")
	var epoch string
	for i := uint64(1); i <= 5; i++ {
		pos := mustAppend(t, b, room, fmt.Sprintf("e%d", i))
		if pos.Offset != i {
			t.Fatalf("append %d: offset %d, want %d", i, pos.Offset, i)
		}
		if pos.Epoch == "" {
			t.Fatalf("append %d: empty epoch", i)
		}
		if i == 1 {
			epoch = pos.Epoch
		} else if pos.Epoch != epoch {
			t.Fatalf("append %d: epoch %q, want %q", i, pos.Epoch, epoch)
		}
	}
	// Another room has its own log.
	if pos := mustAppend(t, b, uniqueName(t, "other"), "x"); pos.Offset != 1 {
		t.Fatalf("first append to another room: offset %d, want 1", pos.Offset)
	}
	h, err := b.History(t.Context(), room, HistoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := (Position{Epoch: epoch, Offset: 5}); h.Top != want {
		t.Fatalf("History top %+v, want %+v", h.Top, want)
	}
	if got, want := eventsString(h.Events), "1:e1 2:e2 3:e3 4:e4 5:e5"; got != want {
		t.Fatalf("History events %s, want %s", got, want)
	}
}

// testEmptyLogEpoch: a room that has never been appended to reports offset 0 and the epoch its first
// Append will use, so a member that joins an empty room can recover from that position.
func testEmptyLogEpoch(t *testing.T, b Broker) {
	room := uniqueName(t, "room")
	h, err := b.History(t.Context(), room, HistoryOptions{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if h.Top.Offset != 0 || len(h.Events) != 0 {
		t.Fatalf("History of a new room: top %+v, %d events; want offset 0, none", h.Top, len(h.Events))
	}
	pos := mustAppend(t, b, room, "first")
	if pos.Epoch != h.Top.Epoch {
		t.Fatalf("first Append epoch %q, History of the empty log said %q", pos.Epoch, h.Top.Epoch)
	}
	h2, err := b.History(t.Context(), room, HistoryOptions{Since: &h.Top})
	if err != nil {
		t.Fatalf("History since the empty log's top: %v", err)
	}
	if got, want := eventsString(h2.Events), "1:first"; got != want {
		t.Fatalf("History since the empty log's top: %s, want %s", got, want)
	}
}

func testDeliveryInOrder(t *testing.T, b Broker) {
	room := uniqueName(t, "room")
	s := newSink(64)
	mustSubscribe(t, b, room, s.handle)
	var want []Position
	for i := 1; i <= 20; i++ {
		want = append(want, mustAppend(t, b, room, fmt.Sprintf("e%d", i)))
	}
	for i, pos := range want {
		d := s.next(t)
		if d.epoch != pos.Epoch || d.ev.Offset != pos.Offset || string(d.ev.Data) != fmt.Sprintf("e%d", i+1) {
			t.Fatalf("delivery %d: epoch %q offset %d data %q; want %q %d %q",
				i, d.epoch, d.ev.Offset, d.ev.Data, pos.Epoch, pos.Offset, fmt.Sprintf("e%d", i+1))
		}
	}
	// Exactly once: the next delivery is the next event, not a repeat.
	mustAppend(t, b, room, "sentinel")
	if d := s.next(t); d.ev.Offset != 21 || string(d.ev.Data) != "sentinel" {
		t.Fatalf("after 20 events: delivery %d %q, want 21 \"sentinel\"", d.ev.Offset, d.ev.Data)
	}
	s.nothingQueued(t)
}

func testConcurrentAppends(t *testing.T, b Broker) {
	const writers, each = 8, 200
	const total = writers * each
	room := uniqueName(t, "room")
	s := newSink(total + 16)
	mustSubscribe(t, b, room, s.handle)

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		appended = map[uint64]string{} // offset → data, from Append's answers
		epochs   = map[string]bool{}
		errs     []error
	)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				data := fmt.Sprintf("w%d-%d", w, i)
				pos, err := b.Append(t.Context(), room, []byte(data))
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					if prev, dup := appended[pos.Offset]; dup {
						errs = append(errs, fmt.Errorf("offset %d given to %q and %q", pos.Offset, prev, data))
					}
					appended[pos.Offset] = data
					epochs[pos.Epoch] = true
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if len(epochs) != 1 {
		t.Fatalf("appends saw %d epochs, want 1", len(epochs))
	}
	for off := uint64(1); off <= total; off++ {
		if _, ok := appended[off]; !ok {
			t.Fatalf("no Append returned offset %d", off)
		}
	}

	seen := map[string]bool{}
	for want := uint64(1); want <= total; want++ {
		d := s.next(t)
		if d.ev.Offset != want {
			t.Fatalf("delivery %d has offset %d: not strictly consecutive", want, d.ev.Offset)
		}
		if !epochs[d.epoch] {
			t.Fatalf("delivery %d has epoch %q, appends had %v", want, d.epoch, epochs)
		}
		if data := string(d.ev.Data); data != appended[want] {
			t.Fatalf("delivery %d has data %q, Append of %q returned that offset", want, data, appended[want])
		}
		seen[string(d.ev.Data)] = true
	}
	for w := range writers {
		for i := range each {
			if data := fmt.Sprintf("w%d-%d", w, i); !seen[data] {
				t.Fatalf("%q was appended but never delivered", data)
			}
		}
	}
	mustAppend(t, b, room, "sentinel")
	if d := s.next(t); d.ev.Offset != total+1 || string(d.ev.Data) != "sentinel" {
		t.Fatalf("after %d events: delivery %d %q, want %d \"sentinel\"", total, d.ev.Offset, d.ev.Data, total+1)
	}
	s.nothingQueued(t)
}

func testHistorySince(t *testing.T, b Broker) {
	room := uniqueName(t, "room")
	var top Position
	for i := 1; i <= 5; i++ {
		top = mustAppend(t, b, room, fmt.Sprintf("e%d", i))
	}
	all := "1:e1 2:e2 3:e3 4:e4 5:e5"
	tests := []struct {
		since uint64
		limit int
		want  string
	}{
		{0, 0, all},
		{1, 0, "2:e2 3:e3 4:e4 5:e5"},
		{3, 0, "4:e4 5:e5"},
		{4, 0, "5:e5"},
		{5, 0, ""}, // up to date
		{2, 3, "3:e3 4:e4 5:e5"},
		{0, 5, all},
		{5, 1, ""},
	}
	for _, tt := range tests {
		h, err := b.History(t.Context(), room, HistoryOptions{Since: &Position{Epoch: top.Epoch, Offset: tt.since}, Limit: tt.limit})
		if err != nil {
			t.Errorf("since %d limit %d: %v", tt.since, tt.limit, err)
			continue
		}
		if h.Top != top {
			t.Errorf("since %d limit %d: top %+v, want %+v", tt.since, tt.limit, h.Top, top)
		}
		if got := eventsString(h.Events); got != tt.want {
			t.Errorf("since %d limit %d: events %q, want %q", tt.since, tt.limit, got, tt.want)
		}
	}
}

func testHistorySinceGone(t *testing.T, b Broker) {
	room := uniqueName(t, "room")
	var top Position
	for i := 1; i <= 5; i++ {
		top = mustAppend(t, b, room, fmt.Sprintf("e%d", i))
	}
	tests := []struct {
		name  string
		room  string
		since Position
		limit int
	}{
		{"wrong epoch", room, Position{Epoch: top.Epoch + "x", Offset: 3}, 0},
		{"empty epoch", room, Position{Offset: 3}, 0},
		{"beyond top", room, Position{Epoch: top.Epoch, Offset: 6}, 0},
		{"far beyond top", room, Position{Epoch: top.Epoch, Offset: 1 << 62}, 0},
		// Limit is a safety cap: more missed events than Limit cannot be served.
		{"more missed than limit", room, Position{Epoch: top.Epoch, Offset: 1}, 3},
		{"all missed, limit 1", room, Position{Epoch: top.Epoch, Offset: 0}, 1},
		{"another room's epoch", uniqueName(t, "other"), top, 0},
	}
	for _, tt := range tests {
		h, err := b.History(t.Context(), tt.room, HistoryOptions{Since: &tt.since, Limit: tt.limit})
		if !errors.Is(err, ErrHistoryGone) {
			t.Errorf("%s: History since %+v limit %d: events %q, err %v; want ErrHistoryGone",
				tt.name, tt.since, tt.limit, eventsString(h.Events), err)
		}
	}
}

func testHistoryLimitMatch(t *testing.T, b Broker) {
	room := uniqueName(t, "room")
	for i := 1; i <= 10; i++ {
		kind := "join"
		if i%2 == 0 {
			kind = "chat"
		}
		mustAppend(t, b, room, fmt.Sprintf("%s%d", kind, i))
	}
	isChat := func(data []byte) bool { return bytes.HasPrefix(data, []byte("chat")) }
	never := func([]byte) bool { return false }
	tests := []struct {
		name  string
		limit int
		match func([]byte) bool
		want  string
	}{
		{"limit", 3, nil, "8:chat8 9:join9 10:chat10"},
		{"limit 1", 1, nil, "10:chat10"},
		{"limit above size of log", 100, nil, "1:join1 2:chat2 3:join3 4:chat4 5:join5 6:chat6 7:join7 8:chat8 9:join9 10:chat10"},
		{"match", 3, isChat, "6:chat6 8:chat8 10:chat10"},
		{"match fewer than limit", 100, isChat, "2:chat2 4:chat4 6:chat6 8:chat8 10:chat10"},
		{"match none", 5, never, ""},
	}
	for _, tt := range tests {
		h, err := b.History(t.Context(), room, HistoryOptions{Limit: tt.limit, Match: tt.match})
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got := eventsString(h.Events); got != tt.want {
			t.Errorf("%s: events %q, want %q", tt.name, got, tt.want)
		}
		if h.Top.Offset != 10 {
			t.Errorf("%s: top offset %d, want 10", tt.name, h.Top.Offset)
		}
	}
}

func testUnsubscribe(t *testing.T, b Broker) {
	room := uniqueName(t, "room")
	s1 := newSink(16)
	mustSubscribe(t, b, room, s1.handle)
	mustAppend(t, b, room, "before")
	if d := s1.next(t); string(d.ev.Data) != "before" {
		t.Fatalf("delivery %q, want \"before\"", d.ev.Data)
	}
	if err := b.Unsubscribe(t.Context(), room); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, b, room, "unsubscribed")

	// Subscribe again with another handler and wait until it has the next event: anything the first
	// handler would wrongly get has been delivered by then, since a room's events go out in order.
	s2 := newSink(16)
	mustSubscribe(t, b, room, s2.handle)
	mustAppend(t, b, room, "resubscribed")
	for {
		d := s2.next(t)
		if string(d.ev.Data) == "resubscribed" {
			break
		}
		if string(d.ev.Data) != "unsubscribed" { // may be filled in; nothing else may arrive
			t.Fatalf("second handler got %d %q", d.ev.Offset, d.ev.Data)
		}
	}
	s1.nothingQueued(t)

	// Unsubscribing a room nobody subscribed to is not an error.
	if err := b.Unsubscribe(t.Context(), uniqueName(t, "never")); err != nil {
		t.Fatalf("Unsubscribe of an unknown room: %v", err)
	}
}

func testSubscribeReplaces(t *testing.T, b Broker) {
	room := uniqueName(t, "room")
	s1, s2 := newSink(16), newSink(16)
	mustSubscribe(t, b, room, s1.handle)
	mustAppend(t, b, room, "one")
	if d := s1.next(t); string(d.ev.Data) != "one" {
		t.Fatalf("first handler got %q, want \"one\"", d.ev.Data)
	}
	mustSubscribe(t, b, room, s2.handle)
	mustAppend(t, b, room, "two")
	for {
		d := s2.next(t)
		if string(d.ev.Data) == "two" {
			if d.ev.Offset != 2 {
				t.Fatalf("second handler got \"two\" at offset %d, want 2", d.ev.Offset)
			}
			break
		}
		if string(d.ev.Data) != "one" {
			t.Fatalf("second handler got %d %q", d.ev.Offset, d.ev.Data)
		}
	}
	s1.nothingQueued(t)
}

func testRemoveLog(t *testing.T, b Broker) {
	room := uniqueName(t, "room")
	s := newSink(16)
	mustSubscribe(t, b, room, s.handle)
	var old Position
	for i := 1; i <= 3; i++ {
		old = mustAppend(t, b, room, fmt.Sprintf("old%d", i))
	}
	for range 3 {
		s.next(t)
	}
	if err := b.RemoveLog(t.Context(), room); err != nil {
		t.Fatal(err)
	}
	if h, err := b.History(t.Context(), room, HistoryOptions{Since: &old}); !errors.Is(err, ErrHistoryGone) {
		t.Fatalf("History since the removed log's top: events %q, err %v; want ErrHistoryGone", eventsString(h.Events), err)
	}
	if h, err := b.History(t.Context(), room, HistoryOptions{Since: &Position{Epoch: old.Epoch}}); !errors.Is(err, ErrHistoryGone) {
		t.Fatalf("History since the removed log's start: events %q, err %v; want ErrHistoryGone", eventsString(h.Events), err)
	}

	first := mustAppend(t, b, room, "new1")
	if first.Offset != 1 || first.Epoch == old.Epoch || first.Epoch == "" {
		t.Fatalf("first Append after RemoveLog: %+v; want offset 1 in a new epoch (old %q)", first, old.Epoch)
	}
	if pos := mustAppend(t, b, room, "new2"); pos != (Position{Epoch: first.Epoch, Offset: 2}) {
		t.Fatalf("second Append after RemoveLog: %+v, want offset 2 epoch %q", pos, first.Epoch)
	}
	// The subscription outlives the log: the room's handler sees the new epoch.
	for i := uint64(1); i <= 2; i++ {
		d := s.next(t)
		if d.epoch != first.Epoch || d.ev.Offset != i || string(d.ev.Data) != fmt.Sprintf("new%d", i) {
			t.Fatalf("delivery after RemoveLog: %q %d %q; want %q %d %q", d.epoch, d.ev.Offset, d.ev.Data, first.Epoch, i, fmt.Sprintf("new%d", i))
		}
	}
	h, err := b.History(t.Context(), room, HistoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := eventsString(h.Events), "1:new1 2:new2"; got != want {
		t.Fatalf("History after RemoveLog: %s, want %s", got, want)
	}
	if h, err := b.History(t.Context(), room, HistoryOptions{Since: &old}); !errors.Is(err, ErrHistoryGone) {
		t.Fatalf("History since an old position in the new log: events %q, err %v; want ErrHistoryGone", eventsString(h.Events), err)
	}

	if err := b.RemoveLog(t.Context(), uniqueName(t, "never")); err != nil {
		t.Fatalf("RemoveLog of a room without a log: %v", err)
	}
}

func testRoomRecords(t *testing.T, b Broker) {
	ctx := t.Context()
	a, c, missing := uniqueName(t, "a"), uniqueName(t, "c"), uniqueName(t, "missing")

	if r, err := b.LoadRoom(ctx, missing); !errors.Is(err, ErrNotFound) {
		t.Fatalf("LoadRoom of a missing record: %q, %v; want ErrNotFound", r, err)
	}
	rec := []byte(`{"title":"first"}`)
	if err := b.SaveRoom(ctx, a, rec); err != nil {
		t.Fatal(err)
	}
	rec[2] = 'X' // the broker keeps its own copy
	if err := b.SaveRoom(ctx, c, []byte(`{"title":"c"}`)); err != nil {
		t.Fatal(err)
	}
	got, err := b.LoadRoom(ctx, a)
	if err != nil || string(got) != `{"title":"first"}` {
		t.Fatalf("LoadRoom: %q, %v", got, err)
	}
	got[2] = 'Y' // and hands out copies
	if got, err := b.LoadRoom(ctx, a); err != nil || string(got) != `{"title":"first"}` {
		t.Fatalf("LoadRoom after changing an earlier result: %q, %v", got, err)
	}

	if err := b.SaveRoom(ctx, a, []byte(`{"title":"second"}`)); err != nil {
		t.Fatal(err)
	}
	if got, err := b.LoadRoom(ctx, a); err != nil || string(got) != `{"title":"second"}` {
		t.Fatalf("LoadRoom after replacing: %q, %v", got, err)
	}

	list, err := b.ListRooms(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Other tests may share the store: only our records are checked.
	if string(list[a]) != `{"title":"second"}` || string(list[c]) != `{"title":"c"}` {
		t.Fatalf("ListRooms: %s=%q %s=%q", a, list[a], c, list[c])
	}
	if _, ok := list[missing]; ok {
		t.Fatalf("ListRooms lists %s, never saved", missing)
	}

	if err := b.DeleteRoom(ctx, a); err != nil {
		t.Fatal(err)
	}
	if r, err := b.LoadRoom(ctx, a); !errors.Is(err, ErrNotFound) {
		t.Fatalf("LoadRoom after DeleteRoom: %q, %v; want ErrNotFound", r, err)
	}
	if err := b.DeleteRoom(ctx, a); err != nil {
		t.Fatalf("DeleteRoom of a deleted record: %v", err)
	}
	list, err = b.ListRooms(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := list[a]; ok {
		t.Fatalf("ListRooms still lists %s after DeleteRoom", a)
	}
	if string(list[c]) != `{"title":"c"}` {
		t.Fatalf("ListRooms lost %s: %q", c, list[c])
	}
	if err := b.DeleteRoom(ctx, c); err != nil {
		t.Fatal(err)
	}
}

func testClose(t *testing.T, b Broker) {
	room := uniqueName(t, "room")
	mustAppend(t, b, room, "x")
	if err := b.SaveRoom(t.Context(), room, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx := t.Context()
	calls := []struct {
		name string
		call func() error
	}{
		{"Append", func() error { _, err := b.Append(ctx, room, []byte("y")); return err }},
		{"History", func() error { _, err := b.History(ctx, room, HistoryOptions{}); return err }},
		{"History since", func() error {
			_, err := b.History(ctx, room, HistoryOptions{Since: &Position{Epoch: "e", Offset: 1}})
			return err
		}},
		{"Subscribe", func() error { return b.Subscribe(ctx, room, func(string, Event) {}) }},
		{"Unsubscribe", func() error { return b.Unsubscribe(ctx, room) }},
		{"RemoveLog", func() error { return b.RemoveLog(ctx, room) }},
		{"SaveRoom", func() error { return b.SaveRoom(ctx, room, []byte("{}")) }},
		{"LoadRoom", func() error { _, err := b.LoadRoom(ctx, room); return err }},
		{"ListRooms", func() error { _, err := b.ListRooms(ctx); return err }},
		{"DeleteRoom", func() error { return b.DeleteRoom(ctx, room) }},
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", c.name, err)
		}
	}
}

func mustState(t *testing.T, b Broker, room string) (Position, string) {
	t.Helper()
	pos, st, err := b.State(t.Context(), room)
	if err != nil {
		t.Fatalf("State(%q): %v", room, err)
	}
	keys := make([]string, 0, len(st))
	for k, v := range st {
		keys = append(keys, k+"="+string(v))
	}
	slices.Sort(keys)
	return pos, strings.Join(keys, " ")
}

// testAppendIfState: each condition decides whether the event and the state update happen, both or
// neither, and State reads the state with the position it is as of.
func testAppendIfState(t *testing.T, b Broker) {
	room := uniqueName(t, "room")
	s := newSink(16)
	mustSubscribe(t, b, room, s.handle)
	pos0, st := mustState(t, b, room)
	if pos0.Offset != 0 || pos0.Epoch == "" || st != "" {
		t.Fatalf("State of a new room: %+v %q; want offset 0 with an epoch, empty", pos0, st)
	}
	steps := []struct {
		name string
		u    Update
		ok   bool
		st   string // state after the step
	}{
		{"set a", Update{Key: "a", Value: []byte("1")}, true, "a=1"},
		{"a == 2 fails", Update{Key: "a", Value: []byte("x"), Cond: IfEqual, Expect: []byte("2")}, false, "a=1"},
		{"a == 1", Update{Key: "a", Value: []byte("2"), Cond: IfEqual, Expect: []byte("1")}, true, "a=2"},
		{"a != 2 fails", Update{Key: "a", Value: []byte("x"), Cond: IfNotEqual, Expect: []byte("2")}, false, "a=2"},
		{"b != 2 (absent)", Update{Key: "b", Value: []byte("2"), Cond: IfNotEqual, Expect: []byte("2")}, true, "a=2 b=2"},
		{"c present fails", Update{Key: "c", Cond: IfPresent}, false, "a=2 b=2"},
		{"c == empty fails (absent)", Update{Key: "c", Value: []byte("1"), Cond: IfEqual, Expect: []byte{}}, false, "a=2 b=2"},
		{"delete b if present", Update{Key: "b", Cond: IfPresent}, true, "a=2"},
		{"no update", Update{}, true, "a=2"},
		{"empty value is a value", Update{Key: "e", Value: []byte{}}, true, "a=2 e="},
	}
	var offset uint64
	for _, step := range steps {
		data := "ev:" + step.name
		pos, ok, err := b.AppendIf(t.Context(), room, []byte(data), step.u)
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if ok != step.ok {
			t.Fatalf("%s: ok %v, want %v", step.name, ok, step.ok)
		}
		if ok {
			offset++
			if d := s.next(t); d.ev.Offset != offset || string(d.ev.Data) != data {
				t.Fatalf("%s: delivered %d %q, want %d %q", step.name, d.ev.Offset, d.ev.Data, offset, data)
			}
		}
		if pos.Offset != offset || pos.Epoch != pos0.Epoch {
			t.Fatalf("%s: position %+v, want offset %d epoch %q", step.name, pos, offset, pos0.Epoch)
		}
		if p, st := mustState(t, b, room); st != step.st || p != pos {
			t.Fatalf("%s: state %q at %+v, want %q at %+v", step.name, st, p, step.st, pos)
		}
	}
	s.nothingQueued(t)
	s.check(t)
}

// testStateAfterRemoveLog: the state belongs to the log; a new epoch starts empty.
func testStateAfterRemoveLog(t *testing.T, b Broker) {
	room := uniqueName(t, "room")
	if _, ok, err := b.AppendIf(t.Context(), room, []byte("x"), Update{Key: "k", Value: []byte("v")}); err != nil || !ok {
		t.Fatalf("AppendIf: %v %v", ok, err)
	}
	old, st := mustState(t, b, room)
	if st != "k=v" {
		t.Fatalf("state %q, want k=v", st)
	}
	if err := b.RemoveLog(t.Context(), room); err != nil {
		t.Fatal(err)
	}
	pos, st := mustState(t, b, room)
	if st != "" || pos.Offset != 0 || pos.Epoch == old.Epoch {
		t.Fatalf("state after RemoveLog: %q at %+v; want empty at offset 0 of a new epoch", st, pos)
	}
	if p := mustAppend(t, b, room, "y"); p.Epoch != pos.Epoch || p.Offset != 1 {
		t.Fatalf("Append after State of the new log: %+v, want offset 1 of %q", p, pos.Epoch)
	}
}

// testRemoveLogIf: a conditional removal deletes the log only if nothing was appended since the position
// it is given and the state is empty, or if the log holds nothing at all.
func testRemoveLogIf(t *testing.T, b Broker) {
	room := uniqueName(t, "room")
	s := newSink(8)
	mustSubscribe(t, b, room, s.handle)
	if ok, err := b.RemoveLogIf(t.Context(), room, Position{Epoch: "no-such-epoch"}); err != nil || !ok {
		t.Fatalf("RemoveLogIf of a room without a log: %v %v, want true", ok, err)
	}
	if _, ok, err := b.AppendIf(t.Context(), room, []byte("join"), Update{Key: "m", Value: []byte("a")}); err != nil || !ok {
		t.Fatalf("AppendIf: %v %v", ok, err)
	}
	if _, ok, err := b.AppendIf(t.Context(), room, []byte("leave"), Update{Key: "m", Cond: IfPresent}); err != nil || !ok {
		t.Fatalf("AppendIf: %v %v", ok, err)
	}
	at, st := mustState(t, b, room)
	if st != "" || at.Offset != 2 {
		t.Fatalf("state %q at %+v, want empty at offset 2", st, at)
	}
	// Someone joins after the position was read: the log stays.
	if _, ok, err := b.AppendIf(t.Context(), room, []byte("join again"), Update{Key: "m", Value: []byte("b")}); err != nil || !ok {
		t.Fatalf("AppendIf: %v %v", ok, err)
	}
	if ok, err := b.RemoveLogIf(t.Context(), room, at); err != nil || ok {
		t.Fatalf("RemoveLogIf after an append: %v %v, want false", ok, err)
	}
	// Still someone in the state, at the current position: the log stays.
	at, st = mustState(t, b, room)
	if ok, err := b.RemoveLogIf(t.Context(), room, at); err != nil || ok {
		t.Fatalf("RemoveLogIf with state %q: %v %v, want false", st, ok, err)
	}
	if h, err := b.History(t.Context(), room, HistoryOptions{}); err != nil || len(h.Events) != 3 || h.Top != at {
		t.Fatalf("log after refused removals: %d events at %+v, want 3 at %+v", len(h.Events), h.Top, at)
	}
	if _, ok, err := b.AppendIf(t.Context(), room, []byte("leave again"), Update{Key: "m", Cond: IfPresent}); err != nil || !ok {
		t.Fatalf("AppendIf: %v %v", ok, err)
	}
	// The four appends are delivered (before the log goes: a subscriber that has not caught up with a log
	// when it is removed goes on with the next one, as after any loss of the log).
	for range 4 {
		s.next(t)
	}
	at, _ = mustState(t, b, room)
	if ok, err := b.RemoveLogIf(t.Context(), room, at); err != nil || !ok {
		t.Fatalf("RemoveLogIf of an unchanged log with an empty state: %v %v, want true", ok, err)
	}
	if pos, _ := mustState(t, b, room); pos.Epoch == at.Epoch || pos.Offset != 0 {
		t.Fatalf("after RemoveLogIf the log is at %+v, want offset 0 of a new epoch", pos)
	}
	s.nothingQueued(t)
}

// testConcurrentAppendIf: of many nodes racing to log the same conditional change, exactly one does.
func testConcurrentAppendIf(t *testing.T, b Broker) {
	room := uniqueName(t, "room")
	if _, ok, err := b.AppendIf(t.Context(), room, []byte("join"), Update{Key: "m", Value: []byte("node-a")}); err != nil || !ok {
		t.Fatalf("AppendIf: %v %v", ok, err)
	}
	var won atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, ok, err := b.AppendIf(t.Context(), room, []byte(fmt.Sprintf("leave by %d", i)),
				Update{Key: "m", Cond: IfEqual, Expect: []byte("node-a")})
			if err != nil {
				t.Error(err)
			}
			if ok {
				won.Add(1)
			}
		}()
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d conditional appends succeeded, want exactly 1", won.Load())
	}
	h, err := b.History(t.Context(), room, HistoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Events) != 2 || h.Top.Offset != 2 {
		t.Fatalf("log %s, want the join and one leave", eventsString(h.Events))
	}
}

func testHeartbeats(t *testing.T, b Broker) {
	a, c := uniqueName(t, "node-a"), uniqueName(t, "node-c")
	if err := b.Heartbeat(t.Context(), a, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := b.Heartbeat(t.Context(), c, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	never := uniqueName(t, "node-never")
	alive, err := b.Alive(t.Context(), []string{a, c, never})
	if err != nil {
		t.Fatal(err)
	}
	if !alive[a] || !alive[c] || alive[never] {
		t.Fatalf("alive %v; want %s and %s only", alive, a, c)
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		alive, err := b.Alive(t.Context(), []string{a, c})
		if err != nil {
			t.Fatal(err)
		}
		if !alive[a] {
			t.Fatalf("%s expired early", a)
		}
		if !alive[c] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's heartbeat of 50ms never expired", c)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testLeases: the first holder keeps the lease while it renews it; another gets it once it lapses.
func testLeases(t *testing.T, b Broker) {
	name := uniqueName(t, "lease")
	lease := func(holder string, ttl time.Duration) string {
		t.Helper()
		h, err := b.Lease(t.Context(), name, holder, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	if h := lease("a", 300*time.Millisecond); h != "a" {
		t.Fatalf("first lease: holder %q, want a", h)
	}
	if h := lease("b", time.Minute); h != "a" {
		t.Fatalf("lease held by a: %q, want a", h)
	}
	for range 3 { // a renews: the lease outlives its first TTL
		time.Sleep(150 * time.Millisecond)
		if h := lease("a", 300*time.Millisecond); h != "a" {
			t.Fatalf("renewal: holder %q, want a", h)
		}
	}
	deadline := time.Now().Add(waitTimeout)
	for lease("b", time.Minute) != "b" {
		if time.Now().After(deadline) {
			t.Fatal("b never got the lease after a stopped renewing")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testInbox: a message told to a node reaches its inbox handler; another node's does not.
func testInbox(t *testing.T, b Broker) {
	node, other := uniqueName(t, "node"), uniqueName(t, "other")
	got := make(chan string, 4)
	if err := b.Inbox(t.Context(), node, func(m []byte) { got <- string(m) }); err != nil {
		t.Fatal(err)
	}
	if err := b.Tell(t.Context(), other, []byte("not for you")); err != nil {
		t.Fatal(err)
	}
	if err := b.Tell(t.Context(), node, []byte("hello|binary\x00")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m != "hello|binary\x00" {
			t.Fatalf("inbox got %q", m)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the told message never arrived")
	}
	select {
	case m := <-got:
		t.Fatalf("inbox got another message %q", m)
	case <-time.After(100 * time.Millisecond):
	}
}
