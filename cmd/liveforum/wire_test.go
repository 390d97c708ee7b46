package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/liveforum/liveforum/protocol"
)

// wireWatcher is a member that speaks the protocol by hand and keeps every event message the server sent,
// duplicates included: the Go client drops an event whose offset it has already passed, which would hide a
// node that delivers one twice.
type wireWatcher struct {
	t        *testing.T
	identity string
	ws       *websocket.Conn
	wmu      sync.Mutex
	done     chan struct{}

	mu      sync.Mutex
	offsets []uint64 // offsets of the room's events, as received
	data    map[uint64][]byte
	err     error // why reading ended
}

// watchWire joins room on n as identity with a plain websocket. The connection is closed when the test
// ends.
func watchWire(t *testing.T, n *node, room, identity string) *wireWatcher {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.Dial(n.WS(), nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		t.Fatalf("%s: dial %s: %v", identity, n.id, err)
	}
	w := &wireWatcher{t: t, identity: identity, ws: ws, done: make(chan struct{}), data: map[uint64][]byte{}}
	t.Cleanup(func() {
		_ = ws.Close()
		<-w.done
	})
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	w.write(t, map[string]any{"type": protocol.TypeAuth, "id": 1, "data": protocol.AuthRequest{Token: memberToken(t, room, identity)}})
	w.await(t, 1)
	w.write(t, map[string]any{"type": protocol.TypeJoin, "id": 2, "room": room})
	var reply protocol.JoinReply
	if err := json.Unmarshal(w.await(t, 2), &reply); err != nil {
		t.Fatalf("%s: join reply: %v", identity, err)
	}
	_ = ws.SetReadDeadline(time.Time{})
	go w.read(reply.Offset)
	return w
}

func (w *wireWatcher) write(t *testing.T, msg any) {
	t.Helper()
	w.wmu.Lock()
	defer w.wmu.Unlock()
	_ = w.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := w.ws.WriteJSON(msg); err != nil {
		t.Fatalf("%s: write: %v", w.identity, err)
	}
}

// await reads until the answer to request id (before live events flow: nothing else matters yet).
func (w *wireWatcher) await(t *testing.T, id uint64) json.RawMessage {
	t.Helper()
	for {
		_, frame, err := w.ws.ReadMessage()
		if err != nil {
			t.Fatalf("%s: waiting for answer %d: %v", w.identity, id, err)
		}
		var got *protocol.ServerMessage
		_ = protocol.SplitFrame(frame, func(msg []byte) error {
			m, err := protocol.DecodeServer(msg)
			if err == nil && m.ID == id {
				got = &m
			}
			return nil
		})
		if got == nil {
			continue
		}
		if got.Type != protocol.TypeReply {
			t.Fatalf("%s: request %d: %s %s", w.identity, id, got.Type, got.Data)
		}
		return got.Data
	}
}

// read records the events above from until the connection ends, answering pings.
func (w *wireWatcher) read(from uint64) {
	defer close(w.done)
	for {
		_, frame, err := w.ws.ReadMessage()
		if err == nil {
			err = protocol.SplitFrame(frame, func(msg []byte) error {
				m, err := protocol.DecodeServer(msg)
				if err != nil {
					return err
				}
				switch m.Type {
				case protocol.TypePing:
					w.wmu.Lock()
					_ = w.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
					err = w.ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"pong"}`))
					w.wmu.Unlock()
					return err
				case protocol.TypeEvent:
					if m.Offset > from {
						w.mu.Lock()
						w.offsets = append(w.offsets, m.Offset)
						w.data[m.Offset] = bytes.Clone(m.Data)
						w.mu.Unlock()
					}
				case protocol.TypeLeft:
					return fmt.Errorf("left the room: %s", m.Data)
				}
				return nil
			})
		}
		if err != nil {
			w.mu.Lock()
			w.err = err
			w.mu.Unlock()
			return
		}
	}
}

// check fails unless the watcher is still connected and received every offset of want with its text
// exactly once, all offsets increasing.
func (w *wireWatcher) check(t *testing.T, want map[uint64]string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		w.mu.Lock()
		offsets, err := append([]uint64(nil), w.offsets...), w.err
		w.mu.Unlock()
		if err != nil {
			t.Fatalf("%s: connection ended: %v", w.identity, err)
		}
		have := map[uint64]bool{}
		for i, off := range offsets {
			if i > 0 && off <= offsets[i-1] {
				t.Fatalf("%s: the server sent offset %d after %d (a duplicate or out of order)", w.identity, off, offsets[i-1])
			}
			have[off] = true
		}
		n := 0
		for off := range want {
			if have[off] {
				n++
			}
		}
		if n == len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d of %d acknowledged messages received after %v", w.identity, n, len(want), within)
		}
		time.Sleep(50 * time.Millisecond)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for off, text := range want {
		var e protocol.Event
		if err := json.Unmarshal(w.data[off], &e); err != nil || e.Text != text {
			t.Fatalf("%s: offset %d is %s, want the chat %q", w.identity, off, w.data[off], text)
		}
	}
}
