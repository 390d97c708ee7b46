package server

import (
	"context"
	"net/http"
	"testing"

	"github.com/liveforum/liveforum/client"
)

// An invite link is for a room that exists; once an operator deletes the room, the link (shared with
// anyone) must not bring the room back.
func TestInviteDoesNotRecreateADeletedRoom(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.admin(t, "POST", "/api/rooms", `{"name":"agora","guests":true}`, http.StatusCreated)
	inv := decodeJSON[Invite](t, ts.admin(t, "POST", "/api/rooms/agora/invites", `{}`, http.StatusCreated))
	ts.admin(t, "DELETE", "/api/rooms/agora", "", http.StatusNoContent)
	c := ts.dial(client.Options{Token: inv.Token, Name: "Anyone"})
	if _, err := c.Join(ctx5s(t), "agora", client.JoinOptions{}); requestCode(err) != "not_found" {
		st, _ := ts.reg.Get(context.Background(), "agora")
		t.Fatalf("join with the invite of a deleted room: %v; room now %+v", err, st.Settings)
	}
}
