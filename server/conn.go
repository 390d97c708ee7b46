package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/liveforum/liveforum/auth"
	"github.com/liveforum/liveforum/protocol"
	"github.com/liveforum/liveforum/rooms"
)

// conn is one websocket connection: the handler goroutine reads, one writer goroutine writes, and rooms
// queue frames with Send, which never blocks.
type conn struct {
	s   *Server
	id  uint64 // unique on this node (media relay)
	ws  *websocket.Conn
	log *slog.Logger

	mu      sync.Mutex
	queue   [][]byte
	queued  int // bytes in queue
	closing bool
	code    int
	reason  string
	// watchdog closes the socket if the writer has not finished WriteTimeout after closing began: a
	// peer that stopped reading leaves the writer blocked in a write, which has no deadline in steady state.
	watchdog *time.Timer
	joined   int             // rooms the read loop has joined or is joining
	kicked   map[string]bool // rooms the connection was taken out of, not yet seen by the read loop

	wake      chan struct{} // a frame was queued or closing started
	readDone  chan struct{} // the read loop has returned
	writeDone chan struct{} // the write loop has returned

	// owned by the read loop
	who      *identity
	sessions map[string]*rooms.Session
	media    map[string]*connMedia // media sessions by room
	msgRate  *rate.Limiter
	chatRate *rate.Limiter
}

var _ rooms.Sink = (*conn)(nil)

// Send implements rooms.Sink: it queues a frame unless the connection is closing or its queue would pass
// MaxQueueBytes, in which case the connection closes itself as a slow consumer.
func (c *conn) Send(frame []byte) bool {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return false
	}
	// The bound is on backlog: an empty queue takes one frame of any size (a large join reply).
	if c.queued > 0 && c.queued+len(frame) > c.s.cfg.MaxQueueBytes {
		c.startClosingLocked(protocol.CloseSlowConsumer, "slow consumer")
		c.mu.Unlock()
		c.s.metrics.slowConsumers.Add(1)
		c.signal()
		return false
	}
	c.queue = append(c.queue, frame)
	c.queued += len(frame)
	c.mu.Unlock()
	c.signal()
	return true
}

// Close implements rooms.Sink: the writer flushes what is queued (unless the connection is a slow
// consumer), sends a close frame with the code, and closes the socket.
func (c *conn) Close(code int, reason string) {
	c.mu.Lock()
	if !c.closing {
		c.startClosingLocked(code, reason)
	}
	c.mu.Unlock()
	c.signal()
}

// Kick implements rooms.Sink: the connection leaves one room with a "left" message, or is closed with
// the code if that was its last room.
func (c *conn) Kick(room string, code int, reason string) {
	c.mu.Lock()
	if c.closing || c.kicked[room] {
		c.mu.Unlock()
		return
	}
	if c.kicked == nil {
		c.kicked = map[string]bool{}
	}
	c.kicked[room] = true
	last := len(c.kicked) >= c.joined
	c.mu.Unlock()
	if last {
		c.Close(code, reason)
		return
	}
	c.Send(protocol.Marshal(protocol.TypeLeft, 0, room, protocol.Left{Code: code, Reason: reason}))
}

// purgeKicked forgets the sessions of rooms the connection was taken out of. Read loop only.
func (c *conn) purgeKicked() {
	c.mu.Lock()
	var gone []string
	for room := range c.kicked {
		if c.sessions[room] != nil {
			delete(c.sessions, room)
			c.joined--
		}
		gone = append(gone, room)
	}
	clear(c.kicked)
	c.mu.Unlock()
	for _, room := range gone {
		c.closeMedia(room) // removed or replaced: its media ends with its membership
	}
}

func (c *conn) startClosingLocked(code int, reason string) {
	c.closing, c.code, c.reason = true, code, reason
	c.watchdog = time.AfterFunc(c.s.cfg.WriteTimeout, func() {
		select {
		case <-c.writeDone:
		default:
			c.s.log.Debug("writer stuck while closing; closing the socket")
			_ = c.ws.NetConn().Close()
		}
	})
}

