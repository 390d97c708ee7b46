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
// then flows between the member's browser and the holder. If the holder dies, its lease lapses; the
// members' peer connections fail, they subscribe or publish again, and another node takes the lease.

// mediaLeaseTTL is how long a media lease lasts without renewal.
const mediaLeaseTTL = 10 * time.Second

// relayMsg is what nodes tell each other about relayed media.
type relayMsg struct {
	Op       string          `json:"op"`   // req, close (to the media node); resp, offer (back)
	From     string          `json:"from"` // the member's node
	Conn     uint64          `json:"conn"` // the member's connection there
	Room     string          `json:"room"`
	ID       uint64          `json:"id,omitempty"`
	Type     string          `json:"type,omitempty"`
	Identity string          `json:"identity,omitempty"`
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

// relay is the server's side of media across nodes.
type relay struct {
	s      *Server
	node   string
	nextID atomic.Uint64

	mu     sync.Mutex
	conns  map[uint64]*conn          // local connections with media relayed elsewhere
	remote map[remoteKey]*remotePeer // members of other nodes whose media is here
	held   map[string]bool           // rooms whose media lease this node holds

	pending  map[uint64]chan relayMsg // relayed WHIP/WHEP offers waiting for the media node's answer
	httpEnds map[remoteKey]func()     // WHIP/WHEP sessions here for other nodes (conn: their request id)
}

func newRelay(s *Server, node string) *relay {
	return &relay{s: s, node: node, conns: map[uint64]*conn{}, remote: map[remoteKey]*remotePeer{}, held: map[string]bool{}}
}

// start listens to this node's inbox and renews the leases it holds.
func (r *relay) start() error {
	if err := r.s.b.Inbox(r.s.ctx, r.node, r.onMessage); err != nil {
		return err
	}
	r.s.pinger.Add(1)
	go r.renew()
	return nil
}

// holder returns the room's media node, taking the lease when nobody holds it.
func (r *relay) holder(ctx context.Context, room string) (string, error) {
	h, err := r.s.b.Lease(ctx, "media:"+room, r.node, mediaLeaseTTL)
	if err != nil {
		return "", err
	}
	if h == r.node {
		r.mu.Lock()
		r.held[room] = true
		r.mu.Unlock()
	}
	return h, nil
}

// renew keeps the leases of rooms with media sessions here, and lets the others lapse.
func (r *relay) renew() {
	defer r.s.pinger.Done()
	t := time.NewTicker(mediaLeaseTTL / 3)
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
			h, err := r.s.b.Lease(ctx, "media:"+room, r.node, mediaLeaseTTL)
			cancel()
			if err == nil && h != r.node {
				r.s.log.Warn("lost a room's media lease", "room", room, "holder", h)
				r.mu.Lock()
				delete(r.held, room)
				r.mu.Unlock()
			}
		}
	}
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
// this node's inbox.
func (r *relay) forward(ctx context.Context, c *conn, holder string, env protocol.Envelope) error {
	r.mu.Lock()
	r.conns[c.id] = c
	r.mu.Unlock()
	data, err := json.Marshal(relayMsg{Op: "req", From: r.node, Conn: c.id, Room: env.Room, ID: env.ID, Type: env.Type,
		Identity: c.who.member.Identity, Role: c.who.role, Data: env.Data})
	if err != nil {
		return err
	}
	return r.s.b.Tell(ctx, holder, data)
}

// closeRemote tells the media node that a connection's media in a room is over.
func (r *relay) closeRemote(c *conn, room, holder string) {
	r.tell(holder, relayMsg{Op: "close", From: r.node, Conn: c.id, Room: room})
}

