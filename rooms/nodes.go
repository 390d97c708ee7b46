package rooms

import (
	"context"
	"encoding/json"
	"time"

	"github.com/liveforum/liveforum/broker"
	"github.com/liveforum/liveforum/protocol"
)

// Presence across nodes.
//
// The members of a room are a fold of its member.joined/left/removed events, and also a key of the room's
// state in the broker ("m:<identity>" → the member and the node holding its connection), which every
// presence append updates in the same atomic step. A node that loads a room reads that state with the
// position it is as of, then folds the events after it. The appends are conditional on the state, which
// makes each decision hold across nodes: a join is logged unless the member is already there as the same
// member on this node; a leave only if the member is still this node's; a dead node's member's leave only
// if it is still that node's, so exactly one node logs it however many notice.
//
// Each node heartbeats under NodeTTL. A node that has itself been heartbeating without failure for a whole
// NodeTTL, and finds the heartbeat of a node holding members of one of its rooms expired, logs those
// members' leaves. The wait protects against declaring everyone dead right after a broker outage, during
// which no node could heartbeat.

// memberKey is the key of a member in the room's broker state.
func memberKey(identity string) string { return "m:" + identity }

// heldMember is a member and the node holding its connection: the value of its memberKey.
type heldMember struct {
	Node   string          `json:"node"`
	Member protocol.Member `json:"member"`
}

// memberValue encodes a member's state value. Conditions compare these bytes, so the encoding must be the
// same for the same member and node on every node.
func memberValue(node string, m protocol.Member) []byte {
	b, _ := json.Marshal(heldMember{Node: node, Member: m}) // cannot fail: strings only
	return b
}

// heartbeats renews this node's heartbeat every third of NodeTTL until the registry closes. It runs
// apart from the sweeper, so that neither a sweep interval longer than that nor a sweep slowed down by
// the broker (appends held while a Redis master is down) lets the heartbeat lapse, which would have the
// other nodes log this node's members as left.
func (g *Registry) heartbeats() {
	defer g.wg.Done()
	g.beat(context.Background(), true)
	t := time.NewTicker(g.cfg.NodeTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
			g.beat(context.Background(), true)
		}
	}
}

// beat renews this node's heartbeat if a third of NodeTTL has passed since the last one (or force).
func (g *Registry) beat(ctx context.Context, force bool) {
	g.hb.mu.Lock()
	defer g.hb.mu.Unlock()
	now := time.Now() // real time: the broker expires heartbeats on its own clock
	if !force && now.Sub(g.hb.last) < g.cfg.NodeTTL/3 {
		return
	}
	if err := g.b.Heartbeat(ctx, g.node, g.cfg.NodeTTL); err != nil {
		if !g.hb.healthy.IsZero() {
			g.log.Warn("node heartbeat failed", "node", g.node, "err", err)
		}
		g.hb.healthy = time.Time{}
		return
	}
	if g.hb.healthy.IsZero() {
		g.hb.healthy = now
	}
	g.hb.last = now
}

// ensureBeat heartbeats now if this node has no current heartbeat, so a join never names a node that
// others would take for dead.
func (g *Registry) ensureBeat(ctx context.Context) {
	g.hb.mu.Lock()
	fresh := !g.hb.last.IsZero() && time.Since(g.hb.last) < g.cfg.NodeTTL/2
	g.hb.mu.Unlock()
	if !fresh {
		g.beat(ctx, true)
	}
}

// mayJudge reports whether this node's own heartbeats have held for a whole NodeTTL, so that an expired
// heartbeat of another node means that node stopped, not that the broker was away.
func (g *Registry) mayJudge() bool {
	g.hb.mu.Lock()
	defer g.hb.mu.Unlock()
	return !g.hb.healthy.IsZero() && time.Since(g.hb.healthy) >= g.cfg.NodeTTL
}

// sweepDeadNodes logs the leaves of the members held by nodes whose heartbeat has expired.
func (g *Registry) sweepDeadNodes(ctx context.Context, rooms []*Room) {
	if !g.mayJudge() {
		return
	}
	seen := map[string]bool{}
	var nodes []string
	for _, r := range rooms {
		r.mu.Lock()
		for _, n := range r.nodes {
			if n != g.node && n != "" && !seen[n] { // "": logged before nodes were named
				seen[n] = true
				nodes = append(nodes, n)
			}
		}
		r.mu.Unlock()
	}
	if len(nodes) == 0 {
		return
	}
	alive, err := g.b.Alive(ctx, nodes)
	if err != nil {
		g.log.Warn("could not check other nodes' heartbeats", "err", err)
		return
	}
	for _, r := range rooms {
		r.mu.Lock()
		var gone []heldMember
		for id, n := range r.nodes {
			if n != g.node && n != "" && !alive[n] {
				gone = append(gone, heldMember{Node: n, Member: r.members[id]})
			}
		}
		r.mu.Unlock()
		for _, h := range gone {
			m := h.Member
			_, ok, err := r.appendIf(ctx, protocol.Event{Kind: protocol.KindMemberLeft, Member: &m, Reason: "node lost"},
				broker.Update{Key: memberKey(m.Identity), Cond: broker.IfEqual, Expect: memberValue(h.Node, m)})
			switch {
			case err != nil:
				g.log.Warn("could not log a dead node's member leaving; will retry", "room", r.name, "member", m.Identity, "err", err)
			case ok:
				g.log.Info("member of a dead node left", "room", r.name, "member", m.Identity, "node", h.Node)
			}
		}
	}
}

// reassert logs again the joins of this node's live members whose leave another node logged (it took
// this node for dead while it could not heartbeat).
func (r *Room) reassert(ctx context.Context) {
	r.mu.Lock()
	var ids []string
	for id := range r.lost {
		ids = append(ids, id)
	}
	clear(r.lost)
	r.mu.Unlock()
	for _, id := range ids {
		r.presence.Lock()
		r.mu.Lock()
		s := r.local[id]
		_, present := r.members[id]
		r.mu.Unlock()
		if s != nil && !present {
			m := s.member
			if _, _, err := r.logJoin(ctx, m); err != nil {
				r.g.log.Warn("could not log a member's join again", "room", r.name, "member", id, "err", err)
				r.mu.Lock()
				r.lost[id] = struct{}{}
				r.mu.Unlock()
			} else {
				r.g.log.Info("member logged as joined again after this node was taken for dead", "room", r.name, "member", id)
			}
		}
		r.presence.Unlock()
	}
}

// logJoin appends m's join as held by this node, unless the room's state already says exactly that. The
// caller holds r.presence.
func (r *Room) logJoin(ctx context.Context, m protocol.Member) (broker.Position, bool, error) {
	r.g.ensureBeat(ctx)
	v := memberValue(r.g.node, m)
	return r.appendIf(ctx, protocol.Event{Kind: protocol.KindMemberJoined, Member: &m, Node: r.g.node},
		broker.Update{Key: memberKey(m.Identity), Value: v, Cond: broker.IfNotEqual, Expect: v})
}
