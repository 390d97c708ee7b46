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
	// confirmTimeout is how long, on a cluster, a room's pub/sub connection may wait for Redis to confirm
	// its subscription before the broker opens another (its slot may have moved: SSUBSCRIBE sent to a node
	// that no longer serves the slot is refused, and go-redis does not report that).
	confirmTimeout = 3 * time.Second
	// reloadDelay is how long the broker waits, after asking go-redis to reload the cluster's slot map,
	// before it opens a room's pub/sub connection again.
	reloadDelay = 200 * time.Millisecond
	// roomChannelSize is how many messages go-redis buffers for one room's pub/sub connection.
	roomChannelSize = 64
)

// shardMsg is what one room's pub/sub connection (on a cluster) received, for the dispatcher.
type shardMsg struct {
	st *redisSub
	ps *redis.PubSub
	m  any
}

var errUnsubscribed = errors.New("broker: redis: unsubscribed while subscribing")

// redisSub is this node's subscription to one room.
type redisSub struct {
	room, channel string

	mu      sync.Mutex // held while the handler runs, so Unsubscribe returns after a call in progress
	handler Handler    // nil once unsubscribed

	ready    chan struct{} // closed when Subscribe may return, with readyErr
	once     sync.Once
	readyErr error

	// On a cluster only, guarded by Redis.mu.
	ps        *redis.PubSub // the room's own pub/sub connection; nil until Subscribe opened it
	psOpened  time.Time     // when ps was opened
	confirmed bool          // Redis confirmed ps's subscription
	reopening bool          // a goroutine is opening a new ps

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
			return redisErr(fmt.Sprintf("subscribe %q", room), err)
		}
		return nil
	}
	st := &redisSub{room: room, channel: channel, handler: h, ready: make(chan struct{})}
	b.subs[channel] = st
	b.mu.Unlock()

	// When SUBSCRIBE cannot be sent, go-redis still keeps the channel and subscribes it when it
	// reconnects: wait for the confirmation either way, as long as ctx allows.
	var subErr error
	if b.cluster == nil {
		subErr = b.ps.Subscribe(ctx, channel)
	} else {
		subErr = b.openRoomPS(ctx, st)
	}
	if err := b.awaitSubscribed(ctx, st); err != nil {
		b.drop(st)
		if errors.Is(err, ErrClosed) {
			return err
		}
		return redisErr(fmt.Sprintf("subscribe %q", room), errors.Join(err, subErr))
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
	var ps *redis.PubSub
	if mine {
		delete(b.subs, st.channel)
		ps = st.ps
	}
	b.mu.Unlock()
	if !mine {
		return
	}
	st.mu.Lock()
	st.handler = nil
	st.mu.Unlock()
	if b.cluster != nil {
		if ps != nil {
			_ = ps.Close()
		}
		return
	}
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
	var ps *redis.PubSub
	if st != nil {
		ps = st.ps
	}
	b.mu.Unlock()
	if st == nil {
		return nil
	}
	st.mu.Lock()
	st.handler = nil
	st.mu.Unlock()
	st.finish(errUnsubscribed)
	if b.cluster != nil {
		// The room's connection goes: nothing to tell Redis, nothing that can fail.
		if ps != nil {
			_ = ps.Close()
		}
		return nil
	}
	if err := b.ps.Unsubscribe(ctx, channel); err != nil {
		return redisErr(fmt.Sprintf("unsubscribe %q", room), err)
	}
	return nil
}

func (b *Redis) sub(channel string) *redisSub {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.subs[channel]
}

// dispatch reads the pub/sub channel until go-redis closes it (Close closes the PubSub) or, on a cluster,
// what the rooms' pub/sub connections receive until Close.
func (b *Redis) dispatch(msgs <-chan any) {
	defer b.wg.Done()
	tick := time.NewTicker(retryInterval)
	defer tick.Stop()
	var closing <-chan struct{}
	if b.cluster != nil {
		closing = b.ctx.Done() // the forwarders drain their rooms' channels themselves
	}
	for {
		select {
		case <-closing:
			return
		case sm := <-b.in:
			b.onShardMsg(sm)
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
				if b.cluster != nil {
					b.checkRoomPS()
				}
			}
		}
	}
}

