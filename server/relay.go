package server

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/liveforum/liveforum/auth"
	"github.com/liveforum/liveforum/protocol"
	"github.com/liveforum/liveforum/signaling"
)

// The media relay. A room's media lives on one node: the holder of the room's media lease in the broker
// (taken by the first node that needs it, renewed while its SFU has sessions in the room, left to lapse
// after). A member connected to another node has its media.* requests sent to the holder's inbox; the
// holder answers, and sends its offers, to the member's node, which passes them to the connection. Media
// then flows between the member's browser and the holder.
//
// When the holder dies: its lease lapses within the lease's TTL (Config.MediaLeaseTTL); the members' peer
// connections fail, they subscribe or publish again, and the first node asked after the lapse takes the
// lease. Meanwhile no request waits for a dead node: a relayed request gets its answer within
// relayReplyTimeout, and sooner when the holder's heartbeat (the nodes' liveness in the broker, the one
// rooms/nodes.go judges members by) has expired: a request to a holder already known dead is answered
// `unavailable` (WHIP/WHEP: 503) at once, and one waiting for a holder found dead meanwhile as soon as the
// relay's watchdog sees it. The lease is not taken over from a dead holder before it lapses: the broker
// offers no compare-and-set of a lease's holder, and heartbeat and lease expire on the same scale.
//
// Each side also forgets what it holds for a node that died: the media node ends the relayed sessions of
// members whose node is dead, and a member's node ends its WHIP/WHEP sessions that ran on a dead media node.

// relayReplyTimeout bounds the wait for the media node's answer to a relayed request (websocket media.*,
// WHIP and WHEP POSTs). After it the request is answered `unavailable` (503 over HTTP).
const relayReplyTimeout = 10 * time.Second

// relayWatchEvery is how often the relay checks the heartbeat of the media nodes of requests waiting for
// longer than that.
const relayWatchEvery = time.Second

var (
	// errMediaNodeDown answers a request whose room's media node is known dead while its lease still holds.
	errMediaNodeDown = fmt.Errorf("%w: the room's media node is down; try again in a few seconds", signaling.ErrClosed)
	// errMediaNodeSilent answers a relayed request that the media node did not answer in time.
	errMediaNodeSilent = fmt.Errorf("%w: the room's media node did not answer; try again", signaling.ErrClosed)
)

