package rooms

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/liveforum/liveforum/broker"
	"github.com/liveforum/liveforum/protocol"
)

// Actor is an authenticated member as the room sees it. The server derives it from the credentials.
type Actor struct {
	Member protocol.Member
	// Guest is an anonymous participant: it may only enter rooms that exist and admit guests.
	Guest bool
	// Moderator may remove members.
	Moderator bool
	// Create, when not nil, creates the room with these settings if it does not exist (a valid token that
	// names the room, or development mode).
	Create *Settings
}

// JoinParams are the details of a join request.
type JoinParams struct {
	// ID is the request id, echoed in the reply.
	ID uint64
	// Since asks for recovery from a position.
	Since *protocol.Position
	// Presence: the session receives member events and the member list.
	Presence bool
}

// Session is one local connection's membership in a room.
type Session struct {
	room     *Room
	member   protocol.Member
	actor    Actor
	sink     Sink
	presence bool

	// guarded by room.mu
	pending   bool           // joining: live events are buffered until the join reply is queued
	buffered  []broker.Event // events that arrived while pending
	liveAfter uint64         // the join reply covered events up to this offset
	gone      bool           // removed from the room's session list
	idx       [3]int         // place in the room's session lists (listAll, listWatchers, listJoining)
}

// Member returns who this session is.
func (s *Session) Member() protocol.Member { return s.member }

// RoomName returns the session's room.
func (s *Session) RoomName() string { return s.room.name }

