package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// dispatchTimeout bounds each Redis call of the dispatcher.
	dispatchTimeout = 5 * time.Second
	// retryInterval is how often the dispatcher retries a catch-up that failed (Redis unreachable).
	retryInterval = 500 * time.Millisecond
	// catchUpPage is how many stream entries one catch-up round trip reads.
	catchUpPage = 512
)

var errUnsubscribed = errors.New("broker: redis: unsubscribed while subscribing")

// redisSub is this node's subscription to one room.
type redisSub struct {
	room, channel string

	mu      sync.Mutex // held while the handler runs, so Unsubscribe returns after a call in progress
	handler Handler    // nil once unsubscribed

	ready    chan struct{} // closed when Subscribe may return, with readyErr
	once     sync.Once
	readyErr error

	// Owned by the dispatcher goroutine.
	started bool   // confirmed by Redis, epoch and last known
	epoch   string // epoch of the last delivered event (or of the log when subscribed)
	last    uint64 // offset of the last delivered event
	stale   bool   // events may have been missed: catch up from the stream before trusting pub/sub
}

func (st *redisSub) finish(err error) {
	st.once.Do(func() {
		st.readyErr = err
		close(st.ready)
	})
}

func (st *redisSub) deliver(epoch string, ev Event) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.handler != nil {
		st.handler(epoch, ev)
	}
}

// Subscribe implements Broker. It returns once Redis has confirmed the subscription and the log's top is
// known: events appended after that reach h, from the dispatcher goroutine.
func (b *Redis) Subscribe(ctx context.Context, room string, h Handler) error {
	_, _, channel := b.keys(room)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	if st := b.subs[channel]; st != nil {
		st.mu.Lock()
		st.handler = h
		st.mu.Unlock()
		b.mu.Unlock()
		if err := b.awaitSubscribed(ctx, st); err != nil {
			return fmt.Errorf("broker: redis: subscribe %q: %w", room, err)
		}
		return nil
	}
	st := &redisSub{room: room, channel: channel, handler: h, ready: make(chan struct{})}
	b.subs[channel] = st
	b.mu.Unlock()

	// When SUBSCRIBE cannot be sent, go-redis still keeps the channel and subscribes it when it
	// reconnects: wait for the confirmation either way, as long as ctx allows.
	subErr := b.ps.Subscribe(ctx, channel)
	if err := b.awaitSubscribed(ctx, st); err != nil {
		b.drop(st)
		if errors.Is(err, ErrClosed) {
			return err
		}
		return fmt.Errorf("broker: redis: subscribe %q: %w", room, errors.Join(err, subErr))
	}
	return nil
}

func (b *Redis) awaitSubscribed(ctx context.Context, st *redisSub) error {
	select {
	case <-st.ready:
		return st.readyErr
	case <-ctx.Done():
		return ctx.Err()
	case <-b.ctx.Done():
		return ErrClosed
	}
}

// drop forgets a subscription whose Subscribe failed.
func (b *Redis) drop(st *redisSub) {
	b.mu.Lock()
	mine := b.subs[st.channel] == st
	if mine {
		delete(b.subs, st.channel)
	}
	b.mu.Unlock()
	if !mine {
		return
	}
	st.mu.Lock()
	st.handler = nil
	st.mu.Unlock()
	ctx, cancel := context.WithTimeout(b.ctx, dispatchTimeout)
	defer cancel()
	_ = b.ps.Unsubscribe(ctx, st.channel) // best effort: go-redis forgets the channel even when this fails
}

// Unsubscribe implements Broker. The handler gets no call after Unsubscribe returns, even when Redis could
// not be told (the error is then returned, and the channel is not subscribed again on reconnect).
func (b *Redis) Unsubscribe(ctx context.Context, room string) error {
	_, _, channel := b.keys(room)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	st := b.subs[channel]
	delete(b.subs, channel)
	b.mu.Unlock()
	if st == nil {
		return nil
	}
	st.mu.Lock()
	st.handler = nil
	st.mu.Unlock()
	st.finish(errUnsubscribed)
	if err := b.ps.Unsubscribe(ctx, channel); err != nil {
		return fmt.Errorf("broker: redis: unsubscribe %q: %w", room, err)
	}
	return nil
}

func (b *Redis) sub(channel string) *redisSub {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.subs[channel]
}

// dispatch reads the pub/sub channel until go-redis closes it (Close closes the PubSub).
func (b *Redis) dispatch(msgs <-chan any) {
	defer b.wg.Done()
	tick := time.NewTicker(retryInterval)
	defer tick.Stop()
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				return
			}
			if b.ctx.Err() != nil {
				continue // closing: drain, so go-redis's reader is never stuck on a send
			}
			switch m := m.(type) {
			case *redis.Subscription:
				if m.Kind == "subscribe" {
					b.onSubscribed(m.Channel)
				}
			case *redis.Message:
				b.onMessage(m)
			}
		case <-tick.C:
			if b.ctx.Err() == nil {
				b.retryStale()
			}
		}
	}
}

