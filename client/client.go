// Package client is a Go client of the liveforum protocol: it dials /ws, authenticates, joins rooms,
// sends chat, receives events, and when the connection drops it reconnects with backoff and jitter and
// recovers every room by offset, so that the caller sees each event exactly once, in order.
//
// Concurrency: a Client's methods are safe for concurrent use. Events are delivered on the channel returned
// by Events, from the client's read goroutine; a caller that stops reading them makes the server drop the
// connection as a slow consumer (and the client then recovers).
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/liveforum/liveforum/protocol"
)

// Options configure a Client.
type Options struct {
	// URL of the server's websocket endpoint, such as ws://localhost:8080/ws.
	URL string
	// Token is an access or invite token; empty joins as a guest.
	Token string
	// Name and Lang identify a guest or invitee (ignored with an access token).
	Name, Lang string
	// Header is sent with the websocket handshake (e.g. Origin).
	Header http.Header
	// Reconnect makes the client reconnect and recover after a drop the close code allows.
	Reconnect bool
	// MinBackoff and MaxBackoff bound the reconnect delay (defaults 100 ms and 5 s); each try waits a random
	// time up to the current bound, which doubles after each failure.
	MinBackoff, MaxBackoff time.Duration
	// EventBuffer is the capacity of the events channel (default 1024).
	EventBuffer int
	// OnEvent, when set, receives the events instead of the Events channel (which then only closes when
	// the client ends). It is called from the client's read goroutine, one event at a time, and must
	// return quickly; the client reads nothing more until it does. The event's Data is only valid during
	// the call (the read buffer is reused): copy what you keep. Load tools and bots use it to save a
	// channel hand-off and an allocation per event.
	OnEvent func(Event)
	// OnMedia, when set, receives the server's media signalling (media.offer: protocol.MediaSDP) for a room,
	// from the client's read goroutine; data is only valid during the call. Answer with Send.
	OnMedia func(room, typ string, data json.RawMessage)
	// Logger receives the client's logs (default: discard).
	Logger *slog.Logger
}

// Event is a room event as the client delivers it.
type Event struct {
	Room   string
	Offset uint64
	// Data is the encoded protocol.Event payload; Decode parses it.
	Data json.RawMessage
	// Reset is set, with no Data, after a reconnect whose recovery failed (the room's history is gone): the
	// caller must drop what it knew of the room and take the state from this fresh join reply.
	Reset *protocol.JoinReply
	// Left is set, with no Data, when the client is out of the room: the server took it out (removed by a
	// moderator, room closed, joined elsewhere: Code is the close code), or a rejoin after a reconnect
	// failed (Code 0, Reason the error). The room is forgotten; Join again to return.
	Left *protocol.Left
	// Received is when the client read the event.
	Received time.Time
}

// Decode parses the event payload.
func (e Event) Decode() (protocol.Event, error) {
	var ev protocol.Event
	err := protocol.DecodeData(e.Data, &ev)
	return ev, err
}

// Kind returns the event kind without decoding the whole payload.
func (e Event) Kind() string {
	const key = `{"kind":"`
	if !bytes.HasPrefix(e.Data, []byte(key)) {
		ev, _ := e.Decode()
		return ev.Kind
	}
	rest := e.Data[len(key):]
	if i := bytes.IndexByte(rest, '"'); i >= 0 {
		return string(rest[:i])
	}
	return ""
}

// CloseError is the error a client ends with when the server closed the connection for good.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("client: closed by server: %d %s", e.Code, e.Reason)
}

// RequestError is an error answer from the server.
type RequestError struct {
	Code, Message string
}

func (e *RequestError) Error() string { return "client: " + e.Code + ": " + e.Message }

// ErrDisconnected is returned by requests made while the connection is down or that it dropped before
// they were answered; a request may then have been carried out or not.
var ErrDisconnected = errors.New("client: disconnected")

type result struct {
	data json.RawMessage
	err  error
}

