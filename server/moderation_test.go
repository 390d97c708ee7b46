package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/liveforum/liveforum/auth"
	"github.com/liveforum/liveforum/client"
	"github.com/liveforum/liveforum/protocol"
	"github.com/liveforum/liveforum/rooms"
)

func requestCode(err error) string {
	var re *client.RequestError
	if errors.As(err, &re) {
		return re.Code
	}
	return ""
}

func ctx5s(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// A moderator removes a participant: the participant's connection ends with 4004 and everyone else sees
// the removal and who did it. A participant may not remove anyone.
func TestModeratorRemovesParticipant(t *testing.T) {
	ts := newTestServer(t, nil)
	mod := ts.dial(client.Options{Token: ts.token("forum", "mod", "Mara", auth.RoleModerator)})
	par := ts.dial(client.Options{Token: ts.token("forum", "par", "Paulo", auth.RoleParticipant), Reconnect: true,
		MinBackoff: 10 * time.Millisecond})
	obs := ts.dial(client.Options{Token: ts.token("forum", "obs", "Olga", auth.RoleParticipant)})
	join(t, mod, "forum")
	join(t, par, "forum")
	join(t, obs, "forum")

	if err := par.Remove(ctx5s(t), "forum", "obs", ""); requestCode(err) != protocol.CodeForbidden {
		t.Fatalf("participant removing: %v", err)
	}
	if err := mod.Remove(ctx5s(t), "forum", "nobody", ""); requestCode(err) != protocol.CodeNotFound {
		t.Fatalf("removing an unknown member: %v", err)
	}
	if err := mod.Remove(ctx5s(t), "other", "par", ""); requestCode(err) != protocol.CodeNotJoined {
		t.Fatalf("removing from a room not joined: %v", err)
	}
	if err := mod.Remove(ctx5s(t), "forum", "par", "off topic"); err != nil {
		t.Fatal(err)
	}
	// 4004 is final: even a reconnecting client stops.
	if code := waitClosed(t, par); code != protocol.CloseRemoved {
		t.Fatalf("removed participant closed with %d", code)
	}
	for name, c := range map[string]*client.Client{"observer": obs, "moderator": mod} {
		ev := nextKind(t, c, protocol.KindMemberRemoved)
		if ev.Member == nil || ev.Member.Identity != "par" || ev.By == nil || ev.By.Identity != "mod" ||
			ev.By.Role != "moderator" || ev.Reason != "off topic" {
			t.Fatalf("%s saw %+v", name, ev)
		}
	}
	if st, err := ts.reg.Get(context.Background(), "forum"); err != nil || st.Members != 2 {
		t.Fatalf("after the removal: %+v %v", st, err)
	}
	// The others carry on.
	off := chat(t, obs, "forum", "back to the agenda")
	for {
		if ev, _ := nextChat(t, mod); ev.Offset == off {
			break
		}
	}
}

// Guests (no token, a name) may enter an existing room that admits them, and nothing else, unless the
// server is in development mode, where joining creates the room.
func TestGuests(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.admin(t, "POST", "/api/rooms", `{"name":"open","guests":true}`, http.StatusCreated)
	ts.admin(t, "POST", "/api/rooms", `{"name":"members-only"}`, http.StatusCreated)

	g := ts.dial(client.Options{Name: "Gus", Lang: "de"})
	if m := g.Member(); !strings.HasPrefix(m.Identity, "guest-") || m.Role != "guest" || m.Name != "Gus" || m.Lang != "de" {
		t.Fatalf("guest member %+v", m)
	}
	r := join(t, g, "open")
	if r.Self.Role != "guest" || r.MemberCount != 1 {
		t.Fatalf("guest join %+v", r)
	}
	if _, err := g.Join(ctx5s(t), "members-only", client.JoinOptions{}); requestCode(err) != protocol.CodeForbidden {
		t.Fatalf("guest into a members-only room: %v", err)
	}
	if _, err := g.Join(ctx5s(t), "nowhere", client.JoinOptions{}); requestCode(err) != protocol.CodeNotFound {
		t.Fatalf("guest into a missing room: %v", err)
	}
	if _, err := ts.reg.Get(context.Background(), "nowhere"); !errors.Is(err, rooms.ErrNotFound) {
		t.Fatalf("a guest created a room: %v", err)
	}
	if err := g.Remove(ctx5s(t), "open", g.Member().Identity, ""); requestCode(err) != protocol.CodeForbidden {
		t.Fatalf("a guest removing: %v", err)
	}
	// A guest needs a name.
	dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c, err := client.Dial(dctx, client.Options{URL: ts.wsURL, Name: " \t "}); requestCode(err) != protocol.CodeBadRequest {
		if c != nil {
			c.Close()
		}
		t.Fatalf("nameless guest: %v", err)
	}

	dev := newTestServer(t, func(c *Config, _ *rooms.Config) { c.DevMode = true })
	dg := dev.dial(client.Options{Name: "Dev"})
	if r := join(t, dg, "made-by-guest"); r.Room.Name != "made-by-guest" || !r.Room.Guests {
		t.Fatalf("dev-mode guest join: %+v", r.Room)
	}
	st := decodeJSON[roomStatus](t, dev.admin(t, "GET", "/api/rooms/made-by-guest", "", http.StatusOK))
	if !st.Guests || st.Members != 1 {
		t.Fatalf("room made by a guest: %+v", st)
	}
}

// The same identity connecting twice: the first connection is closed with 4005, the second carries on.
func TestSameIdentityTwiceReplacesTheFirst(t *testing.T) {
	ts := newTestServer(t, nil)
	tok := ts.token("forum", "ana", "Ana", auth.RoleParticipant)
	obs := ts.dial(client.Options{Token: ts.token("forum", "obs", "Olga", auth.RoleParticipant)})
	join(t, obs, "forum")
	first := ts.dial(client.Options{Token: tok, Reconnect: true, MinBackoff: 10 * time.Millisecond})
	join(t, first, "forum")
	nextKind(t, obs, protocol.KindMemberJoined)
	second := ts.dial(client.Options{Token: tok})
	if r := join(t, second, "forum"); r.MemberCount != 2 {
		t.Fatalf("second connection's join: %+v", r)
	}
	if code := waitClosed(t, first); code != protocol.CloseReplaced {
		t.Fatalf("first connection closed with %d", code)
	}
	off := chat(t, second, "forum", "it is me, on my phone")
	// The observer sees the chat with no member.left or member.joined of ana before it.
	timeout := time.After(5 * time.Second)
	for done := false; !done; {
		select {
		case ev, ok := <-obs.Events():
			if !ok {
				t.Fatalf("observer ended: %v", obs.Err())
			}
			d, err := ev.Decode()
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(d.Kind, "member.") {
				t.Fatalf("observer saw %s of %+v for a takeover", d.Kind, d.Member)
			}
			if ev.Offset == off {
				if d.From.Identity != "ana" || d.Text != "it is me, on my phone" {
					t.Fatalf("observer got %+v", d)
				}
				done = true
			}
		case <-timeout:
			t.Fatal("observer never got the chat")
		}
	}
	if st, err := ts.reg.Get(context.Background(), "forum"); err != nil || st.Members != 2 || st.Local != 2 {
		t.Fatalf("after the takeover: %+v %v", st, err)
	}
}

// Shutdown tells every client to reconnect elsewhere: close code 1012.
func TestShutdownClosesClientsWith1012(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial(client.Options{Token: ts.token("forum", "ana", "Ana", auth.RoleParticipant)})
	join(t, c, "forum")
	idle := ts.dial(client.Options{Name: "Idle guest"}) // authenticated, in no room
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, cl := range []*client.Client{c, idle} {
		if code := waitClosed(t, cl); code != protocol.CloseShutdown {
			t.Fatalf("closed with %d, want %d", code, protocol.CloseShutdown)
		}
	}
	if !protocol.CloseReconnect(protocol.CloseShutdown) {
		t.Fatal("1012 must tell clients to reconnect")
	}
}
