package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/liveforum/liveforum/auth"
	"github.com/liveforum/liveforum/client"
	"github.com/liveforum/liveforum/protocol"
)

// Two members of different roles chat both ways; a third joins late and gets the history; presence
// events reach those who asked for them.
func TestChatBothWaysAndLateJoinerGetsHistory(t *testing.T) {
	ts := newTestServer(t, nil)
	mod := ts.dial(client.Options{Token: ts.token("assembly", "mod-1", "Ana", auth.RoleModerator)})
	par := ts.dial(client.Options{Token: ts.token("assembly", "par-1", "Bruno", auth.RoleParticipant)})

	r1 := join(t, mod, "assembly") // auto-created by the moderator's token
	if r1.Room.Name != "assembly" || r1.Self.Role != "moderator" || r1.MemberCount != 1 {
		t.Fatalf("first join reply: %+v", r1)
	}
	r2 := join(t, par, "assembly")
	if r2.MemberCount != 2 || len(r2.Members) != 2 {
		t.Fatalf("second join: %d members, list %v", r2.MemberCount, r2.Members)
	}
	if got := nextKind(t, mod, protocol.KindMemberJoined); got.Member.Identity != "par-1" || got.Member.Name != "Bruno" {
		t.Fatalf("moderator saw join of %+v", got.Member)
	}

	off1 := chat(t, mod, "assembly", "Welcome, comrades")
	if own, _ := nextChat(t, mod); own.Offset != off1 {
		t.Fatalf("sender's own message came back at %d, sent at %d", own.Offset, off1)
	}
	_, ev := nextChat(t, par)
	if ev.Text != "Welcome, comrades" || ev.From.Identity != "mod-1" || ev.From.Role != "moderator" {
		t.Fatalf("participant received %+v", ev)
	}
	off2 := chat(t, par, "assembly", "Olá! Obrigado")
	e2, ev2 := nextChat(t, mod)
	if ev2.Text != "Olá! Obrigado" || ev2.From.Name != "Bruno" || e2.Offset != off2 || off2 <= off1 {
		t.Fatalf("moderator received %+v at %d (sent at %d after %d)", ev2, e2.Offset, off2, off1)
	}

	late := ts.dial(client.Options{Token: ts.token("assembly", "late-1", "Chloé", auth.RoleParticipant)})
	r3 := join(t, late, "assembly")
	var texts []string
	for _, h := range r3.Events {
		var e protocol.Event
		if err := protocol.DecodeData(h.Data, &e); err != nil {
			t.Fatal(err)
		}
		texts = append(texts, e.Text)
	}
	if fmt.Sprint(texts) != "[Welcome, comrades Olá! Obrigado]" {
		t.Fatalf("late joiner history = %q", texts)
	}
	if r3.Offset < off2 || r3.MemberCount != 3 {
		t.Fatalf("late joiner state at offset %d with %d members", r3.Offset, r3.MemberCount)
	}
}

// A client that comes back with the position it had gets exactly the events it missed, in order.
func TestRecoveryBySinceGivesExactlyTheMissedEvents(t *testing.T) {
	ts := newTestServer(t, nil)
	tok := ts.token("r", "alice", "Alice", auth.RoleParticipant)
	alice := ts.dial(client.Options{Token: tok})
	bob := ts.dial(client.Options{Token: ts.token("r", "bob", "Bob", auth.RoleBot)})
	join(t, alice, "r")
	join(t, bob, "r")
	chat(t, bob, "r", "before")
	nextChat(t, alice)
	pos := alice.Position("r")
	alice.Close()

	var sent []uint64
	for i := range 5 {
		sent = append(sent, chat(t, bob, "r", fmt.Sprintf("missed %d", i)))
	}
	again := ts.dial(client.Options{Token: tok})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := again.Join(ctx, "r", client.JoinOptions{Since: &pos})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Recovered {
		t.Fatal("recovery not honoured")
	}
	var got []uint64
	for _, h := range r.Events {
		var e protocol.Event
		_ = protocol.DecodeData(h.Data, &e)
		if e.Kind == protocol.KindChat {
			got = append(got, h.Offset)
		}
		if h.Offset <= pos.Offset {
			t.Fatalf("recovery repeated offset %d (position was %d)", h.Offset, pos.Offset)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(sent) {
		t.Fatalf("recovered chat offsets %v, want %v", got, sent)
	}

	// A position from another epoch is reported as gone: the client must reload.
	stale := protocol.Position{Epoch: "not-this-one", Offset: 1}
	other := ts.dial(client.Options{Token: ts.token("r", "carol", "Carol", auth.RoleParticipant)})
	r, err = other.Join(ctx, "r", client.JoinOptions{Since: &stale})
	if err != nil {
		t.Fatal(err)
	}
	if r.Recovered || r.Epoch != pos.Epoch || len(r.Events) != 6 {
		t.Fatalf("stale epoch: recovered=%v epoch=%q events=%d", r.Recovered, r.Epoch, len(r.Events))
	}
}

// The client library reconnects after a dropped connection and delivers every message exactly once, in
// order, whether it was sent while the client was away or not.
func TestClientReconnectsAndRecoversAfterDrop(t *testing.T) {
	ts := newTestServer(t, nil)
	alice := ts.dial(client.Options{Token: ts.token("r", "alice", "Alice", auth.RoleParticipant), Reconnect: true,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	bob := ts.dial(client.Options{Token: ts.token("r", "bob", "Bob", auth.RoleBot)})
	join(t, alice, "r")
	join(t, bob, "r")

	const total = 60
	done := make(chan []uint64, 1)
	go func() {
		var offs []uint64
		for i := range total {
			if i%20 == 10 {
				// Drop alice, once she is back from the previous drop.
				for deadline := time.Now().Add(5 * time.Second); alice.Reconnects() < i/20 && time.Now().Before(deadline); {
					time.Sleep(time.Millisecond)
				}
				alice.Drop()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			off, err := bob.Chat(ctx, "r", fmt.Sprintf("m%02d", i), "")
			cancel()
			if err != nil {
				t.Errorf("chat %d: %v", i, err)
			}
			offs = append(offs, off)
		}
		done <- offs
	}()
	var got []string
	var last uint64
	for len(got) < total {
		ev, d := nextChat(t, alice)
		if ev.Offset <= last {
			t.Fatalf("offset %d after %d", ev.Offset, last)
		}
		last = ev.Offset
		got = append(got, d.Text)
	}
	<-done
	if n := alice.Reconnects(); n != 3 {
		t.Fatalf("%d reconnects, want 3", n)
	}
	for i, text := range got {
		if want := fmt.Sprintf("m%02d", i); text != want {
			t.Fatalf("message %d is %q, want %q (all: %v)", i, text, want, got)
		}
	}
	select {
	case ev := <-alice.Events():
		if ev.Kind() == protocol.KindChat {
			t.Fatalf("extra chat event %s", ev.Data)
		}
	case <-time.After(100 * time.Millisecond):
	}
}
