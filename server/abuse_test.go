package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/liveforum/liveforum/auth"
	"github.com/liveforum/liveforum/client"
	"github.com/liveforum/liveforum/protocol"
	"github.com/liveforum/liveforum/rooms"
)

// raw is a bare websocket connection for speaking the protocol by hand.
type raw struct {
	t  *testing.T
	ws *websocket.Conn
}

func (ts *testServer) raw(t *testing.T, header http.Header) *raw {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(ts.wsURL, header)
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, resp)
	}
	t.Cleanup(func() { ws.Close() })
	return &raw{t: t, ws: ws}
}

func (r *raw) send(s string) {
	r.t.Helper()
	if err := r.ws.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// next reads the next server message.
func (r *raw) next() protocol.ServerMessage {
	r.t.Helper()
	_ = r.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, frame, err := r.ws.ReadMessage()
	if err != nil {
		r.t.Fatalf("read: %v", err)
	}
	msgs := strings.Split(string(frame), "\n")
	m, err := protocol.DecodeServer([]byte(msgs[0]))
	if err != nil {
		r.t.Fatalf("decode %q: %v", frame, err)
	}
	if len(msgs) > 1 {
		r.t.Fatalf("expected one message, got frame %q", frame)
	}
	return m
}

// closeCode reads until the server closes the connection and returns the close code.
func (r *raw) closeCode() int {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_ = r.ws.SetReadDeadline(deadline)
		_, _, err := r.ws.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		r.t.Fatalf("connection ended without a close frame: %v", err)
	}
}

func errCode(t *testing.T, m protocol.ServerMessage) string {
	t.Helper()
	if m.Type != protocol.TypeError {
		t.Fatalf("expected an error, got %s %s", m.Type, m.Data)
	}
	var e protocol.Error
	if err := json.Unmarshal(m.Data, &e); err != nil {
		t.Fatal(err)
	}
	return e.Code
}

// bystander joins a room and checks at the end of the test that it still receives chat normally.
func bystander(t *testing.T, ts *testServer, room string) {
	t.Helper()
	watcher := ts.dial(client.Options{Token: ts.token(room, "watcher", "Watcher", auth.RoleParticipant)})
	speaker := ts.dial(client.Options{Token: ts.token(room, "speaker", "Speaker", auth.RoleBot)})
	join(t, watcher, room)
	join(t, speaker, room)
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		off := chat(t, speaker, room, "still here")
		for {
			ev, d := nextChat(t, watcher)
			if ev.Offset == off && d.Text == "still here" {
				return
			}
		}
	})
}

