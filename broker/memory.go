package broker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"
)

var _ Broker = (*Memory)(nil)

// MemoryOptions configure a Memory broker. The zero value is usable.
type MemoryOptions struct {
	// HistorySize is how many events each room's log keeps (a ring); 0 means 10000.
	HistorySize int
}

// Memory is the single-process broker: each room's log is a bounded ring in memory, and delivery is a
// direct call of the room's handler on the appending goroutine, under the room's log lock, so events reach
// the handler in offset order.
type Memory struct {
	size int

	mu      sync.Mutex
	logs    map[string]*memLog
	rooms   map[string][]byte
	nodes   map[string]time.Time // node -> when its heartbeat expires
	leases  map[string]memLease
	inboxes map[string]*memInbox
	closed  bool
}

type memLog struct {
	mu      sync.Mutex
	epoch   string
	top     uint64  // offset of the newest event; 0 when empty
	ring    []Event // ring[(offset-1) % len(ring)]
	state   map[string][]byte
	handler Handler
	removed bool // replaced by a new log (RemoveLog): an append that got this one must look again
}

// NewMemory returns an empty in-memory broker.
func NewMemory(opts MemoryOptions) *Memory {
	if opts.HistorySize <= 0 {
		opts.HistorySize = 10000
	}
	return &Memory{size: opts.HistorySize, logs: map[string]*memLog{}, rooms: map[string][]byte{}, nodes: map[string]time.Time{}}
}

func newEpoch() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// log returns the room's log, creating it when create is set.
func (m *Memory) log(room string, create bool) (*memLog, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	l := m.logs[room]
	if l == nil && create {
		l = &memLog{epoch: newEpoch(), ring: make([]Event, 0, min(m.size, 64)), state: map[string][]byte{}}
		m.logs[room] = l
	}
	return l, nil
}

// Append implements Broker.
func (m *Memory) Append(ctx context.Context, room string, data []byte) (Position, error) {
	pos, _, err := m.AppendIf(ctx, room, data, Update{})
	return pos, err
}

// AppendIf implements Broker.
func (m *Memory) AppendIf(ctx context.Context, room string, data []byte, u Update) (Position, bool, error) {
	var l *memLog
	for {
		var err error
		if l, err = m.log(room, true); err != nil {
			return Position{}, false, err
		}
		l.mu.Lock()
		if !l.removed {
			break
		}
		l.mu.Unlock()
	}
	defer l.mu.Unlock()
	if u.Key != "" {
		cur, present := l.state[u.Key]
		switch u.Cond {
		case IfEqual:
			if !present || !bytes.Equal(cur, u.Expect) {
				return Position{Epoch: l.epoch, Offset: l.top}, false, nil
			}
		case IfNotEqual:
			if present && bytes.Equal(cur, u.Expect) {
				return Position{Epoch: l.epoch, Offset: l.top}, false, nil
			}
		case IfPresent:
			if !present {
				return Position{Epoch: l.epoch, Offset: l.top}, false, nil
			}
		}
		if u.Value == nil {
			delete(l.state, u.Key)
		} else {
			l.state[u.Key] = bytes.Clone(u.Value)
		}
	}
	l.top++
	ev := Event{Offset: l.top, Data: data}
	if len(l.ring) < m.size {
		l.ring = append(l.ring, ev)
	} else {
		l.ring[(l.top-1)%uint64(m.size)] = ev
	}
	if l.handler != nil {
		l.handler(l.epoch, ev)
	}
	return Position{Epoch: l.epoch, Offset: l.top}, true, nil
}

// State implements Broker.
func (m *Memory) State(ctx context.Context, room string) (Position, map[string][]byte, error) {
	l, err := m.log(room, true)
	if err != nil {
		return Position{}, nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	st := make(map[string][]byte, len(l.state))
	for k, v := range l.state {
		st[k] = bytes.Clone(v)
	}
	return Position{Epoch: l.epoch, Offset: l.top}, st, nil
}

// Heartbeat implements Broker.
func (m *Memory) Heartbeat(ctx context.Context, node string, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.nodes[node] = time.Now().Add(ttl)
	return nil
}

// Alive implements Broker.
func (m *Memory) Alive(ctx context.Context, nodes []string) (map[string]bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	now := time.Now()
	out := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		out[n] = now.Before(m.nodes[n])
	}
	return out, nil
}

