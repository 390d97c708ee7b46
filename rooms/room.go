package rooms

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/liveforum/liveforum/broker"
	"github.com/liveforum/liveforum/protocol"
)

// Sink is how a room reaches a local member's connection. Implemented by the server's connections.
type Sink interface {
	// Send queues an encoded frame and never blocks. It returns false when the frame was not queued: the
	// sink is closed or has just overflowed (and is closing itself as a slow consumer).
	Send(frame []byte) bool
	// Close starts closing the connection with a protocol close code; it never blocks.
	Close(code int, reason string)
	// Kick takes the connection out of one room, telling it why with a close code (removed, replaced,
	// room closed); a connection in no other room is closed with that code. It never blocks.
	Kick(room string, code int, reason string)
}

// Room is a loaded room: its settings, its state folded from its log, and its local sessions.
type Room struct {
	g    *Registry
	name string

	ready   chan struct{} // closed when loading finished (loadErr tells how)
	loadErr error

	// presence serialises the decisions to log joins, leaves and removals with their appends, so that a
	// member's join and leave events are never reordered. Never taken while mu is held.
	presence sync.Mutex

	mu         sync.Mutex
	settings   Settings
	epoch      string
	applied    uint64                     // offset of the newest event folded in
	members    map[string]protocol.Member // the fold: members by identity
	nodes      map[string]string          // the fold: the node holding each member's connection
	lost       map[string]struct{}        // local members whose leave another node logged (see reassert)
	folding    bool                       // the state is loaded: events are folded, not kept in early
	early      []earlyEvent               // events delivered while the room was loading
	idleSince  time.Time                  // since when no local session is in the room (sweeps)
	waiters    []waiter                   // joins waiting for the fold to reach their own event
	local      map[string]*Session        // this node's live session of each identity
	sessions   sessionList                // this node's sessions, for fan-out
	watchers   sessionList                // the sessions that receive member events (presence)
	joining    sessionList                // the sessions whose join reply is not queued yet
	leaving    map[string]time.Time       // identity -> when its leave is logged (dropped connections)
	emptySince time.Time
	closed     bool
	unloaded   bool           // closed by an unload: the room goes on elsewhere (set under g.mu and mu)
	removed    chan struct{}  // guarded by g.mu: set when removal starts, closed when it is done
	recent     []broker.Event // the newest chat events (HistoryOnJoin of them, up to twice that stored)

	batch      []batched   // events applied but not yet sent to the live sessions
	lastFlush  time.Time   // when the last batch went out
	flushTimer *time.Timer // pending flush of batch, if any
}

func (r *Room) loaded() bool {
	select {
	case <-r.ready:
		return r.loadErr == nil
	default:
		return false
	}
}

// Name returns the room's name.
func (r *Room) Name() string { return r.name }

// Info returns the room as clients see it.
func (r *Room) Info() protocol.RoomInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.settings.Info()
}

func (r *Room) status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := Status{Settings: r.settings, Members: len(r.members), Local: len(r.sessions.s), Epoch: r.epoch,
		Offset: r.applied, Loaded: true}
	if r.emptyLocked() {
		st.EmptyFor = r.g.cfg.Now().Sub(r.emptySince).Round(time.Second).String()
	}
	return st
}

func (r *Room) emptyLocked() bool { return len(r.members) == 0 && len(r.sessions.s) == 0 }

// idleLocked reports whether the room has members, all of them on other nodes, and nothing to do here.
func (r *Room) idleLocked() bool {
	return !r.closed && len(r.members) > 0 && len(r.sessions.s) == 0 && len(r.leaving) == 0 && len(r.lost) == 0
}

// idle reports whether the room has been idle here (see idleLocked) for UnloadAfter.
func (r *Room) idle(now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.idleLocked() {
		r.idleSince = time.Time{}
		return false
	}
	if r.idleSince.IsZero() {
		r.idleSince = now
	}
	return now.Sub(r.idleSince) >= r.g.cfg.UnloadAfter
}

func (r *Room) expired(now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	ttl := r.settings.EmptyTTL
	if ttl <= 0 {
		ttl = r.g.cfg.EmptyTTL
	}
	return !r.closed && r.emptyLocked() && now.Sub(r.emptySince) >= ttl
}

// append encodes and logs an event. The caller holds no lock but possibly r.presence.
func (r *Room) append(ctx context.Context, ev protocol.Event) (broker.Position, error) {
	pos, _, err := r.appendIf(ctx, ev, broker.Update{})
	return pos, err
}