type pendingReq struct {
	ch   chan result
	join string // room, for join requests
}

type roomState struct {
	pos      protocol.Position
	presence *bool
}

// Client is a connection to a liveforum server that survives drops.
type Client struct {
	opts   Options
	log    *slog.Logger
	events chan Event
	done   chan struct{}
	wg     sync.WaitGroup

	wmu sync.Mutex // one writer at a time
	emu sync.Mutex // one OnEvent call at a time (the read loop and a rejoin both deliver)
	mu  sync.Mutex
	ws  *websocket.Conn
	// guarded by mu
	nextID  uint64
	pending map[uint64]pendingReq
	rooms   map[string]*roomState
	auth    protocol.AuthReply
	session string // token to present on reconnect
	err     error
	closed  bool
	redials int
	backoff time.Duration // the bound of the next reconnect wait; back to MinBackoff once a rejoin succeeds
}

// Reconnects returns how many times the client has reconnected after a drop.
func (c *Client) Reconnects() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.redials
}

// Dial connects and authenticates. Close releases the client.
func Dial(ctx context.Context, opts Options) (*Client, error) {
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Second
	}
	if opts.EventBuffer <= 0 {
		opts.EventBuffer = 1024
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{opts: opts, log: log, events: make(chan Event, opts.EventBuffer), done: make(chan struct{}),
		pending: map[uint64]pendingReq{}, rooms: map[string]*roomState{}}
	ws, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	c.wg.Add(1)
	go c.run(ws)
	return c, nil
}

// connect dials and authenticates synchronously (before the read loop runs).
func (c *Client) connect(ctx context.Context) (*websocket.Conn, error) {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 16 << 10, WriteBufferSize: 4096}
	ws, resp, err := d.DialContext(ctx, c.opts.URL, c.opts.Header)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("client: dial %s: %w (http %d)", c.opts.URL, err, resp.StatusCode)
		}
		return nil, fmt.Errorf("client: dial %s: %w", c.opts.URL, err)
	}
	c.mu.Lock()
	tok := c.opts.Token
	if c.session != "" {
		tok = c.session
	}
	c.mu.Unlock()
	req := protocol.AuthRequest{Token: tok, Name: c.opts.Name, Lang: c.opts.Lang}
	if dl, ok := ctx.Deadline(); ok {
		_ = ws.SetReadDeadline(dl)
	} else {
		_ = ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	}
	if err := ws.WriteJSON(map[string]any{"type": protocol.TypeAuth, "id": 1, "data": req}); err != nil {
		ws.Close()
		return nil, fmt.Errorf("client: auth: %w", err)
	}
	for {
		_, frame, err := ws.ReadMessage()
		if err != nil {
			ws.Close()
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return nil, &CloseError{Code: ce.Code, Reason: ce.Text}
			}
			return nil, fmt.Errorf("client: auth: %w", err)
		}
		var reply *protocol.ServerMessage
		err = protocol.SplitFrame(frame, func(msg []byte) error {
			m, err := protocol.DecodeServer(msg)
			if err == nil && m.ID == 1 && (m.Type == protocol.TypeReply || m.Type == protocol.TypeError) {
				reply = &m
			}
			return err
		})
		if err != nil {
			ws.Close()
			return nil, err
		}
		if reply == nil {
			continue
		}
		if reply.Type == protocol.TypeError {
			ws.Close()
			var pe protocol.Error
			_ = json.Unmarshal(reply.Data, &pe)
			return nil, &RequestError{Code: pe.Code, Message: pe.Message}
		}
		var ar protocol.AuthReply
		if err := json.Unmarshal(reply.Data, &ar); err != nil {
			ws.Close()
			return nil, fmt.Errorf("client: auth reply: %w", err)
		}
		c.mu.Lock()
		if c.closed { // Close ran while this connection was being made
			c.mu.Unlock()
			ws.Close()
			return nil, ErrDisconnected
		}
		c.auth = ar
		if ar.Token != "" {
			c.session = ar.Token
		}
		c.ws = ws
		c.mu.Unlock()
		return ws, nil
	}
}