// History implements Broker.
func (m *Memory) History(ctx context.Context, room string, opts HistoryOptions) (History, error) {
	l, err := m.log(room, true)
	if err != nil {
		return History{}, err
	}
	limit := opts.Limit
	if limit <= 0 || limit > m.size {
		limit = m.size
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	h := History{Top: Position{Epoch: l.epoch, Offset: l.top}}
	oldest := l.top - uint64(len(l.ring)) + 1 // offset of the oldest stored event
	at := func(off uint64) Event { return l.ring[(off-1)%uint64(m.size)] }
	if opts.Since != nil {
		s := *opts.Since
		if s.Epoch != l.epoch || s.Offset > l.top {
			return h, fmt.Errorf("%w: epoch %q offset %d, log is at epoch %q offset %d", ErrHistoryGone, s.Epoch, s.Offset, l.epoch, l.top)
		}
		if s.Offset+1 < oldest || l.top-s.Offset > uint64(limit) {
			return h, fmt.Errorf("%w: offset %d trimmed", ErrHistoryGone, s.Offset)
		}
		for off := s.Offset + 1; off <= l.top; off++ {
			h.Events = append(h.Events, at(off))
		}
		return h, nil
	}
	if l.top == 0 {
		return h, nil
	}
	var picked []Event
	for off := l.top; off >= oldest && off > 0 && len(picked) < limit; off-- {
		if ev := at(off); opts.Match == nil || opts.Match(ev.Data) {
			picked = append(picked, ev)
		}
	}
	h.Events = make([]Event, len(picked))
	for i, ev := range picked {
		h.Events[len(picked)-1-i] = ev
	}
	return h, nil
}

// Subscribe implements Broker.
func (m *Memory) Subscribe(ctx context.Context, room string, h Handler) error {
	l, err := m.log(room, true)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.handler = h
	l.mu.Unlock()
	return nil
}

// Unsubscribe implements Broker.
func (m *Memory) Unsubscribe(ctx context.Context, room string) error {
	l, err := m.log(room, false)
	if err != nil || l == nil {
		return err
	}
	l.mu.Lock()
	l.handler = nil
	l.mu.Unlock()
	return nil
}

// RemoveLog implements Broker. A subscribed handler stays subscribed to the new log.
func (m *Memory) RemoveLog(ctx context.Context, room string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if l := m.logs[room]; l != nil {
		l.mu.Lock()
		m.removeLocked(room, l)
		l.mu.Unlock()
	}
	return nil
}

// removeLocked replaces the room's log l with a new one if a handler is subscribed, else forgets it. m.mu
// and l.mu are held.
func (m *Memory) removeLocked(room string, l *memLog) {
	l.removed = true
	delete(m.logs, room)
	if l.handler != nil {
		m.logs[room] = &memLog{epoch: newEpoch(), handler: l.handler, state: map[string][]byte{}}
	}
}

// RemoveLogIf implements Broker.
func (m *Memory) RemoveLogIf(ctx context.Context, room string, at Position) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false, ErrClosed
	}
	l := m.logs[room]
	if l == nil {
		return true, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.state) > 0 || l.top != 0 && (l.epoch != at.Epoch || l.top != at.Offset) {
		return false, nil
	}
	m.removeLocked(room, l)
	return true, nil
}

// SaveRoom implements Broker.
func (m *Memory) SaveRoom(ctx context.Context, name string, record []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.rooms[name] = append([]byte(nil), record...)
	return nil
}

// LoadRoom implements Broker.
func (m *Memory) LoadRoom(ctx context.Context, name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	r, ok := m.rooms[name]
	if !ok {
		return nil, fmt.Errorf("%w: room %q", ErrNotFound, name)
	}
	return append([]byte(nil), r...), nil
}

// ListRooms implements Broker.
func (m *Memory) ListRooms(ctx context.Context) (map[string][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	out := make(map[string][]byte, len(m.rooms))
	for k, v := range m.rooms {
		out[k] = append([]byte(nil), v...)
	}
	return out, nil
}

// DeleteRoom implements Broker.
func (m *Memory) DeleteRoom(ctx context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	delete(m.rooms, name)
	return nil
}

// Close implements Broker.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.logs = nil
	m.rooms = nil
	return nil
}

// memLease is a lease of the Memory broker.
type memLease struct {
	holder string
	until  time.Time
}

// Lease implements Broker.
func (m *Memory) Lease(ctx context.Context, name, holder string, ttl time.Duration) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return "", ErrClosed
	}
	if m.leases == nil {
		m.leases = map[string]memLease{}
	}
	now := time.Now()
	l, ok := m.leases[name]
	if !ok || !now.Before(l.until) || l.holder == holder {
		l = memLease{holder: holder, until: now.Add(ttl)}
		m.leases[name] = l
	}
	return l.holder, nil
}

// Tell implements Broker: the inbox's handler is called on the telling goroutine.
func (m *Memory) Tell(ctx context.Context, node string, msg []byte) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	h := m.inboxes[node]
	m.mu.Unlock()
	if h != nil {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.fn(bytes.Clone(msg))
	}
	return nil
}

// memInbox is a node's inbox handler, called one message at a time.
type memInbox struct {
	mu sync.Mutex
	fn func([]byte)
}

// Inbox implements Broker.
func (m *Memory) Inbox(ctx context.Context, node string, h func(msg []byte)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if m.inboxes == nil {
		m.inboxes = map[string]*memInbox{}
	}
	m.inboxes[node] = &memInbox{fn: h}
	return nil
}