// relayMsg is what nodes tell each other about relayed media.
type relayMsg struct {
	// req, close, http, httpclose: to the media node; resp, offer, httpresp, httpdone: back.
	Op       string          `json:"op"`
	From     string          `json:"from"` // the member's node
	Conn     uint64          `json:"conn"` // the member's connection there
	Room     string          `json:"room"`
	ID       uint64          `json:"id,omitempty"`
	Type     string          `json:"type,omitempty"`
	Identity string          `json:"identity,omitempty"`
	Name     string          `json:"name,omitempty"` // the member's display name
	Role     auth.Role       `json:"role,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
	Code     string          `json:"code,omitempty"`
	Message  string          `json:"message,omitempty"`
}

type remoteKey struct {
	node string
	conn uint64
	room string
}

// waitKey names a relayed request waiting for its answer: a connection's request (conn, room and the
// client's id) or, with http set, a WHIP/WHEP offer (id: the relay's own).
type waitKey struct {
	http bool
	conn uint64
	room string
	id   uint64
}

// waiter is a relayed request waiting for the media node's answer.
type waiter struct {
	holder string
	typ    string // the request's type, for the logs
	since  time.Time
	timer  *time.Timer
	ch     chan relayMsg // WHIP/WHEP: where the answer goes
}

// relay is the server's side of media across nodes.
type relay struct {
	s        *Server
	node     string
	ttl      time.Duration // of media leases
	nextID   atomic.Uint64
	sweeping atomic.Bool // a sweep runs (renew starts one at a time)

	mu       sync.Mutex
	conns    map[uint64]*conn          // local connections with media relayed elsewhere
	remote   map[remoteKey]*remotePeer // members of other nodes whose media is here
	held     map[string]bool           // rooms whose media lease this node holds
	waits    map[waitKey]*waiter       // relayed requests waiting for their answer
	out      map[uint64]*outHTTP       // WHIP/WHEP sessions of this node running on another node, by id
	httpEnds map[remoteKey]*httpEnd    // WHIP/WHEP sessions here for other nodes (conn: their id)
	suspects map[string]time.Time      // nodes found dead, since when (cleanup waits a lease TTL)
	down     map[string]bool           // dead media nodes already logged
}

func newRelay(s *Server, node string) *relay {
	return &relay{s: s, node: node, ttl: s.cfg.MediaLeaseTTL, conns: map[uint64]*conn{}, remote: map[remoteKey]*remotePeer{},
		held: map[string]bool{}, waits: map[waitKey]*waiter{}, out: map[uint64]*outHTTP{}, httpEnds: map[remoteKey]*httpEnd{},
		suspects: map[string]time.Time{}, down: map[string]bool{}}
}

// start listens to this node's inbox, renews the leases it holds and watches the nodes it relays to.
func (r *relay) start() error {
	if err := r.s.b.Inbox(r.s.ctx, r.node, r.onMessage); err != nil {
		return err
	}
	r.s.pinger.Add(2)
	go r.renew()
	go r.watch()
	return nil
}

// holder returns the room's media node, taking the lease when nobody holds it.
func (r *relay) holder(ctx context.Context, room string) (string, error) {
	h, err := r.s.b.Lease(ctx, "media:"+room, r.node, r.ttl)
	if err != nil {
		return "", err
	}
	if h == r.node {
		r.mu.Lock()
		taken := !r.held[room]
		r.held[room] = true
		r.mu.Unlock()
		if taken {
			r.s.log.Info("this node holds the room's media", "room", room, "node", r.node)
		}
	}
	return h, nil
}

// isDown reports whether node's heartbeat has expired while this node's own holds (so that the broker
// was not simply away). An error counts as alive: the request is relayed and its timeout applies.
func (r *relay) isDown(ctx context.Context, room, node string) bool {
	dead, err := r.deadAmong(ctx, []string{node})
	if err != nil || !dead[node] {
		return false
	}
	r.mu.Lock()
	first := !r.down[node]
	r.down[node] = true
	r.mu.Unlock()
	if first {
		r.s.log.Warn("a room's media node is down: its rooms' media requests are answered unavailable until its lease lapses",
			"room", room, "node", node, "lease_ttl", r.ttl)
	}
	return true
}

// deadAmong returns which of nodes have no heartbeat. It fails when this node's own heartbeat is missing
// too: then the broker was away, and nobody can be judged.
func (r *relay) deadAmong(ctx context.Context, nodes []string) (map[string]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	alive, err := r.s.b.Alive(ctx, append([]string{r.node}, nodes...))
	if err != nil {
		return nil, err
	}
	if !alive[r.node] {
		return nil, fmt.Errorf("this node's own heartbeat is missing")
	}
	dead := map[string]bool{}
	for _, n := range nodes {
		if !alive[n] {
			dead[n] = true
		}
	}
	return dead, nil
}

// renew keeps the leases of rooms with media sessions here, and lets the others lapse; it also forgets
// what this node holds for nodes that died.
func (r *relay) renew() {
	defer r.s.pinger.Done()
	t := time.NewTicker(r.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-r.s.ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		var rooms []string
		for room := range r.held {
			if r.s.cfg.Media.Active(room) {
				rooms = append(rooms, room)
			} else {
				delete(r.held, room)
			}
		}
		r.mu.Unlock()
		for _, room := range rooms {
			ctx, cancel := context.WithTimeout(r.s.ctx, 2*time.Second)
			h, err := r.s.b.Lease(ctx, "media:"+room, r.node, r.ttl)
			cancel()
			if err == nil && h != r.node {
				r.s.log.Warn("lost a room's media lease", "room", room, "holder", h)
				r.mu.Lock()
				delete(r.held, room)
				r.mu.Unlock()
			}
		}
		// Not on this goroutine: ending a dead node's sessions can wait on a request in progress, and the
		// leases must be renewed meanwhile.
		if r.sweeping.CompareAndSwap(false, true) {
			r.s.pinger.Add(1) // renew holds one: the group is not at zero
			go func() {
				defer r.s.pinger.Done()
				defer r.sweeping.Store(false)
				r.sweep(time.Now())
			}()
		}
	}
}

// sweep ends what this node holds for nodes found dead for a whole lease TTL in a row (every check
// between succeeding, with this node's own heartbeat present): the media of their members here, and this
// node's WHIP/WHEP sessions that ran on them. The wait keeps a broker outage, after which every heartbeat
// has expired until the nodes renew them, from ending anyone's media.
func (r *relay) sweep(now time.Time) {
	r.mu.Lock()
	seen := map[string]bool{}
	var nodes []string
	add := func(n string) {
		if n != r.node && !seen[n] {
			seen[n] = true
			nodes = append(nodes, n)
		}
	}
	for k := range r.remote {
		add(k.node)
	}
	for k := range r.httpEnds {
		add(k.node)
	}
	for _, o := range r.out {
		add(o.holder)
	}
	r.mu.Unlock()
	if len(nodes) == 0 {
		r.mu.Lock()
		clear(r.suspects)
		r.mu.Unlock()
		return
	}
	dead, err := r.deadAmong(r.s.ctx, nodes)
	r.mu.Lock()
	if err != nil {
		clear(r.suspects)
		r.mu.Unlock()
		return
	}
	var gone []string
	for n := range r.suspects {
		if !dead[n] {
			delete(r.suspects, n)
		}
	}
	for n := range dead {
		since, ok := r.suspects[n]
		switch {
		case !ok:
			r.suspects[n] = now
		case now.Sub(since) >= r.ttl:
			gone = append(gone, n)
			delete(r.suspects, n)
		}
	}
	r.mu.Unlock()
	for _, n := range gone {
		r.forgetNode(n)
	}
}

// forgetNode ends the media here of a dead node's members and this node's WHIP/WHEP sessions that ran there.
func (r *relay) forgetNode(node string) {
	r.mu.Lock()
	var peers []*remotePeer
	for k, p := range r.remote {
		if k.node == node {
			peers = append(peers, p)
			delete(r.remote, k)
		}
	}
	var ends []*httpEnd
	for k, e := range r.httpEnds {
		if k.node == node {
			ends = append(ends, e)
			delete(r.httpEnds, k)
		}
	}
	var outs []*outHTTP
	for _, o := range r.out {
		if o.holder == node {
			outs = append(outs, o)
		}
	}
	r.mu.Unlock()
	for _, p := range peers {
		p.close()
	}
	for _, e := range ends {
		e.end()
	}
	for _, o := range outs {
		o.finish()
	}
	if len(peers)+len(ends)+len(outs) > 0 {
		r.s.log.Info("ended the relayed media of a dead node", "node", node,
			"members", len(peers), "http_sessions", len(ends), "sessions_there", len(outs))
	}
}

// watch answers `unavailable` to relayed requests waiting for a media node whose heartbeat has expired,
// without waiting for relayReplyTimeout.
func (r *relay) watch() {
	defer r.s.pinger.Done()
	t := time.NewTicker(relayWatchEvery)
	defer t.Stop()
	for {
		select {
		case <-r.s.ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		r.mu.Lock()
		seen := map[string]bool{}
		var holders []string
		for _, w := range r.waits {
			if now.Sub(w.since) >= relayWatchEvery && !seen[w.holder] {
				seen[w.holder] = true
				holders = append(holders, w.holder)
			}
		}
		r.mu.Unlock()
		if len(holders) == 0 {
			continue
		}
		dead, err := r.deadAmong(r.s.ctx, holders)
		if err != nil || len(dead) == 0 {
			continue
		}
		r.mu.Lock()
		var keys []waitKey
		for k, w := range r.waits {
			if dead[w.holder] {
				keys = append(keys, k)
			}
		}
		r.mu.Unlock()
		n := 0
		for _, k := range keys {
			if r.expire(k, errMediaNodeDown) {
				n++
			}
		}
		if n > 0 {
			r.s.log.Warn("media relay: answered unavailable the requests waiting for a dead media node", "requests", n)
		}
	}
}

// awaitLocked registers a relayed request waiting for its answer, with its timeout. The caller holds r.mu.
func (r *relay) awaitLocked(k waitKey, holder, typ string, ch chan relayMsg) {
	if old := r.waits[k]; old != nil && old.timer != nil {
		old.timer.Stop()
	}
	r.waits[k] = &waiter{holder: holder, typ: typ, since: time.Now(), ch: ch,
		timer: time.AfterFunc(relayReplyTimeout, func() {
			if r.expire(k, errMediaNodeSilent) {
				r.s.log.Warn("media relay: the room's media node did not answer a request in time", "node", holder,
					"room", k.room, "type", typ, "timeout", relayReplyTimeout)
			}
		})}
}

// take removes a waiting request (its answer came, or it is given up); nil if it was not waiting.
func (r *relay) take(k waitKey) *waiter {
	r.mu.Lock()
	w := r.waits[k]
	delete(r.waits, k)
	r.mu.Unlock()
	if w != nil && w.timer != nil {
		w.timer.Stop()
	}
	return w
}

// expire answers a waiting request with err, unless its answer came meanwhile (then it returns false).
func (r *relay) expire(k waitKey, err error) bool {
	w := r.take(k)
	if w == nil {
		return false
	}
	code, msg := errorCode(err)
	m := relayMsg{Op: "resp", Conn: k.conn, Room: k.room, ID: k.id, Code: code, Message: msg}
	if k.http {
		m.Op, m.From = "httpresp", r.node // From: made up here (the media node's answers name nobody)
		w.ch <- m                         // buffered, and only one answer is taken
		return true
	}
	r.deliver(m)
	return true
}

func (r *relay) tell(node string, m relayMsg) {
	data, err := json.Marshal(m)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(r.s.ctx, 5*time.Second)
	defer cancel()
	if err := r.s.b.Tell(ctx, node, data); err != nil {
		r.s.log.Warn("media relay: could not reach a node", "node", node, "err", err)
	}
}

// forward sends a connection's media request to the room's media node; its answer comes back through
// this node's inbox, or is made up here (unavailable) if it does not come in time. A media node known dead
// is not asked.
func (r *relay) forward(ctx context.Context, c *conn, holder string, env protocol.Envelope) error {
	if r.isDown(ctx, env.Room, holder) {
		return errMediaNodeDown
	}
	data, err := json.Marshal(relayMsg{Op: "req", From: r.node, Conn: c.id, Room: env.Room, ID: env.ID, Type: env.Type,
		Identity: c.who.member.Identity, Name: c.who.member.Name, Role: c.who.role, Data: env.Data})
	if err != nil {
		return err
	}
	k := waitKey{conn: c.id, room: env.Room, id: env.ID}
	r.mu.Lock()
	r.conns[c.id] = c
	if env.ID != 0 {
		r.awaitLocked(k, holder, env.Type, nil)
	}
	r.mu.Unlock()
	if err := r.s.b.Tell(ctx, holder, data); err != nil {
		r.take(k)
		return err
	}
	return nil
}

// closeRemote tells the media node that a connection's media in a room is over.
func (r *relay) closeRemote(c *conn, room, holder string) {
	r.tell(holder, relayMsg{Op: "close", From: r.node, Conn: c.id, Room: room})
}

// forget drops a connection that ended, and its requests still waiting.
func (r *relay) forget(c *conn) {
	r.mu.Lock()
	delete(r.conns, c.id)
	var keys []waitKey
	for k := range r.waits {
		if !k.http && k.conn == c.id {
			keys = append(keys, k)
		}
	}
	r.mu.Unlock()
	for _, k := range keys {
		r.take(k)
	}
}

// deliver passes a media node's answer or offer to the local connection it is for.
func (r *relay) deliver(m relayMsg) {
	r.mu.Lock()
	c := r.conns[m.Conn]
	r.mu.Unlock()
	switch {
	case c == nil:
	case m.Op == "offer":
		c.Send(protocol.Marshal(protocol.TypeMediaOffer, 0, m.Room, m.Data))
	case m.Code != "":
		c.Send(protocol.MarshalError(m.ID, m.Room, m.Code, m.Message))
	default:
		c.Send(protocol.Marshal(protocol.TypeReply, m.ID, m.Room, m.Data))
	}
}

// onMessage handles a message of this node's inbox.
func (r *relay) onMessage(data []byte) {
	var m relayMsg
	if err := json.Unmarshal(data, &m); err != nil {
		r.s.log.Warn("media relay: undecodable message", "err", err)
		return
	}
	key := remoteKey{node: m.From, conn: m.Conn, room: m.Room}
	switch m.Op {
	case "req":
		if r.s.cfg.Media == nil || !m.Role.Valid() {
			return
		}
		r.mu.Lock()
		p := r.remote[key]
		if p == nil {
			p = &remotePeer{r: r, key: key, identity: m.Identity, name: m.Name, role: m.Role}
			r.remote[key] = p
		}
		r.mu.Unlock()
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.gone { // its node was found dead meanwhile
			return
		}
		// Done before the member's node gives up on the answer (relayReplyTimeout): a publish that could not
		// answer in time fails here too, rather than leaving a publisher whose member was told unavailable.
		ctx, cancel := context.WithTimeout(r.s.ctx, min(r.s.cfg.RequestTimeout, relayReplyTimeout-time.Second))
		defer cancel()
		env := protocol.Envelope{Type: m.Type, ID: m.ID, Room: m.Room, Data: m.Data}
		if err := r.s.mediaRequest(ctx, p, env); err != nil {
			p.fail(m.ID, m.Room, err)
		}
	case "close":
		r.mu.Lock()
		p := r.remote[key]
		delete(r.remote, key)
		r.mu.Unlock()
		if p != nil {
			p.close()
		}
	case "http":
		r.onHTTP(m)
	case "httpresp":
		if w := r.take(waitKey{http: true, room: m.Room, id: m.ID}); w != nil {
			w.ch <- m
		}
	case "httpclose":
		k := remoteKey{node: m.From, conn: m.ID, room: m.Room}
		r.mu.Lock()
		e := r.httpEnds[k]
		delete(r.httpEnds, k)
		r.mu.Unlock()
		if e != nil {
			e.end()
		}
	case "httpdone":
		r.mu.Lock()
		o := r.out[m.ID]
		r.mu.Unlock()
		if o != nil && o.room == m.Room {
			o.finish()
		}
	case "resp":
		// An answer to a request that is no longer waiting (it was answered unavailable here after its
		// timeout) is dropped: the client has moved on. Notices (id 0) always pass.
		if m.ID != 0 && r.take(waitKey{conn: m.Conn, room: m.Room, id: m.ID}) == nil {
			r.s.log.Debug("media relay: a late answer dropped", "room", m.Room, "id", m.ID)
			return
		}
		r.deliver(m)
	case "offer":
		r.deliver(m)
	}
}

// remotePeer is a member of another node whose media is on this node.
type remotePeer struct {
	r        *relay
	key      remoteKey
	identity string
	name     string
	role     auth.Role

	mu   sync.Mutex // held by the inbox while it runs the peer's request, and by close
	m    *connMedia
	gone bool // closed: its node ended it, or died
}

func (p *remotePeer) member() (string, string, auth.Role) { return p.identity, p.name, p.role }

func (p *remotePeer) media(string) *connMedia {
	if p.m == nil {
		p.m = &connMedia{}
	}
	return p.m
}

// close ends the peer's media here.
func (p *remotePeer) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gone = true
	if p.m != nil {
		p.m.close()
	}
}

func (p *remotePeer) reply(id uint64, room string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		return
	}
	p.r.tell(p.key.node, relayMsg{Op: "resp", Conn: p.key.conn, Room: room, ID: id, Data: data})
}

func (p *remotePeer) fail(id uint64, room string, err error) {
	code, msg := errorCode(err)
	p.r.tell(p.key.node, relayMsg{Op: "resp", Conn: p.key.conn, Room: room, ID: id, Code: code, Message: msg})
}

func (p *remotePeer) offer(room, sdp string, names map[string]string) {
	data, _ := json.Marshal(protocol.MediaSDP{SDP: sdp, Names: names})
	p.r.tell(p.key.node, relayMsg{Op: "offer", Conn: p.key.conn, Room: room, Data: data})
}

// WHIP and WHEP across nodes: a session POSTed to a node that does not hold the room's media is started on
// the holder (op "http"), which answers (op "httpresp") with the SDP answer or an error code; the session's
// resource stays on the node that received the POST, and its DELETE is passed on (op "httpclose"). When
// the session ends on the holder by itself (the encoder or player went away), the holder says so (op
// "httpdone") and the resource is forgotten.

// outHTTP is a WHIP or WHEP session of this node that runs on another node.
type outHTTP struct {
	r      *relay
	id     uint64
	holder string
	room   string
	done   chan struct{}
	once   sync.Once
}

// finish forgets the session here (it ended there, or its node died).
func (o *outHTTP) finish() {
	o.once.Do(func() {
		o.r.mu.Lock()
		delete(o.r.out, o.id)
		o.r.mu.Unlock()
		close(o.done)
	})
}

// end ends the session on its node (DELETE) and forgets it here.
func (o *outHTTP) end() {
	select {
	case <-o.done:
	default:
		o.r.tell(o.holder, relayMsg{Op: "httpclose", From: o.r.node, ID: o.id, Room: o.room})
	}
	o.finish()
}

// Done is closed when the session is over.
func (o *outHTTP) Done() <-chan struct{} { return o.done }

// startRemoteHTTP starts a WHIP ("whip") or WHEP ("whep") session on the media node holder; it returns the
// SDP answer and the session. A media node known dead is not asked (errMediaNodeDown); one that does not
// answer within relayReplyTimeout, or dies meanwhile, fails the request likewise.
func (r *relay) startRemoteHTTP(ctx context.Context, holder, kind, room, identity, name, offer string) (string, *outHTTP, error) {
	if r.isDown(ctx, room, holder) {
		return "", nil, errMediaNodeDown
	}
	id := r.nextID.Add(1)
	k := waitKey{http: true, room: room, id: id}
	ch := make(chan relayMsg, 1)
	o := &outHTTP{r: r, id: id, holder: holder, room: room, done: make(chan struct{})}
	r.mu.Lock()
	r.out[id] = o // before the answer: an "httpdone" may overtake it
	r.awaitLocked(k, holder, kind, ch)
	r.mu.Unlock()
	data, _ := json.Marshal(offer)
	msg, _ := json.Marshal(relayMsg{Op: "http", From: r.node, ID: id, Room: room, Type: kind, Identity: identity, Name: name, Data: data})
	if err := r.s.b.Tell(ctx, holder, msg); err != nil {
		r.take(k)
		o.finish()
		return "", nil, err
	}
	select {
	case m := <-ch:
		if m.Code != "" {
			if m.From == r.node { // no answer in time: in case the session started there after all
				o.end()
			} else {
				o.finish()
			}
			return "", nil, remoteError(m.Code, m.Message)
		}
		var answer string
		if err := json.Unmarshal(m.Data, &answer); err != nil {
			o.end()
			return "", nil, err
		}
		return answer, o, nil
	case <-ctx.Done():
		r.take(k)
		o.end() // in case the session started there after all
		return "", nil, ctx.Err()
	}
}

// remoteError turns a relayed error code back into an error the HTTP layer knows.
func remoteError(code, msg string) error {
	switch code {
	case protocol.CodeBadRequest:
		return fmt.Errorf("%w: %s", signaling.ErrBadSDP, msg)
	case protocol.CodeStageFull:
		return fmt.Errorf("%w: %s", signaling.ErrTooManyPublish, msg)
	case protocol.CodeForbidden:
		return fmt.Errorf("%w: %s", errNoPublish, msg)
	}
	return fmt.Errorf("%w: %s", signaling.ErrClosed, msg)
}

// httpEnd ends a WHIP or WHEP session that runs here for another node.
type httpEnd struct{ end func() }

// onHTTP runs a relayed WHIP or WHEP offer on this node's SFU.
func (r *relay) onHTTP(m relayMsg) {
	reply := relayMsg{Op: "httpresp", ID: m.ID, Room: m.Room}
	err := func() error {
		if r.s.cfg.Media == nil {
			return errNoMedia
		}
		var offer string
		if err := json.Unmarshal(m.Data, &offer); err != nil {
			return err
		}
		room, err := r.s.cfg.Media.Room(m.Room)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(r.s.ctx, r.s.cfg.RequestTimeout)
		defer cancel()
		var answer string
		var end func()
		var done <-chan struct{}
		if m.Type == "whip" {
			var pub *signaling.Publisher
			pub, answer, err = room.Publish(ctx, m.Identity, m.Name, offer)
			if err == nil {
				end, done = pub.Close, pub.Done()
			}
		} else {
			var sub *signaling.Subscriber
			sub, answer, err = room.SubscribeStage(ctx, m.Identity, offer)
			if err == nil {
				end, done = sub.Close, sub.Done()
			}
		}
		if err != nil {
			return err
		}
		k := remoteKey{node: m.From, conn: m.ID, room: m.Room}
		e := &httpEnd{end: end}
		r.mu.Lock()
		r.httpEnds[k] = e
		r.mu.Unlock()
		go r.watchHTTP(k, e, done)
		reply.Data, _ = json.Marshal(answer)
		return nil
	}()
	if err != nil {
		reply.Code, reply.Message = errorCode(err)
	}
	r.tell(m.From, reply)
}

// watchHTTP waits for a relayed WHIP or WHEP session to end here; if it ended by itself (not by the
// member's node: DELETE, or that node's death), the member's node is told to forget its resource.
func (r *relay) watchHTTP(k remoteKey, e *httpEnd, done <-chan struct{}) {
	select {
	case <-done:
	case <-r.s.ctx.Done():
		return
	}
	r.mu.Lock()
	mine := r.httpEnds[k] == e
	if mine {
		delete(r.httpEnds, k)
	}
	r.mu.Unlock()
	if mine && r.s.ctx.Err() == nil {
		r.tell(k.node, relayMsg{Op: "httpdone", From: r.node, ID: k.conn, Room: k.room})
	}
}
