package broker

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

func newTestMemory(t *testing.T, opts MemoryOptions) *Memory {
	t.Helper()
	m := NewMemory(opts)
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func TestMemoryContract(t *testing.T) {
	runContract(t, func(t *testing.T) Broker { return newTestMemory(t, MemoryOptions{}) })
}

// TestMemoryContractSmallRing runs the contract with a ring that wraps many times in the concurrent test
// and still holds every other log of the suite.
func TestMemoryContractSmallRing(t *testing.T) {
	runContract(t, func(t *testing.T) Broker { return newTestMemory(t, MemoryOptions{HistorySize: 64}) })
}

func TestMemoryRingTrim(t *testing.T) {
	const size, appended = 10, 25 // the ring keeps offsets 16..25
	m := newTestMemory(t, MemoryOptions{HistorySize: size})
	ctx := t.Context()
	room := uniqueName(t, "room")
	var top Position
	for i := 1; i <= appended; i++ {
		top = mustAppend(t, m, room, fmt.Sprintf("e%d", i))
	}
	if top.Offset != appended {
		t.Fatalf("top offset %d, want %d", top.Offset, appended)
	}
	want := func(from, to int, step int) string {
		var evs []Event
		for i := from; i <= to; i += step {
			evs = append(evs, Event{Offset: uint64(i), Data: fmt.Appendf(nil, "e%d", i)})
		}
		return eventsString(evs)
	}

	sinceTests := []struct {
		since uint64
		limit int
		want  string // "" with gone
		gone  bool
	}{
		{since: 25, want: ""},
		{since: 20, want: want(21, 25, 1)},
		{since: 15, want: want(16, 25, 1)}, // needs exactly the 10 stored events
		{since: 15, limit: 10, want: want(16, 25, 1)},
		{since: 15, limit: 9, gone: true}, // more missed than Limit
		{since: 15, limit: 1000, want: want(16, 25, 1)},
		{since: 14, gone: true}, // needs event 15, trimmed
		{since: 10, gone: true},
		{since: 0, gone: true},
	}
	for _, tt := range sinceTests {
		h, err := m.History(ctx, room, HistoryOptions{Since: &Position{Epoch: top.Epoch, Offset: tt.since}, Limit: tt.limit})
		if tt.gone {
			if !errors.Is(err, ErrHistoryGone) {
				t.Errorf("since %d limit %d: events %q, err %v; want ErrHistoryGone", tt.since, tt.limit, eventsString(h.Events), err)
			}
			continue
		}
		if err != nil {
			t.Errorf("since %d limit %d: %v", tt.since, tt.limit, err)
			continue
		}
		if got := eventsString(h.Events); got != tt.want {
			t.Errorf("since %d limit %d: %q, want %q", tt.since, tt.limit, got, tt.want)
		}
	}

	even := func(data []byte) bool {
		var n int
		_, err := fmt.Sscanf(string(data), "e%d", &n)
		return err == nil && n%2 == 0
	}
	early := func(data []byte) bool { return bytes.Equal(data, []byte("e3")) }
	limitTests := []struct {
		name  string
		limit int
		match func([]byte) bool
		want  string
	}{
		{"default limit", 0, nil, want(16, 25, 1)},
		{"limit above ring", 100, nil, want(16, 25, 1)},
		{"limit", 4, nil, want(22, 25, 1)},
		{"match scans only the ring", 10, even, want(16, 24, 2)},
		{"match limit", 2, even, want(22, 24, 2)},
		{"match of a trimmed event", 10, early, ""},
	}
	for _, tt := range limitTests {
		h, err := m.History(ctx, room, HistoryOptions{Limit: tt.limit, Match: tt.match})
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got := eventsString(h.Events); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}
