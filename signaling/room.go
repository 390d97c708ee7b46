package signaling

import (
	"fmt"
	"sort"
	"strings"
	"sync"
)

// Room is one room's SFU: its publishers and subscribers.
type Room struct {
	e    *Engine
	name string

	mu    sync.Mutex
	pubs  map[string]*Publisher // by member identity
	subs  map[*Subscriber]struct{}
	mutes map[string]bool // "identity/kind" muted by a moderator: holds for the member's later publishers
}

// Mute stops (or resumes) forwarding a member's audio or video ("audio", "video") in the room, now and
// for whatever the member publishes later, until unmuted.
func (r *Room) Mute(identity, kind string, muted bool) {
	kind = strings.ToLower(kind)
	r.mu.Lock()
	if r.mutes == nil {
		r.mutes = map[string]bool{}
	}
	if muted {
		r.mutes[identity+"/"+kind] = true
	} else {
		delete(r.mutes, identity+"/"+kind)
	}
	p := r.pubs[identity]
	r.mu.Unlock()
	if p != nil {
		p.applyMute(kind, muted)
	}
}

func (r *Room) isMuted(identity, kind string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mutes[identity+"/"+strings.ToLower(kind)]
}

// Name returns the room's name.
func (r *Room) Name() string { return r.name }

func (r *Room) empty() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pubs) == 0 && len(r.subs) == 0
}

// Publisher returns the member's publisher session, or nil.
func (r *Room) Publisher(identity string) *Publisher {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pubs[identity]
}

// Names returns the display names of the room's publishers, by identity (those given one).
func (r *Room) Names() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]string, len(r.pubs))
	for id, p := range r.pubs {
		if p.name != "" {
			out[id] = p.name
		}
	}
	return out
}

// Publishers returns the identities publishing now, sorted.
func (r *Room) Publishers() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.pubs))
	for id := range r.pubs {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// StopPublisher ends the member's publishing at once (demotion, a moderator's stop): its tracks stop for
// every subscriber. It reports whether the member was publishing.
func (r *Room) StopPublisher(identity string) bool {
	r.mu.Lock()
	p := r.pubs[identity]
	r.mu.Unlock()
	if p == nil {
		return false
	}
	p.Close()
	return true
}

// tracks returns every track on the room's stage.
func (r *Room) tracks() []*source {
	r.mu.Lock()
	pubs := make([]*Publisher, 0, len(r.pubs))
	for _, p := range r.pubs {
		pubs = append(pubs, p)
	}
	r.mu.Unlock()
	var out []*source
	for _, p := range pubs {
		out = append(out, p.tracks()...)
	}
	return out
}

func (r *Room) subscribers() []*Subscriber {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Subscriber, 0, len(r.subs))
	for s := range r.subs {
		out = append(out, s)
	}
	return out
}

// trackAdded offers a new stage track to every subscriber.
func (r *Room) trackAdded(u *source) {
	for _, s := range r.subscribers() {
		s.trackAdded(u)
	}
}

// trackRemoved takes an ended track away from every subscriber.
func (r *Room) trackRemoved(u *source) {
	for _, s := range r.subscribers() {
		s.trackRemoved(u)
	}
}

// enlist runs add (which registers a session) under the room's lock, first putting the room back into its
// engine if the engine forgot it meanwhile (it was empty for a moment): a session must never land in a room
// that later lookups do not find. It fails, rarely, when another room of the name has taken its place.
func (r *Room) enlist(add func()) error {
	r.e.mu.Lock()
	defer r.e.mu.Unlock()
	if r.e.closed {
		return ErrClosed
	}
	if cur := r.e.rooms[r.name]; cur != r {
		if cur != nil {
			return fmt.Errorf("%w: room %q was renewed meanwhile; try again", ErrClosed, r.name)
		}
		r.e.rooms[r.name] = r
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	add()
	return nil
}

// forgetIfFailed drops the room from its engine if a session failed to start in it and it has none
// (bad offers must not leave empty rooms behind).
func (r *Room) forgetIfFailed(err *error) {
	if *err != nil {
		r.e.forget(r)
	}
}

func (r *Room) removePublisher(p *Publisher) {
	r.mu.Lock()
	if r.pubs[p.identity] == p {
		delete(r.pubs, p.identity)
	}
	r.mu.Unlock()
	r.e.forget(r)
}

func (r *Room) removeSubscriber(s *Subscriber) {
	r.mu.Lock()
	delete(r.subs, s)
	r.mu.Unlock()
	r.e.forget(r)
}

// closeAll ends every session of the room.
func (r *Room) closeAll() {
	r.mu.Lock()
	pubs := make([]*Publisher, 0, len(r.pubs))
	for _, p := range r.pubs {
		pubs = append(pubs, p)
	}
	subs := make([]*Subscriber, 0, len(r.subs))
	for s := range r.subs {
		subs = append(subs, s)
	}
	r.mu.Unlock()
	for _, p := range pubs {
		p.Close()
	}
	for _, s := range subs {
		s.Close()
	}
}