// Member returns who the server says this client is.
func (c *Client) Member() protocol.Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.auth.Member
}

// Events returns the channel of room events. It is closed when the client ends (see Err).
func (c *Client) Events() <-chan Event { return c.events }

// Err returns why the client ended, once Events is closed.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Position returns the client's position in a joined room: everything up to it has been delivered.
func (c *Client) Position(room string) protocol.Position {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r := c.rooms[room]; r != nil {
		return r.pos
	}
	return protocol.Position{}
}

// Close ends the client: it closes the connection normally and waits for its goroutines.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	ws := c.ws
	c.mu.Unlock()
	close(c.done)
	if ws != nil {
		c.wmu.Lock()
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		c.wmu.Unlock()
		_ = ws.Close()
	}
	c.wg.Wait()
	return nil
}

// Drop closes the network connection abruptly, as a failing network would; with Reconnect set the client
// then reconnects and recovers. For tests.
func (c *Client) Drop() {
	c.mu.Lock()
	ws := c.ws
	c.mu.Unlock()
	if ws != nil {
		_ = ws.NetConn().Close()
	}
}

// JoinOptions are optional details of Join.
type JoinOptions struct {
	// Presence false: no member events or member list (large rooms, bots).
	Presence *bool
	// Since recovers from a position instead of taking the recent history.
	Since *protocol.Position
}

// Join joins a room and returns the server's reply: the room state and recent history (or the events
// missed since opts.Since). Live events follow on Events.
func (c *Client) Join(ctx context.Context, room string, opts JoinOptions) (*protocol.JoinReply, error) {
	data, err := c.request(ctx, protocol.TypeJoin, room, protocol.JoinRequest{Since: opts.Since, Presence: opts.Presence}, room)
	if err != nil {
		return nil, err
	}
	var reply protocol.JoinReply
	if err := json.Unmarshal(data, &reply); err != nil {
		return nil, fmt.Errorf("client: join reply: %w", err)
	}
	c.mu.Lock()
	if r := c.rooms[room]; r != nil {
		r.presence = opts.Presence
	}
	c.mu.Unlock()
	return &reply, nil
}

// Leave leaves a room.
func (c *Client) Leave(ctx context.Context, room string) error {
	_, err := c.request(ctx, protocol.TypeLeave, room, nil, "")
	c.mu.Lock()
	delete(c.rooms, room)
	c.mu.Unlock()
	return err
}

// Chat sends a chat message and returns its offset in the room's log.
func (c *Client) Chat(ctx context.Context, room, text, nonce string) (uint64, error) {
	data, err := c.request(ctx, protocol.TypeChat, room, protocol.ChatSend{Text: text, Nonce: nonce}, "")
	if err != nil {
		return 0, err
	}
	var sent protocol.ChatSent
	err = json.Unmarshal(data, &sent)
	return sent.Offset, err
}

// Remove asks the server to remove a member from a room (moderators).
func (c *Client) Remove(ctx context.Context, room, identity, reason string) error {
	_, err := c.request(ctx, protocol.TypeRemove, room, protocol.RemoveRequest{Identity: identity, Reason: reason}, "")
	return err
}

// Send sends a raw message of any type and waits for its answer (for tests of the protocol itself).
func (c *Client) Send(ctx context.Context, typ, room string, data any) (json.RawMessage, error) {
	return c.request(ctx, typ, room, data, "")
}

func (c *Client) request(ctx context.Context, typ, room string, data any, join string) (json.RawMessage, error) {
	p, err := c.send(typ, room, data, join)
	if err != nil {
		return nil, err
	}
	return p.wait(ctx)
}

// Pending is a request that was sent and whose answer has not been awaited yet.
type Pending struct {
	c  *Client
	id uint64
	ch chan result
}