// forget drops a connection that ended.
func (r *relay) forget(c *conn) {
	r.mu.Lock()
	delete(r.conns, c.id)
	r.mu.Unlock()
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
			p = &remotePeer{r: r, key: key, identity: m.Identity, role: m.Role}
			r.remote[key] = p
		}
		r.mu.Unlock()
		ctx, cancel := context.WithTimeout(r.s.ctx, r.s.cfg.RequestTimeout)
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
		if p != nil && p.m != nil {
			p.m.close()
		}
	case "http":
		r.onHTTP(m)
	case "httpresp":
		r.mu.Lock()
		ch := r.pending[m.ID]
		r.mu.Unlock()
		if ch != nil {
			select {
			case ch <- m:
			default:
			}
		}
	case "httpclose":
		k := remoteKey{node: m.From, conn: m.ID, room: m.Room}
		r.mu.Lock()
		end := r.httpEnds[k]
		delete(r.httpEnds, k)
		r.mu.Unlock()
		if end != nil {
			end()
		}
	case "resp", "offer":
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
}

// remotePeer is a member of another node whose media is on this node.
type remotePeer struct {
	r        *relay
	key      remoteKey
	identity string
	role     auth.Role
	m        *connMedia // guarded by the inbox: one message at a time
}

func (p *remotePeer) member() (string, auth.Role) { return p.identity, p.role }

func (p *remotePeer) media(string) *connMedia {
	if p.m == nil {
		p.m = &connMedia{}
	}
	return p.m
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

func (p *remotePeer) offer(room, sdp string) {
	data, _ := json.Marshal(protocol.MediaSDP{SDP: sdp})
	p.r.tell(p.key.node, relayMsg{Op: "offer", Conn: p.key.conn, Room: room, Data: data})
}

// WHIP and WHEP across nodes: a session POSTed to a node that does not hold the room's media is started on
// the holder (op "http"), which answers (op "httpresp") with the SDP answer or an error code; the session's
// resource stays on the node that received the POST, and its DELETE is passed on (op "httpclose").

// httpWait bounds the wait for the media node's answer to a relayed WHIP or WHEP offer.
const httpWait = 15 * time.Second

// startRemoteHTTP starts a WHIP ("whip") or WHEP ("whep") session on the media node holder; it returns
// the SDP answer and a function that ends the session there.
func (r *relay) startRemoteHTTP(ctx context.Context, holder, kind, room, identity, offer string) (string, func(), error) {
	id := r.nextID.Add(1)
	ch := make(chan relayMsg, 1)
	r.mu.Lock()
	if r.pending == nil {
		r.pending = map[uint64]chan relayMsg{}
	}
	r.pending[id] = ch
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.pending, id)
		r.mu.Unlock()
	}()
	data, _ := json.Marshal(offer)
	msg, _ := json.Marshal(relayMsg{Op: "http", From: r.node, ID: id, Room: room, Type: kind, Identity: identity, Data: data})
	if err := r.s.b.Tell(ctx, holder, msg); err != nil {
		return "", nil, err
	}
	t := time.NewTimer(httpWait)
	defer t.Stop()
	select {
	case m := <-ch:
		if m.Code != "" {
			return "", nil, remoteError(m.Code, m.Message)
		}
		var answer string
		if err := json.Unmarshal(m.Data, &answer); err != nil {
			return "", nil, err
		}
		end := func() { r.tell(holder, relayMsg{Op: "httpclose", From: r.node, ID: id, Room: room}) }
		return answer, end, nil
	case <-t.C:
		return "", nil, fmt.Errorf("%w: the room's media node did not answer", signaling.ErrClosed)
	case <-ctx.Done():
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
		if m.Type == "whip" {
			var pub *signaling.Publisher
			pub, answer, err = room.Publish(ctx, m.Identity, offer)
			if err == nil {
				end = pub.Close
			}
		} else {
			var sub *signaling.Subscriber
			sub, answer, err = room.SubscribeStage(ctx, m.Identity, offer)
			if err == nil {
				end = sub.Close
			}
		}
		if err != nil {
			return err
		}
		r.mu.Lock()
		if r.httpEnds == nil {
			r.httpEnds = map[remoteKey]func(){}
		}
		r.httpEnds[remoteKey{node: m.From, conn: m.ID, room: m.Room}] = end
		r.mu.Unlock()
		reply.Data, _ = json.Marshal(answer)
		return nil
	}()
	if err != nil {
		reply.Code, reply.Message = errorCode(err)
	}
	r.tell(m.From, reply)
}