// openRoomPS opens, on a cluster, the room's own pub/sub connection: SSUBSCRIBE on its slot's master. When
// that fails, go-redis keeps trying in the background; the error is returned for information.
func (b *Redis) openRoomPS(ctx context.Context, st *redisSub) error {
	ps := b.cluster.SSubscribe(ctx) // no connection yet: the channel's slot chooses the node
	err := ps.SSubscribe(ctx, st.channel)
	b.mu.Lock()
	if b.closed || b.subs[st.channel] != st {
		// Closed or unsubscribed meanwhile: Subscribe's wait says which.
		b.mu.Unlock()
		_ = ps.Close()
		return err
	}
	old := st.ps
	st.ps, st.psOpened, st.confirmed = ps, time.Now(), false
	// Read only now, so the receiving goroutine cannot connect before SSUBSCRIBE chose the node.
	msgs := ps.ChannelWithSubscriptions(redis.WithChannelSize(roomChannelSize))
	b.wg.Add(1) // under b.mu, not closed: Close sets closed before it waits for wg
	b.mu.Unlock()
	go b.forward(st, ps, msgs)
	if old != nil {
		_ = old.Close()
	}
	return err
}

// forward hands what one room's pub/sub connection receives to the dispatcher, until go-redis closes the
// channel (the PubSub was closed). It drains the channel without forwarding once the broker is closing.
func (b *Redis) forward(st *redisSub, ps *redis.PubSub, msgs <-chan any) {
	defer b.wg.Done()
	for m := range msgs {
		select {
		case b.in <- shardMsg{st, ps, m}:
		case <-b.ctx.Done():
		}
	}
}

// onShardMsg handles what a room's pub/sub connection received, on a cluster, if it is the room's current
// connection: a message, the confirmation of its subscription (the first one, or again after a
// reconnect), or Redis dropping the subscription because the room's slot moved to another node.
func (b *Redis) onShardMsg(sm shardMsg) {
	if b.ctx.Err() != nil {
		return
	}
	sub, _ := sm.m.(*redis.Subscription)
	b.mu.Lock()
	current := b.subs[sm.st.channel] == sm.st && sm.st.ps == sm.ps
	if current && sub != nil {
		switch sub.Kind {
		case "ssubscribe":
			sm.st.confirmed = true
		case "sunsubscribe":
			// Not asked for: Unsubscribe closes the connection instead.
			b.log.Info("broker: redis: the room's slot moved to another node; subscribing there",
				"room", sm.st.room)
			b.reopenLocked(sm.st)
		}
	}
	b.mu.Unlock()
	if !current {
		return // the room was unsubscribed, or this connection replaced
	}
	switch m := sm.m.(type) {
	case *redis.Subscription:
		if m.Kind == "ssubscribe" {
			b.onSubscribed(m.Channel)
		}
	case *redis.Message:
		b.onMessage(m)
	}
}

// checkRoomPS opens again, on a cluster, the connections whose subscription Redis has not confirmed for
// confirmTimeout.
func (b *Redis) checkRoomPS() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, st := range b.subs {
		if st.ps != nil && !st.confirmed && !st.reopening && time.Since(st.psOpened) > confirmTimeout {
			b.log.Warn("broker: redis: pub/sub subscription not confirmed; subscribing again",
				"room", st.room, "waited", time.Since(st.psOpened).Round(time.Millisecond))
			b.reopenLocked(st)
		}
	}
}

// reopenLocked starts replacing the room's pub/sub connection: go-redis reloads the cluster's slot map,
// and after reloadDelay a new connection subscribes on the slot's master as go-redis then knows it. Its
// confirmation makes the dispatcher catch up from the stream. b.mu is held.
func (b *Redis) reopenLocked(st *redisSub) {
	if st.reopening || b.closed {
		return
	}
	st.reopening = true
	b.cluster.ReloadState(b.ctx)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		t := time.NewTimer(reloadDelay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-b.ctx.Done():
			return
		}
		ctx, cancel := context.WithTimeout(b.ctx, dispatchTimeout)
		defer cancel()
		_ = b.openRoomPS(ctx, st)
		b.mu.Lock()
		st.reopening = false
		b.mu.Unlock()
	}()
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
		b.log.Info("broker: redis: pub/sub subscribed again (reconnected, or moved on a cluster); catching up from the stream",
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