// appendIf encodes and logs an event with a conditional update of the room's broker state; ok reports
// whether the condition held (and the event was logged).
func (r *Room) appendIf(ctx context.Context, ev protocol.Event, u broker.Update) (broker.Position, bool, error) {
	if ev.Time == 0 {
		ev.Time = r.g.cfg.Now().UnixMilli()
	}
	data, err := protocol.Encode(ev) // no HTML escaping: "<" stays one byte
	if err != nil {
		return broker.Position{}, false, err
	}
	var pos broker.Position
	ok := true
	if u.Key == "" {
		pos, err = r.g.b.Append(ctx, r.name, data)
	} else {
		pos, ok, err = r.g.b.AppendIf(ctx, r.name, data, u)
	}
	if err != nil {
		return pos, false, fmt.Errorf("rooms: append to %q: %w", r.name, err)
	}
	return pos, ok, nil
}

// earlyEvent is an event delivered while the room was loading.
type earlyEvent struct {
	epoch string
	ev    broker.Event
}

var (
	prefixChat     = []byte(`{"kind":"chat",`)
	prefixPresence = []byte(`{"kind":"member.`)
)

// isChat reports whether an encoded event is a chat message; it relies on Kind being encoded first.
func isChat(data []byte) bool { return bytes.HasPrefix(data, prefixChat) }

// handle is the room's broker handler: it folds each event into the state and fans it out to the local
// sessions. The broker calls it one event at a time, in offset order.
func (r *Room) handle(epoch string, ev broker.Event) {
	var e protocol.Event
	chat := isChat(ev.Data)
	if !chat {
		if err := json.Unmarshal(ev.Data, &e); err != nil {
			r.g.log.Error("undecodable event in log", "room", r.name, "offset", ev.Offset, "err", err)
			return
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.folding {
		r.early = append(r.early, earlyEvent{epoch: epoch, ev: ev})
		return
	}
	r.foldLocked(epoch, ev, chat, &e)
}

// foldLocked applies one event of the log: e is its decoded form unless it is a chat message.
func (r *Room) foldLocked(epoch string, ev broker.Event, chat bool, e *protocol.Event) {
	presence := bytes.HasPrefix(ev.Data, prefixPresence)
	frame := protocol.AppendEvent(make([]byte, 0, len(ev.Data)+len(r.name)+48), r.name, ev.Offset, ev.Data)
	if r.epoch != epoch {
		if r.epoch != "" {
			// The log was lost and restarted: positions our members hold are meaningless now. Make them
			// reconnect; their recovery will report the history gone and they reload.
			r.g.log.Warn("room log epoch changed", "room", r.name, "old", r.epoch, "new", epoch)
			for _, s := range r.sessions.s {
				s.sink.Kick(r.name, protocol.CloseShutdown, "room log restarted")
			}
			r.clearSessionsLocked()
			r.members, r.nodes = map[string]protocol.Member{}, map[string]string{}
			r.recent, r.batch = nil, r.batch[:0]
		}
		r.epoch, r.applied = epoch, 0
	}
	if ev.Offset <= r.applied {
		return
	}
	r.applied = ev.Offset
	if chat {
		r.remember(ev)
	}
	for _, s := range r.joining.s {
		if s.presence || !presence {
			s.buffered = append(s.buffered, ev)
		}
	}
	r.batch = append(r.batch, batched{offset: ev.Offset, frame: frame, presence: presence})
	switch {
	case !chat && (e.Kind == protocol.KindRoomClosed || e.Kind == protocol.KindMemberRemoved):
		r.flushLocked() // its members must get the event before their connections close
	case r.g.cfg.FanoutDelay <= 0:
		r.flushLocked()
	case r.flushTimer == nil:
		if wait := r.fanoutDelayLocked() - time.Since(r.lastFlush); wait <= 0 {
			r.flushLocked() // the first event after a quiet spell goes out at once
		} else {
			r.flushTimer = time.AfterFunc(wait, r.flushByTimer)
		}
	}
	if !chat {
		r.applyLocked(e)
	}
	if len(r.waiters) > 0 {
		r.wakeLocked()
	}
}

// waiter is a goroutine waiting until the fold has reached an offset of an epoch.
type waiter struct {
	pos  broker.Position
	done chan struct{}
}

// wakeLocked releases the waiters whose position the fold has reached, or whose epoch is over.
func (r *Room) wakeLocked() {
	keep := r.waiters[:0]
	for _, w := range r.waiters {
		if w.pos.Epoch != r.epoch || w.pos.Offset <= r.applied {
			close(w.done)
		} else {
			keep = append(keep, w)
		}
	}
	clear(r.waiters[len(keep):])
	r.waiters = keep
}

// awaitFold waits (bounded by ctx and a few seconds) until the fold includes the event at pos: with a
// broker that delivers asynchronously, this node may not have folded an event it has just logged.
func (r *Room) awaitFold(ctx context.Context, pos broker.Position) {
	r.mu.Lock()
	if pos.Epoch != r.epoch || pos.Offset <= r.applied {
		r.mu.Unlock()
		return
	}
	w := waiter{pos: pos, done: make(chan struct{})}
	r.waiters = append(r.waiters, w)
	r.mu.Unlock()
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-w.done:
	case <-ctx.Done():
	case <-t.C:
		r.g.log.Warn("the room's log did not deliver a member's own join in time", "room", r.name, "offset", pos.Offset)
	}
}

// batched is an event waiting in the room's fan-out batch.
type batched struct {
	offset   uint64
	frame    []byte
	presence bool // a member.* event
}

// remember keeps a chat event in the recent-history window that fresh joiners receive.
func (r *Room) remember(ev broker.Event) {
	n := r.g.cfg.HistoryOnJoin
	if n <= 0 {
		return
	}
	if len(r.recent) >= 2*n {
		r.recent = append(r.recent[:0], r.recent[len(r.recent)-n+1:]...)
	}
	r.recent = append(r.recent, ev)
}

// recentLocked returns the recent-history window.
func (r *Room) recentLocked() []broker.Event {
	n := r.g.cfg.HistoryOnJoin
	if n <= 0 {
		return nil
	}
	if len(r.recent) > n {
		return r.recent[len(r.recent)-n:]
	}
	return r.recent
}

// fanoutDelayLocked is the room's batching window: FanoutDelay per thousand local sessions, and at least
// FanoutDelay. A flush costs a socket write per session, so this keeps a busy room's writes per second
// about the same whatever its size (100 000/s at the 10 ms default), instead of letting a big room's
// fan-out outrun the machine and queue.
func (r *Room) fanoutDelayLocked() time.Duration {
	d := r.g.cfg.FanoutDelay
	if n := len(r.sessions.s); n > 1000 {
		d = d * time.Duration(n) / 1000
	}
	return d
}

func (r *Room) flushByTimer() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushTimer = nil
	r.flushLocked()
}