// send writes a request without waiting for its answer.
func (c *Client) send(typ, room string, data any, join string) (*Pending, error) {
	ch := make(chan result, 1)
	c.mu.Lock()
	if c.closed || c.err != nil {
		c.mu.Unlock()
		return nil, ErrDisconnected
	}
	ws := c.ws
	c.nextID++
	id := c.nextID + 1 // 1 is the auth request's
	c.pending[id] = pendingReq{ch: ch, join: join}
	c.mu.Unlock()
	if ws == nil {
		c.forget(id)
		return nil, ErrDisconnected
	}
	msg := map[string]any{"type": typ, "id": id}
	if room != "" {
		msg["room"] = room
	}
	if data != nil {
		msg["data"] = data
	}
	c.wmu.Lock()
	_ = ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	err := ws.WriteJSON(msg)
	c.wmu.Unlock()
	if err != nil {
		c.forget(id)
		return nil, fmt.Errorf("%w: %v", ErrDisconnected, err)
	}
	return &Pending{c: c, id: id, ch: ch}, nil
}

func (p *Pending) wait(ctx context.Context) (json.RawMessage, error) {
	select {
	case r := <-p.ch:
		return r.data, r.err
	case <-ctx.Done():
		p.c.forget(p.id)
		return nil, ctx.Err()
	case <-p.c.done:
		return nil, ErrDisconnected
	}
}

// ChatAsync sends a chat message without waiting for the server's answer; Offset waits for it. Messages
// sent one after another from one goroutine are logged in that order. Load tools use it to send at a
// fixed rate whatever the server's answer time.
func (c *Client) ChatAsync(room, text, nonce string) (*Pending, error) {
	return c.send(protocol.TypeChat, room, protocol.ChatSend{Text: text, Nonce: nonce}, "")
}

// Offset waits for the answer to a chat message sent with ChatAsync and returns its offset.
func (p *Pending) Offset(ctx context.Context) (uint64, error) {
	data, err := p.wait(ctx)
	if err != nil {
		return 0, err
	}
	var sent protocol.ChatSent
	err = json.Unmarshal(data, &sent)
	return sent.Offset, err
}

