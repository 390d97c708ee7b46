// Package broker holds rooms' ordered logs, the bus that delivers their events to every node, and the
// small store of room records. Memory is the single-process implementation; a Redis one satisfies the same
// Broker interface and the same contract tests.
//
// The broker knows nothing of room rules: events and room records are opaque bytes to it.
//
// Concurrency: every method is safe for concurrent use. A room's subscriber receives that room's events
// one at a time, in offset order, without gaps.
package broker

import (
	"context"
	"errors"
	"time"
)

// Errors returned by brokers (wrapped; test with errors.Is).
var (
	// ErrHistoryGone means the asked position can no longer be served: the log was lost (another epoch) or
	// the events after it were trimmed. The client must reload the room state.
	ErrHistoryGone = errors.New("broker: history is gone")
	// ErrNotFound means no room record exists under that name.
	ErrNotFound = errors.New("broker: not found")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("broker: closed")
	// ErrUnavailable means the broker's store could not be reached (Redis down): the call had no effect
	// or its effect is unknown. Retry later.
	ErrUnavailable = errors.New("broker: unavailable")
)

// Event is one logged event of a room: its offset and its encoded payload.
type Event struct {
	Offset uint64
	Data   []byte
}

// Position is a point in a room's log.
type Position struct {
	Epoch  string
	Offset uint64
}

// Handler receives one room's events. The broker calls it from one goroutine at a time per room, in offset
// order; it must return quickly and must not call back into the broker for the same room.
type Handler func(epoch string, ev Event)

// HistoryOptions selects events for History.
type HistoryOptions struct {
	// Since, when set, asks for every event after Since (Limit is then a safety cap: more than Limit
	// missed events is ErrHistoryGone).
	Since *Position
	// Limit bounds how many events are returned; 0 means the broker's history size.
	Limit int
	// Match, when set without Since, selects which events count towards Limit: History returns the
	// newest Limit matching events (oldest first), scanning back at most the whole stored log.
	Match func(data []byte) bool
}

// History is the result of a history query: the log's current position and the selected events, oldest
// first.
type History struct {
	Top    Position
	Events []Event
}

// Cond is the condition an AppendIf puts on the current value of one key of the room's state.
type Cond int

// The conditions of an Update.
const (
	Always     Cond = iota // no condition
	IfEqual                // the key holds Expect
	IfNotEqual             // the key is absent or holds something other than Expect
	IfPresent              // the key exists
)

// Update changes one key of a room's state (a small map of keys to values that belongs to the room's log:
// it starts empty with each epoch and goes with RemoveLog) atomically with an append, if its condition
// holds. A node that loads a room reads the state and the position it is as of in one step (State), so it
// can fold the events after that position onto it without replaying a log that may be trimmed.
type Update struct {
	Key    string
	Value  []byte // the key's new value; nil deletes the key
	Cond   Cond
	Expect []byte // for IfEqual and IfNotEqual
}

// Broker is a room log store and event bus.
type Broker interface {
	// Append adds a durable event to the room's log and delivers it to the room's subscribers. It returns
	// the event's position. The log is created (with a new epoch) if it does not exist.
	Append(ctx context.Context, room string, data []byte) (Position, error)
	// AppendIf appends like Append and applies u to the room's state, both or neither, when u's condition
	// holds; ok reports whether it did. The condition, the update and the append are one atomic step on
	// every node, which makes "log this leave unless someone logged it first" exactly once.
	AppendIf(ctx context.Context, room string, data []byte, u Update) (pos Position, ok bool, err error)
	// State returns the room's state and the position of the newest event it includes. Like History, it
	// creates the log (with a new epoch) if it does not exist.
	State(ctx context.Context, room string) (Position, map[string][]byte, error)
	// History reads the room's log; see HistoryOptions.
	History(ctx context.Context, room string, opts HistoryOptions) (History, error)
	// Subscribe registers this node's handler for the room's events (one handler per room per node;
	// subscribing again replaces it). Events appended after Subscribe returns reach h.
	Subscribe(ctx context.Context, room string, h Handler) error
	// Unsubscribe removes this node's handler for the room.
	Unsubscribe(ctx context.Context, room string) error
	// RemoveLog deletes the room's log; the next Append starts a new epoch.
	RemoveLog(ctx context.Context, room string) error
	// RemoveLogIf deletes the room's log, like RemoveLog, only if nothing was appended since at and its
	// state is empty (or if the log holds no event at all); ok reports whether the log is gone. The check
	// and the removal are one atomic step, so an empty room is never deleted under a join on another node.
	RemoveLogIf(ctx context.Context, room string, at Position) (ok bool, err error)

	// SaveRoom stores a room record, replacing any earlier one.
	SaveRoom(ctx context.Context, name string, record []byte) error
	// LoadRoom returns a room record or ErrNotFound.
	LoadRoom(ctx context.Context, name string) ([]byte, error)
	// ListRooms returns every room record by name.
	ListRooms(ctx context.Context) (map[string][]byte, error)
	// DeleteRoom removes a room record (no error if absent).
	DeleteRoom(ctx context.Context, name string) error

	// Heartbeat marks this node alive for ttl.
	Heartbeat(ctx context.Context, node string, ttl time.Duration) error
	// Alive reports which of the nodes have a heartbeat that has not expired.
	Alive(ctx context.Context, nodes []string) (map[string]bool, error)

	// Lease makes holder the holder of the named lease for ttl if nobody holds it, renews it if holder
	// holds it already, and returns whoever holds it after the call.
	Lease(ctx context.Context, name, holder string, ttl time.Duration) (string, error)
	// Tell sends a volatile message to a node's inbox: at most once, not logged, lost if the node is not
	// listening.
	Tell(ctx context.Context, node string, msg []byte) error
	// Inbox starts delivering this node's inbox to h, one message at a time, until Close.
	Inbox(ctx context.Context, node string, h func(msg []byte)) error

	// Close releases the broker's resources; further calls return ErrClosed.
	Close() error
}