// flushLocked sends the batched events to the live sessions: one frame per session holding every event
// of the batch it should get (messages joined by '\n'), so a batch costs each connection one queue entry
// and one socket write however many events it holds.
func (r *Room) flushLocked() {
	if r.flushTimer != nil {
		r.flushTimer.Stop()
		r.flushTimer = nil
	}
	if len(r.batch) == 0 {
		return
	}
	r.lastFlush = time.Now()
	first, last := r.batch[0].offset, r.batch[len(r.batch)-1].offset
	all, quiet := joinBatch(r.batch)
	to := r.sessions.s
	if len(quiet) == 0 {
		to = r.watchers.s // only member events: a large room's joins cost nothing for the others
	}
	for _, s := range to {
		switch {
		case s.pending || s.liveAfter >= last:
			continue // it has these events in its join reply
		case s.liveAfter >= first: // went live in the middle of this batch
			for _, b := range r.batch {
				if b.offset > s.liveAfter && (s.presence || !b.presence) {
					s.sink.Send(b.frame)
				}
			}
		case s.presence:
			s.sink.Send(all)
		default:
			s.sink.Send(quiet)
		}
	}
	clear(r.batch)
	r.batch = r.batch[:0]
}

// joinBatch concatenates a batch's frames: all of them, and those without member events.
func joinBatch(batch []batched) (all, quiet []byte) {
	if len(batch) == 1 {
		if batch[0].presence {
			return batch[0].frame, nil
		}
		return batch[0].frame, batch[0].frame
	}
	n := 0
	for _, b := range batch {
		n += len(b.frame) + 1
	}
	all = make([]byte, 0, n)
	hasPresence := false
	for _, b := range batch {
		if len(all) > 0 {
			all = append(all, '\n')
		}
		all = append(all, b.frame...)
		hasPresence = hasPresence || b.presence
	}
	if !hasPresence {
		return all, all
	}
	for _, b := range batch {
		if b.presence {
			continue
		}
		if len(quiet) > 0 {
			quiet = append(quiet, '\n')
		}
		quiet = append(quiet, b.frame...)
	}
	return all, quiet
}