func (c *Client) forget(id uint64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// run owns the connection: it reads until the connection ends, then reconnects and recovers, until Close
// or a final close code.
func (c *Client) run(ws *websocket.Conn) {
	defer c.wg.Done()
	defer close(c.events)
	c.mu.Lock()
	c.backoff = c.opts.MinBackoff
	c.mu.Unlock()
	for {
		err := c.readLoop(ws)
		c.failPending()
		select {
		case <-c.done:
			c.setErr(nil)
			return
		default:
		}
		var ce *CloseError
		if !c.opts.Reconnect || errors.As(err, &ce) && !protocol.CloseReconnect(ce.Code) {
			c.setErr(err)
			return
		}
		c.log.Info("connection lost; reconnecting", "err", err)
		var pause time.Duration
		if errors.As(err, &ce) && ce.Code == protocol.CloseRateLimited {
			pause = c.opts.MaxBackoff / 2 // closed for flooding: pause before coming back
		}
		for {
			c.mu.Lock()
			backoff := c.backoff
			c.backoff = min(backoff*2, c.opts.MaxBackoff)
			c.mu.Unlock()
			t := time.NewTimer(pause + time.Duration(rand.Int64N(int64(backoff))+1))
			select {
			case <-c.done:
				t.Stop()
				c.setErr(nil)
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			ws, err = c.connect(ctx)
			cancel()
			if err == nil {
				break
			}
			if errors.As(err, &ce) && !protocol.CloseReconnect(ce.Code) {
				c.setErr(err)
				return
			}
			var re *RequestError
			if errors.As(err, &re) {
				c.setErr(err)
				return
			}
			c.log.Info("reconnect failed", "err", err)
		}
		c.mu.Lock()
		c.redials++
		c.mu.Unlock()
		c.mu.Lock()
		all := make(map[string]roomState, len(c.rooms))
		for name, st := range c.rooms {
			all[name] = *st
		}
		c.mu.Unlock()
		c.wg.Add(1)
		go c.rejoin(all)
	}
}

// rejoin joins rooms again from their positions (after a reconnect, or a "left" that invites it). Replies
// are processed by the read loop, which delivers the missed events; a failed recovery is delivered as a
// Reset event, a refused join as a Left event.
func (c *Client) rejoin(rooms map[string]roomState) {
	defer c.wg.Done()
	type rj struct {
		room string
		st   roomState
	}
	var list []rj
	for name, st := range rooms {
		list = append(list, rj{name, st})
	}
	for _, r := range list {
		pos := r.st.pos
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := c.request(ctx, protocol.TypeJoin, r.room, protocol.JoinRequest{Since: &pos, Presence: r.st.presence}, r.room)
		cancel()
		var re *RequestError
		if errors.As(err, &re) && re.Code == protocol.CodeAlreadyJoined {
			continue // another rejoin got there first
		}
		if errors.As(err, &re) && (re.Code == protocol.CodeUnavailable || re.Code == protocol.CodeInternal) {
			c.log.Info("rejoin failed for now; reconnecting", "room", r.room, "err", err)
			c.Drop() // the whole recovery is retried after a backoff
			return
		}
		if errors.As(err, &re) { // the server refused: the room is gone for this client
			c.log.Info("rejoin refused", "room", r.room, "err", err)
			c.mu.Lock()
			delete(c.rooms, r.room)
			c.mu.Unlock()
			_ = c.deliver(Event{Room: r.room, Left: &protocol.Left{Reason: err.Error()}, Received: time.Now()})
		} else if err != nil {
			c.log.Info("rejoin failed", "room", r.room, "err", err) // the connection dropped again: the next reconnect retries
			return
		}
	}
	c.mu.Lock()
	c.backoff = c.opts.MinBackoff // recovered: the next drop starts with short waits again
	c.mu.Unlock()
}

func (c *Client) setErr(err error) {
	c.mu.Lock()
	c.err = err
	c.ws = nil
	c.mu.Unlock()
}

func (c *Client) failPending() {
	c.mu.Lock()
	for id, p := range c.pending {
		p.ch <- result{err: ErrDisconnected}
		delete(c.pending, id)
	}
	c.ws = nil
	c.mu.Unlock()
}

// readLoop reads frames until the connection fails.
func (c *Client) readLoop(ws *websocket.Conn) error {
	defer ws.Close()
	c.mu.Lock()
	every := time.Duration(c.auth.PingEvery) * time.Second
	c.mu.Unlock()
	if every <= 0 {
		every = 25 * time.Second
	}
	var buf bytes.Buffer
	for {
		_ = ws.SetReadDeadline(time.Now().Add(every + 15*time.Second))
		_, r, err := ws.NextReader()
		if err == nil {
			buf.Reset()
			_, err = buf.ReadFrom(r)
		}
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return &CloseError{Code: ce.Code, Reason: ce.Text}
			}
			return err
		}
		// Events alias the frame: a callback gets them only during the call, so the buffer is reused; events
		// sent on the channel outlive it, so they get a copy of their own.
		frame := buf.Bytes()
		if c.opts.OnEvent == nil {
			frame = bytes.Clone(frame)
		}
		now := time.Now()
		err = protocol.SplitFrame(frame, func(msg []byte) error { return c.dispatch(ws, msg, now) })
		if err != nil {
			return err
		}
	}
}