func TestBadInputGetsItsCodeAndNobodyElseNotices(t *testing.T) {
	ts := newTestServer(t, func(c *Config, _ *rooms.Config) {
		c.MaxMessageBytes = 4096
		c.AuthTimeout = 300 * time.Millisecond
		c.MsgRate, c.MsgBurst = 5, 20
		c.AllowedOrigins = nil
	})
	bystander(t, ts, "r")
	good := ts.token("r", "eve", "Eve", auth.RoleParticipant)
	authOK := func(r *raw) {
		r.t.Helper()
		r.send(`{"type":"auth","id":1,"data":{"token":"` + good + `"}}`)
		if m := r.next(); m.Type != protocol.TypeReply {
			r.t.Fatalf("auth: %s %s", m.Type, m.Data)
		}
	}

	t.Run("oversized frame closes 1009", func(t *testing.T) {
		r := ts.raw(t, nil)
		authOK(r)
		r.send(`{"type":"chat","room":"r","data":{"text":"` + strings.Repeat("a", 5000) + `"}}`)
		if code := r.closeCode(); code != protocol.CloseTooBig {
			t.Fatalf("close code %d", code)
		}
	})
	t.Run("malformed json closes 4000", func(t *testing.T) {
		r := ts.raw(t, nil)
		authOK(r)
		r.send(`{"type":"chat",`)
		if code := r.closeCode(); code != protocol.CloseBadRequest {
			t.Fatalf("close code %d", code)
		}
	})
	t.Run("binary frame closes 4000", func(t *testing.T) {
		r := ts.raw(t, nil)
		authOK(r)
		_ = r.ws.WriteMessage(websocket.BinaryMessage, []byte{1, 2, 3})
		if code := r.closeCode(); code != protocol.CloseBadRequest {
			t.Fatalf("close code %d", code)
		}
	})
	t.Run("unknown type is an error reply, connection stays", func(t *testing.T) {
		r := ts.raw(t, nil)
		authOK(r)
		r.send(`{"type":"teleport","id":7}`)
		m := r.next()
		if code := errCode(t, m); code != protocol.CodeUnknownType || m.ID != 7 {
			t.Fatalf("got %s for id %d", code, m.ID)
		}
		r.send(`{"type":"join","id":8,"room":"r","data":{"presence":false}}`)
		if m := r.next(); m.Type != protocol.TypeReply || m.ID != 8 {
			t.Fatalf("join after unknown type: %s %s", m.Type, m.Data)
		}
	})
	t.Run("bad payloads are error replies", func(t *testing.T) {
		r := ts.raw(t, nil)
		authOK(r)
		for _, c := range []struct{ msg, code string }{
			{`{"type":"chat","id":2,"room":"r","data":{"text":"hi"}}`, protocol.CodeNotJoined},
			{`{"type":"join","id":3,"room":"other","data":{}}`, protocol.CodeForbidden},
			{`{"type":"join","id":4,"data":{}}`, protocol.CodeBadRequest},
			{`{"type":"join","id":5,"room":"r","data":{"since":"yesterday"}}`, protocol.CodeBadRequest},
			{`{"type":"auth","id":6,"data":{"token":"x"}}`, protocol.CodeBadRequest},
		} {
			r.send(c.msg)
			if got := errCode(t, r.next()); got != c.code {
				t.Errorf("%s: got %s, want %s", c.msg, got, c.code)
			}
		}
		r.send(`{"type":"join","id":9,"room":"r","data":{"presence":false}}`)
		r.next()
		for _, c := range []struct{ msg, code string }{
			{`{"type":"chat","id":10,"room":"r","data":{"text":"   "}}`, protocol.CodeBadRequest},
			{`{"type":"chat","id":11,"room":"r","data":{"text":"` + strings.Repeat("é", 2001) + `"}}`, protocol.CodeTooLong},
			{`{"type":"remove","id":12,"room":"r","data":{"identity":"watcher"}}`, protocol.CodeForbidden},
			{`{"type":"join","id":13,"room":"r","data":{}}`, protocol.CodeAlreadyJoined},
		} {
			r.send(c.msg)
			if got := errCode(t, r.next()); got != c.code {
				t.Errorf("%s: got %s, want %s", c.msg[:40], got, c.code)
			}
		}
	})
	t.Run("flood closes 4003", func(t *testing.T) {
		r := ts.raw(t, nil)
		authOK(r)
		for range 60 {
			if r.ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"pong"}`)) != nil {
				break
			}
		}
		if code := r.closeCode(); code != protocol.CloseRateLimited {
			t.Fatalf("close code %d", code)
		}
	})
	t.Run("chat over the person rate is refused, not sent", func(t *testing.T) {
		c := ts.dial(client.Options{Token: ts.token("r", "chatty", "Chatty", auth.RoleParticipant)})
		join(t, c, "r")
		var limited int
		for range 8 {
			_, err := c.Chat(context.Background(), "r", "spam", "")
			var re *client.RequestError
			if errors.As(err, &re) && re.Code == protocol.CodeRateLimited {
				limited++
			} else if err != nil {
				t.Fatal(err)
			}
		}
		if limited == 0 {
			t.Fatal("eight quick messages were all accepted")
		}
	})
	t.Run("message before auth closes 4001", func(t *testing.T) {
		r := ts.raw(t, nil)
		r.send(`{"type":"join","room":"r"}`)
		if code := r.closeCode(); code != protocol.CloseUnauthorized {
			t.Fatalf("close code %d", code)
		}
	})
	t.Run("no auth in time closes 4008", func(t *testing.T) {
		r := ts.raw(t, nil)
		if code := r.closeCode(); code != protocol.CloseAuthTimeout {
			t.Fatalf("close code %d", code)
		}
	})
	t.Run("bad token is refused with 4001", func(t *testing.T) {
		other, _ := authKeyring(t)
		forged, _ := other.Sign(authClaims("r", "mallory", time.Hour))
		for _, tok := range []string{"garbage", forged, good[:len(good)-3] + "AAA"} {
			r := ts.raw(t, nil)
			r.send(`{"type":"auth","id":1,"data":{"token":"` + tok + `"}}`)
			if code := errCode(t, r.next()); code != protocol.CodeUnauthorized {
				t.Fatalf("error code %s", code)
			}
			if code := r.closeCode(); code != protocol.CloseUnauthorized {
				t.Fatalf("close code %d", code)
			}
		}
	})
	t.Run("expired token is refused with 4009", func(t *testing.T) {
		tok, err := ts.keys.Sign(authClaims("r", "late", -time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		r := ts.raw(t, nil)
		r.send(`{"type":"auth","id":1,"data":{"token":"` + tok + `"}}`)
		if code := errCode(t, r.next()); code != protocol.CodeTokenExpired {
			t.Fatalf("error code %s", code)
		}
		if code := r.closeCode(); code != protocol.CloseTokenExpired {
			t.Fatalf("close code %d", code)
		}
	})
	t.Run("foreign origin is refused before the upgrade", func(t *testing.T) {
		h := http.Header{"Origin": {"https://evil.example"}}
		_, resp, err := websocket.DefaultDialer.Dial(ts.wsURL, h)
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("foreign origin: err=%v resp=%v", err, resp)
		}
		host := strings.TrimPrefix(ts.http.URL, "http://")
		r := ts.raw(t, http.Header{"Origin": {"http://" + host}})
		authOK(r)
	})
}

func authKeyring(t *testing.T) (*auth.Keyring, error) {
	k, err := auth.NewKeyring(auth.GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	return k, nil
}

func authClaims(room, id string, ttl time.Duration) auth.Claims {
	now := time.Now()
	return auth.Claims{Room: room, Identity: id, Name: id, Role: auth.RoleParticipant, Expires: now.Add(ttl),
		IssuedAt: now.Add(ttl - time.Minute)}
}

// A client that stops reading is disconnected as a slow consumer; the others keep receiving everything.
func TestSlowConsumerIsDisconnectedOthersKeepReceiving(t *testing.T) {
	ts := newTestServer(t, func(c *Config, _ *rooms.Config) { c.MaxQueueBytes = 512 << 10 })
	fast := ts.dial(client.Options{Token: ts.token("r", "fast", "Fast", auth.RoleParticipant)})
	pub := ts.dial(client.Options{Token: ts.token("r", "pub", "Pub", auth.RoleBot)})
	join(t, fast, "r")
	join(t, pub, "r")
	go func() { // the publisher reads its own messages too; a client that does not is a slow consumer
		for range pub.Events() {
		}
	}()

	// The slow member: a socket that stops reading after joining. (Its receive buffer is kept at 256 KiB:
	// one below loopback's 64 KiB segment size makes TCP stall for 200 ms per segment when it reads again.)
	d := websocket.Dialer{NetDial: func(network, addr string) (net.Conn, error) {
		c, err := net.Dial(network, addr)
		if err == nil {
			_ = c.(*net.TCPConn).SetReadBuffer(256 << 10)
		}
		return c, err
	}}
	ws, _, err := d.Dial(ts.wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	slow := &raw{t: t, ws: ws}
	slow.send(`{"type":"auth","id":1,"data":{"token":"` + ts.token("r", "slow", "Slow", auth.RoleParticipant) + `"}}`)
	slow.next()
	slow.send(`{"type":"join","id":2,"room":"r","data":{"presence":false}}`)
	slow.next()

	text := strings.Repeat("€", 1900)
	const n = 2000 // ~11 MB in all: far beyond the kernel's socket buffers plus the 512 KiB queue
	received := make(chan int, 1)
	go func() {
		count := 0
		for count < n {
			select {
			case ev, ok := <-fast.Events():
				if !ok {
					received <- count
					return
				}
				if ev.Kind() == protocol.KindChat {
					count++
				}
			case <-time.After(10 * time.Second):
				received <- count
				return
			}
		}
		received <- count
	}()
	published := make(chan error, 1)
	go func() {
		for i := range n {
			if _, err := pub.Chat(context.Background(), "r", text, ""); err != nil {
				published <- fmt.Errorf("chat %d: %w", i, err)
				return
			}
		}
		published <- nil
	}()
	// Once the server has given up on the slow member, it reads again: what was in flight, then the close.
	for deadline := time.Now().Add(10 * time.Second); ts.srv.metrics.slowConsumers.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the slow member was never disconnected")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if code := slow.closeCode(); code != protocol.CloseSlowConsumer {
		t.Fatalf("slow member closed with %d", code)
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	if got := <-received; got != n {
		t.Fatalf("fast member received %d of %d", got, n)
	}
	if ts.srv.metrics.slowConsumers.Load() != 1 {
		t.Fatalf("slow consumers: %d", ts.srv.metrics.slowConsumers.Load())
	}
}

// A client that answers pings stays; one that goes silent is closed with the ping-timeout code.
func TestPingKeepsAliveAndSilenceTimesOut(t *testing.T) {
	ts := newTestServer(t, func(c *Config, _ *rooms.Config) {
		c.PingInterval, c.PongWait = 100*time.Millisecond, 150*time.Millisecond
	})
	good := ts.dial(client.Options{Token: ts.token("r", "alive", "Alive", auth.RoleParticipant)})
	join(t, good, "r")

	silent := ts.raw(t, nil)
	silent.send(`{"type":"auth","id":1,"data":{"token":"` + ts.token("r", "silent", "Silent", auth.RoleParticipant) + `"}}`)
	if m := silent.next(); m.Type != protocol.TypeReply {
		t.Fatalf("auth: %s", m.Data)
	}
	if m := silent.next(); m.Type != protocol.TypePing {
		t.Fatalf("expected a ping, got %s", m.Type)
	}
	start := time.Now()
	if code := silent.closeCode(); code != protocol.ClosePingTimeout {
		t.Fatalf("close code %d", code)
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Fatalf("timeout took %v", waited)
	}
	// Several ping periods later the answering client is still connected and usable.
	chat(t, good, "r", "still alive")
	if _, ev := nextChat(t, good); ev.Text != "still alive" || good.Reconnects() != 0 {
		t.Fatalf("got %q after %d reconnects", ev.Text, good.Reconnects())
	}
}