// onSubscribed handles Redis's confirmation of SUBSCRIBE: the first one starts the subscription; a later
// one means the pub/sub connection was lost and re-established, so what was published meanwhile is read
// from the stream.
func (b *Redis) onSubscribed(channel string) {
	st := b.sub(channel)
	if st == nil {
		return
	}
	if st.started {
		b.log.Info("broker: redis: pub/sub subscribed again after a lost connection; catching up from the stream",
			"room", st.room, "epoch", st.epoch, "offset", st.last)
		b.catchUp(st)
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, dispatchTimeout)
	defer cancel()
	top, _, err := b.read(ctx, st.room, false, "", "", "", 0)
	if err != nil {
		st.finish(err)
		return
	}
	st.epoch, st.last, st.started = top.Epoch, top.Offset, true
	st.finish(nil)
}

func (b *Redis) onMessage(m *redis.Message) {
	st := b.sub(m.Channel)
	if st == nil || !st.started {
		return // unsubscribed, or published before this subscription's starting point
	}
	epoch, ev, err := parseMessage(m.Payload)
	if err != nil {
		b.log.Warn("broker: redis: bad message, reading the stream instead", "room", st.room, "err", err)
		b.catchUp(st)
		return
	}
	switch {
	case st.stale || epoch != st.epoch || ev.Offset > st.last+1:
		// A gap (a lost PUBLISH), a new log, or an earlier failed catch-up: the stream has this event
		// and everything before it.
		b.catchUp(st)
	case ev.Offset <= st.last:
		// Already delivered (read from the stream during a catch-up).
	default:
		st.deliver(epoch, ev)
		st.last = ev.Offset
	}
}

// catchUp delivers, from the stream, every event after the last delivered one up to the log's top. When
// the log has another epoch (lost and restarted, or removed) it delivers the new log from offset 1. On
// failure the subscription stays stale and the dispatcher retries.
func (b *Redis) catchUp(st *redisSub) {
	for range 10000 { // bounded: each round delivers a page or switches epoch
		ctx, cancel := context.WithTimeout(b.ctx, dispatchTimeout)
		top, evs, err := b.read(ctx, st.room, false, "XRANGE", streamID(st.last+1), "+", catchUpPage)
		cancel()
		if err != nil {
			if !st.stale && b.ctx.Err() == nil {
				b.log.Warn("broker: redis: catching up from the stream failed; retrying", "room", st.room, "err", err)
			}
			st.stale = true
			return
		}
		if top.Epoch == "" {
			// No log now: its next Append starts a new epoch, and its message brings us back here.
			st.stale = false
			return
		}
		if top.Epoch != st.epoch {
			b.log.Debug("broker: redis: the room's log has a new epoch; delivering it from offset 1",
				"room", st.room, "old", st.epoch, "new", top.Epoch)
			st.epoch, st.last = top.Epoch, 0
			continue
		}
		if len(evs) > 0 {
			b.log.Debug("broker: redis: filling from the stream", "room", st.room, "epoch", st.epoch,
				"from", evs[0].Offset, "to", evs[len(evs)-1].Offset)
		}
		for _, ev := range evs {
			if ev.Offset != st.last+1 {
				// MAXLEN trimmed events this node never delivered: the handler sees the jump.
				b.log.Warn("broker: redis: events trimmed before they were delivered", "room", st.room,
					"epoch", st.epoch, "from", st.last+1, "to", ev.Offset-1)
			}
			st.deliver(top.Epoch, ev)
			st.last = ev.Offset
		}
		if len(evs) < catchUpPage || st.last >= top.Offset {
			st.stale = false
			return
		}
	}
}

func (b *Redis) retryStale() {
	b.mu.Lock()
	var stale []*redisSub
	for _, st := range b.subs {
		if st.started && st.stale {
			stale = append(stale, st)
		}
	}
	b.mu.Unlock()
	for _, st := range stale {
		b.catchUp(st)
	}
}

// parseMessage reads "<epoch>|<offset>|<data>"; data may contain '|'.
func parseMessage(p string) (string, Event, error) {
	epoch, rest, ok := strings.Cut(p, "|")
	if !ok {
		return "", Event{}, fmt.Errorf("message without offset")
	}
	offS, data, ok := strings.Cut(rest, "|")
	if !ok {
		return "", Event{}, fmt.Errorf("message without data")
	}
	off, err := strconv.ParseUint(offS, 10, 64)
	if err != nil {
		return "", Event{}, fmt.Errorf("message offset: %w", err)
	}
	return epoch, Event{Offset: off, Data: []byte(data)}, nil
}