func (c *Client) dispatch(ws *websocket.Conn, msg []byte, now time.Time) error {
	m, err := protocol.DecodeServer(msg)
	if err != nil {
		return err
	}
	switch m.Type {
	case protocol.TypeEvent:
		c.mu.Lock()
		r := c.rooms[m.Room]
		fresh := r != nil && m.Offset > r.pos.Offset
		if fresh {
			r.pos.Offset = m.Offset
		}
		c.mu.Unlock()
		if fresh {
			return c.deliver(Event{Room: m.Room, Offset: m.Offset, Data: m.Data, Received: now})
		}
	case protocol.TypeLeft:
		var left protocol.Left
		_ = json.Unmarshal(m.Data, &left)
		c.mu.Lock()
		st, was := c.rooms[m.Room]
		if was && protocol.CloseReconnect(left.Code) && c.opts.Reconnect {
			// Out for a reason that passes (the room's log restarted): join again from our position;
			// the reply says whether the history survived (a Reset if not).
			c.wg.Add(1)
			go c.rejoin(map[string]roomState{m.Room: *st})
			c.mu.Unlock()
			return nil
		}
		delete(c.rooms, m.Room)
		c.mu.Unlock()
		if was {
			return c.deliver(Event{Room: m.Room, Left: &left, Received: now})
		}
	case protocol.TypeMediaOffer:
		if c.opts.OnMedia != nil {
			c.opts.OnMedia(m.Room, m.Type, m.Data)
		}
	case protocol.TypePing:
		c.wmu.Lock()
		_ = ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
		err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"pong"}`))
		c.wmu.Unlock()
		return err
	case protocol.TypeReply, protocol.TypeError:
		c.mu.Lock()
		p, ok := c.pending[m.ID]
		delete(c.pending, m.ID)
		c.mu.Unlock()
		if !ok {
			return nil
		}
		if m.Type == protocol.TypeError {
			var pe protocol.Error
			_ = json.Unmarshal(m.Data, &pe)
			p.ch <- result{err: &RequestError{Code: pe.Code, Message: pe.Message}}
			return nil
		}
		if p.join != "" {
			if err := c.joined(p.join, m.Data, now); err != nil {
				return err
			}
		}
		p.ch <- result{data: m.Data}
	}
	return nil
}

// joined records a join reply: on a fresh join the position is the reply's; on a rejoin the missed events
// are delivered (those not seen yet), or a Reset if the history is gone.
func (c *Client) joined(room string, data json.RawMessage, now time.Time) error {
	var reply protocol.JoinReply
	if err := json.Unmarshal(data, &reply); err != nil {
		return fmt.Errorf("client: join reply: %w", err)
	}
	c.mu.Lock()
	r := c.rooms[room]
	rejoin := r != nil
	if r == nil {
		r = &roomState{}
		c.rooms[room] = r
	}
	var missed []Event
	reset := rejoin && !reply.Recovered
	if rejoin && reply.Recovered {
		for _, ev := range reply.Events {
			if ev.Offset > r.pos.Offset {
				missed = append(missed, Event{Room: room, Offset: ev.Offset, Data: ev.Data, Received: now})
			}
		}
	}
	next := max(reply.Offset, lastOffset(reply.Events))
	if rejoin && !reset && r.pos.Epoch == reply.Epoch {
		next = max(next, r.pos.Offset) // a lagging node must not make us take events twice
	}
	r.pos = protocol.Position{Epoch: reply.Epoch, Offset: next}
	c.mu.Unlock()
	if reset {
		return c.deliver(Event{Room: room, Reset: &reply, Received: now})
	}
	for _, ev := range missed {
		if err := c.deliver(ev); err != nil {
			return err
		}
	}
	return nil
}

func lastOffset(evs []protocol.HistoryEvent) uint64 {
	if len(evs) == 0 {
		return 0
	}
	return evs[len(evs)-1].Offset
}

func (c *Client) deliver(ev Event) error {
	if c.opts.OnEvent != nil {
		c.emu.Lock()
		c.opts.OnEvent(ev)
		c.emu.Unlock()
		return nil
	}
	select {
	case c.events <- ev:
		return nil
	case <-c.done:
		return ErrDisconnected
	}
}