// Join enters a room: it registers the session, logs the member's join (unless the member is already
// present, as after a quick reconnect), and queues the join reply on the sink — the room state, and either
// the recent chat history or, on recovery, every event missed since the given position — before any live
// event. Live events with higher offsets follow on the sink.
func (g *Registry) Join(ctx context.Context, a Actor, name string, p JoinParams, sink Sink) (*Session, error) {
	r, err := g.room(ctx, name, a.Create)
	if err != nil {
		return nil, err
	}
	s := &Session{room: r, member: a.Member, actor: a, sink: sink, presence: p.Presence, pending: true, idx: [3]int{-1, -1, -1}}

	r.presence.Lock()
	r.mu.Lock()
	if r.unloaded {
		// Unloaded since g.room returned it (it had no local member): the room goes on, load it again.
		r.mu.Unlock()
		r.presence.Unlock()
		return g.Join(ctx, a, name, p, sink)
	}
	switch {
	case r.closed:
		err = fmt.Errorf("%w: %q", ErrNotFound, name)
	case a.Guest && !r.settings.Guests:
		err = fmt.Errorf("%w: %q", ErrGuests, name)
	}
	maxMembers := r.settings.MaxMembers
	if maxMembers <= 0 {
		maxMembers = g.cfg.MaxMembers
	}
	_, present := r.members[a.Member.Identity]
	if err == nil && !present && len(r.members) >= maxMembers && !a.Moderator {
		err = fmt.Errorf("%w: %d members", ErrRoomFull, maxMembers)
	}
	if err != nil {
		r.mu.Unlock()
		r.presence.Unlock()
		return nil, err
	}
	if old := r.local[a.Member.Identity]; old != nil {
		old.sink.Kick(r.name, protocol.CloseReplaced, "joined from another connection")
		r.dropLocked(old)
	}
	delete(r.leaving, a.Member.Identity)
	r.local[a.Member.Identity] = s
	r.sessions.add(s, listAll)
	r.joining.add(s, listJoining)
	if s.presence {
		r.watchers.add(s, listWatchers)
	}
	r.mu.Unlock()
	// Logged unless the room's state already has this member on this node (a quick reconnect): the
	// condition is checked by the broker, so it holds even when this node's fold lags behind the log.
	joined, _, err := r.logJoin(ctx, a.Member)
	if err != nil {
		r.presence.Unlock()
		s.Leave(ctx, false)
		return nil, err
	}
	r.presence.Unlock()
	// The reply is built from the fold; it must include the member's own join (or the state that made it
	// unnecessary), which the member is not sent as a live event.
	r.awaitFold(ctx, joined)

	recovered := false
	var hist broker.History
	if p.Since != nil {
		hist, err = g.b.History(ctx, name, broker.HistoryOptions{Since: &broker.Position{Epoch: p.Since.Epoch, Offset: p.Since.Offset}, Limit: g.cfg.MaxRecover})
		recovered = err == nil && eventBytes(hist.Events) <= g.cfg.MaxReplyBytes
		if errors.Is(err, broker.ErrHistoryGone) {
			err = nil
		}
	}
	if err != nil {
		s.Leave(ctx, false)
		return nil, err
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	id := s.member.Identity
	if n, ok := r.nodes[id]; ok && n != g.node && !s.gone && r.epoch == joined.Epoch && r.applied >= joined.Offset {
		// The member joined on another node after this join was logged: that connection replaces this one.
		s.sink.Kick(r.name, protocol.CloseReplaced, "joined from another connection")
		r.dropLocked(s)
	}
	if s.gone {
		if !r.closed {
			// Taken out of the room meanwhile (the log restarted, the member was replaced or removed). If the
			// room still has the member as this node's with no connection here, its join (logged) needs a leave.
			if _, due := r.leaving[id]; !due && r.local[id] == nil && r.nodes[id] == g.node {
				r.leaving[id] = g.cfg.Now().Add(g.cfg.LeaveGrace)
			}
			return nil, fmt.Errorf("%w: %q", ErrRetry, name)
		}
		return nil, fmt.Errorf("%w: %q", ErrClosed, name)
	}
	reply := protocol.JoinReply{Room: r.settings.Info(), Self: s.member, Epoch: r.epoch, Offset: r.applied,
		Recovered: recovered, MemberCount: len(r.members), Events: []protocol.HistoryEvent{}}
	if hist.Top.Epoch != r.epoch {
		// The log restarted between our reads: only the buffered events are certain.
		hist.Events = nil
		reply.Recovered = false
	}
	if s.presence {
		reply.Members = make([]protocol.Member, 0, len(r.members))
		for _, m := range r.members {
			reply.Members = append(reply.Members, m)
		}
	}
	if !reply.Recovered {
		// A fresh join takes the recent chat from the room's state, which is exactly as of r.applied.
		hist.Events = newestWithin(r.recentLocked(), g.cfg.MaxReplyBytes)
	}
	var last uint64 // events up to here are in the reply or were seen by the client already
	if reply.Recovered {
		last = p.Since.Offset
	}
	for _, ev := range hist.Events {
		if ev.Offset > r.applied {
			break // not folded here yet: it will arrive live
		}
		if ev.Offset <= last || !s.presence && isPresence(ev.Data) {
			continue
		}
		reply.Events = append(reply.Events, protocol.HistoryEvent{Offset: ev.Offset, Data: ev.Data})
		last = ev.Offset
	}
	if reply.Recovered {
		for _, ev := range s.buffered {
			if ev.Offset > last {
				reply.Events = append(reply.Events, protocol.HistoryEvent{Offset: ev.Offset, Data: ev.Data})
			}
		}
	}
	s.buffered, s.pending, s.liveAfter = nil, false, r.applied
	r.joining.remove(s, listJoining)
	data, err := protocol.Encode(reply) // an error here (a corrupt event in the log) fails this join only
	if err == nil && !sink.Send(protocol.Marshal(protocol.TypeReply, p.ID, name, json.RawMessage(data))) {
		err = errors.New("rooms: join reply not queued: connection closing")
	}
	if err != nil {
		// The join was logged: treat it as a dropped connection, whose leave the sweeper logs.
		if r.local[s.member.Identity] == s {
			r.leaving[s.member.Identity] = r.g.cfg.Now().Add(r.g.cfg.LeaveGrace)
		}
		r.dropLocked(s)
		return nil, err
	}
	return s, nil
}

func isPresence(data []byte) bool { return bytes.HasPrefix(data, prefixPresence) }

func eventBytes(evs []broker.Event) int {
	n := 0
	for _, ev := range evs {
		n += len(ev.Data) + 24
	}
	return n
}

// newestWithin returns the newest events whose sizes add up to at most budget.
func newestWithin(evs []broker.Event, budget int) []broker.Event {
	i := len(evs)
	for i > 0 && budget >= len(evs[i-1].Data)+24 {
		budget -= len(evs[i-1].Data) + 24
		i--
	}
	return evs[i:]
}

// Leave takes the session out of the room. An explicit leave is logged at once; a dropped connection's
// leave is logged after the registry's LeaveGrace unless the member comes back first.
func (s *Session) Leave(ctx context.Context, explicit bool) {
	r := s.room
	r.mu.Lock()
	if s.gone {
		r.mu.Unlock()
		return
	}
	current := r.local[s.member.Identity] == s
	r.dropLocked(s)
	if !current {
		r.mu.Unlock()
		return
	}
	now := r.g.cfg.Now()
	if r.emptyLocked() {
		r.emptySince = now
	}
	if !explicit && r.g.cfg.LeaveGrace > 0 {
		r.leaving[s.member.Identity] = now.Add(r.g.cfg.LeaveGrace)
		r.mu.Unlock()
		return
	}
	r.leaving[s.member.Identity] = now
	r.mu.Unlock()
	r.logLeave(ctx, s.member.Identity, now)
}

// Chat validates and logs a chat message from the session's member; it returns the message's offset.
func (s *Session) Chat(ctx context.Context, text, nonce string) (uint64, error) {
	text = strings.TrimSpace(strings.Map(dropControl, text))
	if text == "" {
		return 0, ErrEmptyText
	}
	if utf8.RuneCountInString(text) > s.room.g.cfg.MaxChatRunes {
		return 0, fmt.Errorf("%w: at most %d characters", ErrTooLong, s.room.g.cfg.MaxChatRunes)
	}
	if len(nonce) > protocol.MaxNonceLen {
		return 0, fmt.Errorf("%w: nonce longer than %d bytes", ErrTooLong, protocol.MaxNonceLen)
	}
	if err := s.live(); err != nil {
		return 0, err
	}
	m := s.member
	pos, err := s.room.append(ctx, protocol.Event{Kind: protocol.KindChat, From: &m, Text: text, Nonce: nonce})
	return pos.Offset, err
}

// dropControl removes control characters other than newline and tab.
func dropControl(r rune) rune {
	if r == '\n' || r == '\t' || !unicode.IsControl(r) {
		return r
	}
	return -1
}

func (s *Session) live() error {
	s.room.mu.Lock()
	defer s.room.mu.Unlock()
	if s.gone || s.room.closed {
		return ErrClosed
	}
	return nil
}

// Remove removes a member from the room (moderators only): every connection of that member, on every
// node, is closed with the "removed" close code.
func (s *Session) Remove(ctx context.Context, identity, reason string) error {
	if !s.actor.Moderator {
		return ErrForbidden
	}
	if err := s.live(); err != nil {
		return err
	}
	reason = strings.Map(dropControl, strings.TrimSpace(reason))
	if utf8.RuneCountInString(reason) > protocol.MaxReasonRunes {
		return fmt.Errorf("%w: reason longer than %d characters", ErrTooLong, protocol.MaxReasonRunes)
	}
	r := s.room
	r.presence.Lock()
	defer r.presence.Unlock()
	r.mu.Lock()
	m, ok := r.members[identity]
	delete(r.leaving, identity)
	r.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %q", ErrNoMember, identity)
	}
	by := s.member
	_, ok, err := r.appendIf(ctx, protocol.Event{Kind: protocol.KindMemberRemoved, Member: &m, By: &by, Reason: reason},
		broker.Update{Key: memberKey(identity), Cond: broker.IfPresent})
	if err == nil && !ok {
		err = fmt.Errorf("%w: %q", ErrNoMember, identity) // left meanwhile
	}
	return err
}
