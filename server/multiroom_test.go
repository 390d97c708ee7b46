package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/liveforum/liveforum/auth"
	"github.com/liveforum/liveforum/client"
	"github.com/liveforum/liveforum/protocol"
)

// A connection in two rooms that is removed from one gets a "left" for it and stays in the other; removed
// from its last room, it is closed with the removal's code.
func TestRemovalFromOneOfTwoRoomsKeepsTheOther(t *testing.T) {
	ts := newTestServer(t, nil)
	bot := ts.dial(client.Options{Token: ts.token("*", "relay", "Relay", auth.RoleBot)})
	modA := ts.dial(client.Options{Token: ts.token("a", "mod-a", "Mod A", auth.RoleModerator)})
	modB := ts.dial(client.Options{Token: ts.token("b", "mod-b", "Mod B", auth.RoleModerator)})
	join(t, modA, "a")
	join(t, modB, "b")
	join(t, bot, "a")
	join(t, bot, "b")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := modA.Remove(ctx, "a", "relay", "wrong room"); err != nil {
		t.Fatal(err)
	}
	for left := false; !left; {
		select {
		case ev := <-bot.Events():
			if ev.Left != nil {
				if ev.Room != "a" || ev.Left.Code != protocol.CloseRemoved {
					t.Fatalf("left %s with %+v", ev.Room, ev.Left)
				}
				left = true
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no left event")
		}
	}
	if _, err := bot.Chat(ctx, "a", "still here?", ""); err == nil {
		t.Fatal("chat into the room it was removed from was accepted")
	} else if re := (*client.RequestError)(nil); !errors.As(err, &re) || re.Code != protocol.CodeNotJoined {
		t.Fatalf("chat into the old room: %v", err)
	}
	off := chat(t, modB, "b", "for the relay")
	for {
		ev, d := nextChat(t, bot)
		if ev.Offset == off && ev.Room == "b" && d.Text == "for the relay" {
			break
		}
	}
	if err := modB.Remove(ctx, "b", "relay", ""); err != nil {
		t.Fatal(err)
	}
	if code := waitClosed(t, bot); code != protocol.CloseRemoved {
		t.Fatalf("removed from its last room: closed with %d", code)
	}
}