func (c *conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// writeLoop drains the queue, coalescing everything queued into one frame (messages separated by '\n'),
// and owns the closing handshake.
func (c *conn) writeLoop() {
	defer func() {
		close(c.writeDone)
		c.mu.Lock()
		if c.watchdog != nil {
			c.watchdog.Stop()
		}
		c.mu.Unlock()
	}()
	var batch [][]byte
	for {
		<-c.wake
		c.mu.Lock()
		batch = append(batch, c.queue...)
		clear(c.queue)
		c.queue = c.queue[:0]
		c.queued = 0
		closing, code, reason := c.closing, c.code, c.reason
		c.mu.Unlock()

		if len(batch) > 0 && !(closing && code == protocol.CloseSlowConsumer) {
			if err := c.writeBatch(batch); err != nil {
				c.s.log.Debug("write failed", "err", err)
				closing, code = true, 0
			}
		}
		clear(batch)
		batch = batch[:0]
		if closing {
			c.finish(code, reason)
			return
		}
	}
}

// pingFrame is queued to every connection each PingInterval by the server's pinger.
var pingFrame = []byte(`{"type":"ping"}`)

// maxCoalesce bounds one coalesced frame, so that a reader's per-message buffer stays reasonable.
const maxCoalesce = 256 << 10

// writeBatch writes queued messages. Writes have no deadline: setting one per write costs a timer update
// each time, and a peer that stops reading is caught by the queue limit (and the watchdog) instead.
func (c *conn) writeBatch(batch [][]byte) error {
	for len(batch) > 0 {
		w, err := c.ws.NextWriter(websocket.TextMessage)
		if err != nil {
			return err
		}
		n := 0
		for i, msg := range batch {
			if i > 0 {
				if n+len(msg) > maxCoalesce {
					break
				}
				if _, err := w.Write(newline); err != nil {
					return err
				}
			}
			if _, err := w.Write(msg); err != nil {
				return err
			}
			n += len(msg) + 1
			batch = batch[1:]
			c.s.metrics.messagesOut.Add(1)
		}
		if err := w.Close(); err != nil {
			return err
		}
		c.s.metrics.framesOut.Add(1)
		c.s.metrics.bytesOut.Add(int64(n))
	}
	return nil
}

var newline = []byte{'\n'}

// finish sends the close frame (code 0: the socket failed, send none), waits briefly for the reader to see
// the client's answer, and closes the socket.
func (c *conn) finish(code int, reason string) {
	if code != 0 {
		msg := websocket.FormatCloseMessage(code, reason)
		_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		t := time.NewTimer(2 * time.Second)
		select {
		case <-c.readDone:
		case <-t.C:
		}
		t.Stop()
	}
	_ = c.ws.Close()
}

// readLoop reads and handles client messages until the connection ends; it returns the close code and
// reason to send (if the server is the one closing) and whether the client left on purpose.
func (c *conn) readLoop(ctx context.Context) (code int, reason string, clientLeft bool) {
	cfg := &c.s.cfg
	c.ws.SetReadLimit(cfg.MaxMessageBytes)
	_ = c.ws.SetReadDeadline(time.Now().Add(cfg.AuthTimeout))
	for {
		typ, data, err := c.ws.ReadMessage()
		if err != nil {
			return c.readError(err)
		}
		c.s.metrics.messagesIn.Add(1)
		if (c.who == nil || !c.who.role.RateExempt()) && !c.msgRate.Allow() {
			c.s.metrics.rateLimited.Add(1)
			return protocol.CloseRateLimited, "too many messages", false
		}
		if typ != websocket.TextMessage {
			return protocol.CloseBadRequest, "binary frames are not part of the protocol", false
		}
		env, err := protocol.DecodeClient(data)
		if err != nil {
			c.log.Debug("malformed message", "err", err)
			return protocol.CloseBadRequest, "malformed message", false
		}
		if c.who == nil && env.Type != protocol.TypeAuth {
			return protocol.CloseUnauthorized, "authenticate first", false
		}
		if c.who != nil {
			if !c.who.session && c.who.expires.Add(auth.Leeway).Before(c.s.now()) {
				return protocol.CloseTokenExpired, "token expired", false
			}
			_ = c.ws.SetReadDeadline(time.Now().Add(cfg.PingInterval + cfg.PongWait))
		}
		c.purgeKicked()
		if code, reason := c.handle(ctx, env); code != 0 {
			return code, reason, false
		}
	}
}

func (c *conn) readError(err error) (int, string, bool) {
	var ce *websocket.CloseError
	switch {
	case errors.Is(err, websocket.ErrReadLimit):
		return protocol.CloseTooBig, "message too big", false
	case errors.As(err, &ce):
		return ce.Code, "", ce.Code == websocket.CloseNormalClosure
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		if c.who == nil {
			return protocol.CloseAuthTimeout, "no auth message in time", false
		}
		return protocol.ClosePingTimeout, "no pong in time", false
	}
	return 0, "", false
}

// reply queues a reply to request id.
func (c *conn) reply(id uint64, room string, v any) {
	c.Send(protocol.Marshal(protocol.TypeReply, id, room, v))
}

// fail queues an error answer to request id.
func (c *conn) fail(id uint64, room string, err error) {
	code, msg := errorCode(err)
	if code == protocol.CodeInternal || code == protocol.CodeUnavailable {
		c.log.Warn("request failed", "room", room, "err", err)
	}
	c.Send(protocol.MarshalError(id, room, code, msg))
}