// applyLocked folds a non-chat event into the state.
func (r *Room) applyLocked(e *protocol.Event) {
	switch e.Kind {
	case protocol.KindMemberJoined:
		if e.Member == nil {
			return
		}
		id := e.Member.Identity
		r.members[id] = *e.Member
		r.nodes[id] = e.Node
		if e.Node != r.g.node {
			// The member is another node's now: it joined there, after or instead of here. A session still
			// joining may have logged its own join after this one: Join decides once it has folded it.
			if s := r.local[id]; s != nil && !s.pending {
				s.sink.Kick(r.name, protocol.CloseReplaced, "joined from another connection")
				r.dropLocked(s)
			}
			delete(r.leaving, id)
		}
	case protocol.KindMemberLeft, protocol.KindMemberRemoved:
		if e.Member == nil {
			return
		}
		id := e.Member.Identity
		delete(r.members, id)
		delete(r.nodes, id)
		delete(r.leaving, id)
		if e.Kind == protocol.KindMemberLeft && r.local[id] != nil {
			r.lost[id] = struct{}{} // another node took this one for dead: log the join again
		}
		if e.Kind == protocol.KindMemberRemoved {
			if s := r.local[e.Member.Identity]; s != nil {
				s.sink.Kick(r.name, protocol.CloseRemoved, "removed by a moderator")
				r.dropLocked(s)
			}
		}
		if r.emptyLocked() {
			r.emptySince = r.g.cfg.Now()
		}
	case protocol.KindRoomUpdated:
		if e.Room != nil {
			r.settings.Title, r.settings.Languages, r.settings.Guests = e.Room.Title, e.Room.Languages, e.Room.Guests
			r.settings.MaxMembers = e.Room.MaxMembers
		}
	case protocol.KindRoomClosed:
		r.closed = true
		r.recent = nil
		for _, s := range r.sessions.s {
			s.sink.Kick(r.name, protocol.CloseRoomClosed, "room closed")
		}
		r.clearSessionsLocked()
	}
}

// clearSessionsLocked forgets every local session.
func (r *Room) clearSessionsLocked() {
	for _, s := range r.sessions.s {
		s.gone = true
	}
	r.sessions, r.watchers, r.joining = sessionList{}, sessionList{}, sessionList{}
	r.local = map[string]*Session{}
}

// dropLocked removes a session from the fan-out list and the identity index.
func (r *Room) dropLocked(s *Session) {
	r.sessions.remove(s, listAll)
	r.watchers.remove(s, listWatchers)
	r.joining.remove(s, listJoining)
	if r.local[s.member.Identity] == s {
		delete(r.local, s.member.Identity)
	}
	s.gone = true
}

// sweepLeaves logs the leaves of members whose connection dropped more than the grace period ago and
// who have not come back.
func (r *Room) sweepLeaves(ctx context.Context, now time.Time) {
	r.mu.Lock()
	var due []string
	for id, at := range r.leaving {
		if !now.Before(at) {
			due = append(due, id)
		}
	}
	r.mu.Unlock()
	for _, id := range due {
		r.logLeave(ctx, id, now)
	}
}

// logLeave appends the leave of identity if it is still due at now and the member has not come back.
func (r *Room) logLeave(ctx context.Context, id string, now time.Time) {
	r.presence.Lock()
	defer r.presence.Unlock()
	r.mu.Lock()
	at, ok := r.leaving[id]
	m, member := r.members[id]
	mine := r.nodes[id] == r.g.node
	if !ok || now.Before(at) || r.local[id] != nil {
		r.mu.Unlock()
		return
	}
	delete(r.leaving, id)
	r.mu.Unlock()
	if !member || !mine {
		return // already gone, or held by another node now
	}
	// Only if the member is still this node's: it may have reconnected to another node meanwhile.
	u := broker.Update{Key: memberKey(id), Cond: broker.IfEqual, Expect: memberValue(r.g.node, m)}
	if _, _, err := r.appendIf(ctx, protocol.Event{Kind: protocol.KindMemberLeft, Member: &m}, u); err != nil {
		r.g.log.Warn("could not log a leave; will retry", "room", r.name, "member", id, "err", err)
		r.mu.Lock()
		if _, again := r.leaving[id]; !again && r.local[id] == nil {
			r.leaving[id] = now.Add(r.g.cfg.SweepEvery)
		}
		r.mu.Unlock()
	}
}

// The lists a session can be in; Session.idx holds its place in each.
const (
	listAll = iota
	listWatchers
	listJoining
)

// sessionList is an unordered list of sessions with constant-time removal.
type sessionList struct{ s []*Session }

func (l *sessionList) add(s *Session, list int) {
	s.idx[list] = len(l.s)
	l.s = append(l.s, s)
}

func (l *sessionList) remove(s *Session, list int) {
	i := s.idx[list]
	if i < 0 || i >= len(l.s) || l.s[i] != s {
		return
	}
	last := len(l.s) - 1
	l.s[i] = l.s[last]
	l.s[i].idx[list] = i
	l.s[last] = nil
	l.s = l.s[:last]
	s.idx[list] = -1
}
