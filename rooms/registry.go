// Package rooms is the domain of liveforum: a room's state as a fold over the events of its ordered log,
// its members and their roles, chat, moderation, and the node-local registry of rooms.
//
// Every durable change is appended to the room's log through the broker; each node applies the events it
// receives from the broker, in offset order, to its copy of the room's state and fans them out to its
// local members. Nothing here knows about HTTP, websockets or Redis: members are reached through a Sink.
//
// Concurrency: Registry, Room and Session methods are safe for concurrent use. A room's state is guarded
// by its mutex; no lock is held while calling the broker, except the room's presence lock, which only
// serialises that room's join and leave decisions with their appends.
package rooms

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/liveforum/liveforum/broker"
	"github.com/liveforum/liveforum/protocol"
)

// Config configures a Registry. Zero values take the documented defaults.
type Config struct {
	// HistoryOnJoin is how many recent chat messages a fresh join receives (default 100; negative: none).
	HistoryOnJoin int
	// MaxRecover is the most missed events a recovery replays before it reports the history gone
	// (default 10000).
	MaxRecover int
	// MaxReplyBytes bounds the events in a join reply (default 4 MiB): a recovery that would need more
	// is answered as a fresh join (the client reloads), and the recent history is cut to its newest part.
	MaxReplyBytes int
	// EmptyTTL is how long a room lives with nobody in it (default 10 minutes).
	EmptyTTL time.Duration
	// LeaveGrace is how long a member whose connection dropped stays in the room before its leave is
	// logged, so a quick reconnect is seamless (default 0: leave at once).
	LeaveGrace time.Duration
	// MaxMembers is the default member limit of a room (default 10000).
	MaxMembers int
	// MaxChatRunes bounds a chat message (default 2000 characters).
	MaxChatRunes int
	// FanoutDelay batches a busy room's events: after an event goes out, the events of the next
	// FanoutDelay are sent together, one frame per member, which saves a socket write per member per
	// event. The first event after a quiet spell goes out at once. Rooms with more than a thousand local
	// members wait FanoutDelay per thousand. 0 sends every event at once.
	FanoutDelay time.Duration
	// SweepEvery is how often expiries and delayed leaves are checked (default 1 s).
	SweepEvery time.Duration
	// Node identifies this node among the nodes sharing the broker (default: a random id). Members'
	// joins name the node that holds their connection, as Node plus a suffix drawn at each start, so
	// that the members of a node that crashed and restarted at once are still logged as left when its
	// previous run's heartbeat expires.
	Node string
	// NodeTTL is how long this node's heartbeat lasts in the broker; it is renewed every third of it. A
	// node whose heartbeat has expired is dead: the members it held are logged as left, once, by a node
	// that notices (default 10 s).
	NodeTTL time.Duration
	// UnloadAfter is how long a room with members on other nodes but none here stays loaded (subscribed)
	// on this node (default 1 minute).
	UnloadAfter time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives the registry's logs (default slog.Default()).
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.HistoryOnJoin == 0 {
		c.HistoryOnJoin = 100
	}
	if c.MaxRecover <= 0 {
		c.MaxRecover = 10000
	}
	if c.MaxReplyBytes <= 0 {
		c.MaxReplyBytes = 4 << 20
	}
	if c.EmptyTTL <= 0 {
		c.EmptyTTL = 10 * time.Minute
	}
	if c.MaxMembers <= 0 {
		c.MaxMembers = 10000
	}
	if c.MaxChatRunes <= 0 {
		c.MaxChatRunes = 2000
	}
	if c.SweepEvery <= 0 {
		c.SweepEvery = time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Node == "" {
		c.Node = newNodeID()
	}
	if c.NodeTTL <= 0 {
		c.NodeTTL = 10 * time.Second
	}
	if c.UnloadAfter <= 0 {
		c.UnloadAfter = time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Registry holds the rooms loaded on this node.
type Registry struct {
	b    broker.Broker
	cfg  Config
	log  *slog.Logger
	node string // cfg.Node and this run's suffix

	createMu sync.Mutex // serialises the check and the write of a room's creation

	mu     sync.Mutex
	rooms  map[string]*Room
	closed bool

	stop chan struct{}
	wg   sync.WaitGroup

	hb heartbeat
}

// heartbeat is this node's liveness in the broker. Guarded by its own mutex.
type heartbeat struct {
	mu      sync.Mutex
	last    time.Time // when the last heartbeat succeeded
	healthy time.Time // since when every heartbeat has succeeded (zero after a failure)
}

func newNodeID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Node returns the id this run of the node heartbeats under (Config.Node and a suffix).
func (g *Registry) Node() string { return g.node }

// NewRegistry returns a registry over the broker and starts its sweeper and heartbeat; Close stops them.
func NewRegistry(b broker.Broker, cfg Config) *Registry {
	cfg.defaults()
	g := &Registry{b: b, cfg: cfg, log: cfg.Logger, node: cfg.Node + "~" + newNodeID()[:6], rooms: map[string]*Room{}, stop: make(chan struct{})}
	g.wg.Add(2)
	go g.sweeper()
	go g.heartbeats()
	return g
}

// Close stops the sweeper and the heartbeat and closes every loaded room's local sessions with the given
// close code.
func (g *Registry) Close(code int, reason string) {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.closed = true
	rooms := make([]*Room, 0, len(g.rooms))
	for _, r := range g.rooms {
		rooms = append(rooms, r)
	}
	g.mu.Unlock()
	close(g.stop)
	g.wg.Wait()
	for _, r := range rooms {
		r.mu.Lock()
		r.flushLocked()
		for _, s := range r.sessions.s {
			s.sink.Close(code, reason)
		}
		r.mu.Unlock()
	}
}

func (g *Registry) sweeper() {
	defer g.wg.Done()
	t := time.NewTicker(g.cfg.SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
			g.Sweep(context.Background())
		}
	}
}

// Sweep renews this node's heartbeat, logs the leaves whose grace has passed and those of members held by
// dead nodes, expires rooms that have been empty for their TTL and unloads rooms that have no local
// member. The sweeper calls it periodically; tests call it after moving the clock.
func (g *Registry) Sweep(ctx context.Context) {
	g.beat(ctx, false)
	g.mu.Lock()
	rooms := make([]*Room, 0, len(g.rooms))
	for _, r := range g.rooms {
		if r.loaded() {
			rooms = append(rooms, r)
		}
	}
	g.mu.Unlock()
	now := g.cfg.Now()
	for _, r := range rooms {
		r.sweepLeaves(ctx, now)
		r.reassert(ctx)
	}
	g.sweepDeadNodes(ctx, rooms)
	for _, r := range rooms {
		switch {
		case r.expired(now):
			if err := g.remove(ctx, r, removeExpired); err != nil {
				g.log.Warn("room expiry failed", "room", r.name, "err", err)
			}
		case r.idle(now):
			if err := g.remove(ctx, r, removeUnload); err != nil {
				g.log.Warn("room unload failed", "room", r.name, "err", err)
			}
		}
	}
}

// Create stores a new room and loads it on this node.
func (g *Registry) Create(ctx context.Context, s Settings) (protocol.RoomInfo, error) {
	if s.Created.IsZero() {
		s.Created = g.cfg.Now()
	}
	if err := s.Validate(); err != nil {
		return protocol.RoomInfo{}, err
	}
	if err := g.createRecord(ctx, s); err != nil {
		return protocol.RoomInfo{}, err
	}
	r, err := g.room(ctx, s.Name, nil)
	if err != nil {
		return protocol.RoomInfo{}, err
	}
	return r.Info(), nil
}

// createRecord stores a new room's record, or fails with ErrExists. The check and the write are one step
// for this node's creations (a broker with a create-if-absent primitive would make it one for all nodes).
func (g *Registry) createRecord(ctx context.Context, s Settings) error {
	g.createMu.Lock()
	defer g.createMu.Unlock()
	if _, err := g.b.LoadRoom(ctx, s.Name); err == nil {
		return fmt.Errorf("%w: %q", ErrExists, s.Name)
	} else if !errors.Is(err, broker.ErrNotFound) {
		return err
	}
	return g.save(ctx, s)
}

func (g *Registry) save(ctx context.Context, s Settings) error {
	rec, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return g.b.SaveRoom(ctx, s.Name, rec)
}

// Status is a room as the admin API shows it.
type Status struct {
	Settings
	Members  int    `json:"members"`
	Local    int    `json:"local_connections"`
	Epoch    string `json:"epoch,omitempty"`
	Offset   uint64 `json:"offset"`
	Loaded   bool   `json:"loaded"`
	EmptyFor string `json:"empty_for,omitempty"`
}

// Get returns a room's status.
func (g *Registry) Get(ctx context.Context, name string) (Status, error) {
	if r := g.loadedRoom(name); r != nil {
		return r.status(), nil
	}
	s, err := g.load(ctx, name)
	if err != nil {
		return Status{}, err
	}
	return Status{Settings: s}, nil
}

// List returns every room, by name.
func (g *Registry) List(ctx context.Context) ([]Status, error) {
	recs, err := g.b.ListRooms(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Status, 0, len(recs))
	for name, rec := range recs {
		if r := g.loadedRoom(name); r != nil {
			out = append(out, r.status())
			continue
		}
		var s Settings
		if json.Unmarshal(rec, &s) == nil {
			out = append(out, Status{Settings: s})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// CloseRoom ends a room: its members are told (room.closed), disconnected, and its log and record removed.
func (g *Registry) CloseRoom(ctx context.Context, name, reason string) error {
	r, err := g.room(ctx, name, nil)
	if err != nil {
		return err
	}
	return g.remove(ctx, r, removeClose, reason)
}

// How a room leaves this node's registry.
const (
	removeClose   = iota // closed by an operator: room.closed is logged, the log and record deleted
	removeExpired        // empty for its TTL: the log and record are deleted
	removeUnload         // no local member for a while, members elsewhere: only this node forgets it
)

// remove takes a room out of this node's registry (see the remove* modes). An expiry only proceeds if the
// room is still empty, an unload if it still has no local session.
func (g *Registry) remove(ctx context.Context, r *Room, mode int, reason ...string) error {
	announce := mode == removeClose
	var checked broker.Position // for an expiry: the log's position when it was found empty
	if mode == removeExpired {
		// Another node may have logged a join this node has not folded yet: the broker has the last word.
		r.mu.Lock()
		applied := r.applied
		r.mu.Unlock()
		top, state, err := g.b.State(ctx, r.name)
		if err != nil {
			return err
		}
		if len(state) > 0 || top.Offset > applied {
			return nil
		}
		checked = top
	}
	if announce {
		why := ""
		if len(reason) > 0 {
			why = reason[0]
		}
		info := r.Info()
		if _, err := r.append(ctx, protocol.Event{Kind: protocol.KindRoomClosed, Room: &info, Reason: why}); err != nil {
			return err
		}
	}
	g.mu.Lock()
	if r.removed != nil { // another removal is under way
		done, unloading := r.removed, r.unloaded
		g.mu.Unlock()
		if mode != removeClose || !unloading {
			return nil
		}
		// An unload only forgets the room on this node: its log and record are still to be deleted.
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
		return errors.Join(g.b.RemoveLog(ctx, r.name), g.b.DeleteRoom(ctx, r.name))
	}
	r.mu.Lock()
	if mode == removeExpired && !r.emptyLocked() || mode == removeUnload && !r.idleLocked() {
		r.mu.Unlock()
		g.mu.Unlock()
		return nil
	}
	r.removed = make(chan struct{})
	r.closed = true
	r.unloaded = mode == removeUnload
	r.flushLocked()
	for _, s := range r.sessions.s {
		s.sink.Kick(r.name, protocol.CloseRoomClosed, "room closed")
	}
	r.clearSessionsLocked()
	for _, w := range r.waiters { // unsubscribed below: what they wait for will not be folded here
		close(w.done)
	}
	r.waiters = nil
	r.mu.Unlock()
	g.mu.Unlock()
	// The room stays in g.rooms until its log and record are gone, so that a join meanwhile waits for
	// the clean-up instead of loading the record and subscribing just before they are deleted.
	err := g.b.Unsubscribe(ctx, r.name)
	switch mode {
	case removeClose:
		err = errors.Join(err, g.b.RemoveLog(ctx, r.name), g.b.DeleteRoom(ctx, r.name))
	case removeExpired:
		// Only if nobody joined anywhere since the check: then this node has merely forgotten the room.
		gone, rerr := g.b.RemoveLogIf(ctx, r.name, checked)
		err = errors.Join(err, rerr)
		if gone {
			err = errors.Join(err, g.b.DeleteRoom(ctx, r.name))
		} else if rerr == nil {
			mode = removeUnload
		}
	}
	g.mu.Lock()
	if g.rooms[r.name] == r {
		delete(g.rooms, r.name)
	}
	close(r.removed)
	g.mu.Unlock()
	if mode == removeUnload {
		g.log.Debug("room unloaded: no local member", "room", r.name)
	} else {
		g.log.Info("room removed", "room", r.name, "closed", announce)
	}
	return err
}

func (g *Registry) loadedRoom(name string) *Room {
	g.mu.Lock()
	r := g.rooms[name]
	g.mu.Unlock()
	if r == nil || !r.loaded() {
		return nil
	}
	return r
}

func (g *Registry) load(ctx context.Context, name string) (Settings, error) {
	rec, err := g.b.LoadRoom(ctx, name)
	if errors.Is(err, broker.ErrNotFound) {
		return Settings{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	if err != nil {
		return Settings{}, err
	}
	var s Settings
	if err := json.Unmarshal(rec, &s); err != nil {
		return Settings{}, fmt.Errorf("rooms: bad record of room %q: %w", name, err)
	}
	return s, nil
}

// room returns the loaded room, loading it from its record if needed. When the room has no record and
// create is not nil, the room is created with *create first.
func (g *Registry) room(ctx context.Context, name string, create *Settings) (*Room, error) {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil, ErrRegistryClose
	}
	r := g.rooms[name]
	if r != nil && r.removed != nil { // being removed: wait for the clean-up, then look again
		done := r.removed
		g.mu.Unlock()
		select {
		case <-done:
			return g.room(ctx, name, create)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if r == nil {
		r = &Room{g: g, name: name, ready: make(chan struct{}), local: map[string]*Session{},
			members: map[string]protocol.Member{}, nodes: map[string]string{}, lost: map[string]struct{}{},
			leaving: map[string]time.Time{}}
		g.rooms[name] = r
		g.mu.Unlock()
		r.loadErr = g.loadRoom(ctx, r, create)
		if r.loadErr != nil {
			g.mu.Lock()
			if g.rooms[name] == r {
				delete(g.rooms, name)
			}
			g.mu.Unlock()
		}
		close(r.ready)
	} else {
		g.mu.Unlock()
	}
	select {
	case <-r.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if r.loadErr != nil {
		return nil, r.loadErr
	}
	return r, nil
}

func (g *Registry) loadRoom(ctx context.Context, r *Room, create *Settings) error {
	s, err := g.load(ctx, r.name)
	if errors.Is(err, ErrNotFound) && create != nil {
		s = *create
		s.Name = r.name
		if s.Created.IsZero() {
			s.Created = g.cfg.Now()
		}
		if err = s.Validate(); err == nil {
			err = g.createRecord(ctx, s)
		}
		if errors.Is(err, ErrExists) { // created meanwhile by someone else: take theirs
			s, err = g.load(ctx, r.name)
		} else if err == nil {
			g.log.Info("room created on first join", "room", r.name)
		}
	}
	if err != nil {
		return err
	}
	r.settings = s
	r.emptySince = g.cfg.Now()
	if err := g.b.Subscribe(ctx, r.name, r.handle); err != nil {
		return err
	}
	// The members as of a position, then the events after it: those delivered meanwhile wait in r.early.
	var (
		top   broker.Position
		state map[string][]byte
		h     broker.History
	)
	for try := 0; ; try++ {
		top, state, err = g.b.State(ctx, r.name)
		if err == nil { // the recent chat of a room whose log already exists (loaded again, or on another node)
			h, err = g.b.History(ctx, r.name, broker.HistoryOptions{Limit: max(g.cfg.HistoryOnJoin, 1), Match: isChat})
		}
		if err != nil {
			_ = g.b.Unsubscribe(ctx, r.name)
			return err
		}
		r.mu.Lock()
		// Events are delivered in log order, so an event of another epoch delivered last is from a log
		// that replaced the one read (or from the one it replaced, if the subscription started before
		// that): read the state again, and whichever epoch it has then is the newest.
		if n := len(r.early); n == 0 || r.early[n-1].epoch == top.Epoch || try == 2 {
			break
		}
		r.mu.Unlock()
	}
	defer r.mu.Unlock()
	r.epoch, r.applied = top.Epoch, top.Offset
	for k, v := range state {
		var hm heldMember
		if len(k) < 2 || k[:2] != "m:" || json.Unmarshal(v, &hm) != nil || memberKey(hm.Member.Identity) != k {
			g.log.Warn("unreadable room state entry", "room", r.name, "key", k)
			continue
		}
		id := hm.Member.Identity
		r.members[id], r.nodes[id] = hm.Member, hm.Node
		if hm.Node == g.node {
			// Held by this node before it restarted (a fixed node id): nobody is connected here now.
			r.leaving[id] = g.cfg.Now().Add(g.cfg.LeaveGrace)
		}
	}
	if h.Top.Epoch == top.Epoch && g.cfg.HistoryOnJoin > 0 {
		for _, ev := range h.Events {
			if ev.Offset <= top.Offset { // later ones are among the early events
				r.recent = append(r.recent, ev)
			}
		}
	}
	r.folding = true
	early := r.early
	r.early = nil
	for _, e := range early {
		if e.epoch != top.Epoch || e.ev.Offset <= top.Offset {
			continue // included in the state, or from a log that the state's replaced
		}
		var ev protocol.Event
		chat := isChat(e.ev.Data)
		if !chat && json.Unmarshal(e.ev.Data, &ev) != nil {
			continue
		}
		r.foldLocked(e.epoch, e.ev, chat, &ev)
	}
	return nil
}
