package server

import (
	"testing"
	"time"

	"github.com/liveforum/liveforum/protocol"
	"github.com/liveforum/liveforum/rooms"
)

// A guest keeps its identity across reconnects with the session token, which is renewed each time; a bad
// display name is an error the person can correct on the same connection.
func TestGuestSessionTokenIsRenewedAndKeepsIdentity(t *testing.T) {
	ts := newTestServer(t, nil)
	r := ts.raw(t, nil)
	r.send(`{"type":"auth","id":1,"data":{"name":"   ","lang":"pt-BR"}}`)
	if code := errCode(t, r.next()); code != protocol.CodeBadRequest {
		t.Fatalf("blank name: %s", code)
	}
	r.send(`{"type":"auth","id":2,"data":{"name":"Maria\u0000 da  Silva","lang":"pt-BR"}}`)
	m := r.next()
	var first protocol.AuthReply
	if err := protocol.DecodeData(m.Data, &first); err != nil || m.ID != 2 {
		t.Fatalf("auth: %s %v", m.Data, err)
	}
	if first.Member.Name != "Maria da Silva" || first.Member.Role != "guest" || first.Member.Lang != "pt-BR" || first.Token == "" {
		t.Fatalf("guest: %+v", first)
	}
	cl, err := ts.keys.Verify(first.Token, time.Now())
	if err != nil || !cl.Session || cl.Identity != first.Member.Identity {
		t.Fatalf("session token: %+v %v", cl, err)
	}

	again := ts.raw(t, nil)
	again.send(`{"type":"auth","id":1,"data":{"token":"` + first.Token + `"}}`)
	var second protocol.AuthReply
	if err := protocol.DecodeData(again.next().Data, &second); err != nil {
		t.Fatal(err)
	}
	if second.Member != first.Member || second.Token == "" {
		t.Fatalf("reconnected as %+v (token %q), was %+v", second.Member, second.Token, first.Member)
	}
	// An access token minted by an operator is not renewed.
	r3 := ts.raw(t, nil)
	r3.send(`{"type":"auth","id":1,"data":{"token":"` + ts.token("r", "u1", "U", "participant") + `"}}`)
	var third protocol.AuthReply
	if err := protocol.DecodeData(r3.next().Data, &third); err != nil || third.Token != "" {
		t.Fatalf("access token auth: %+v %v", third, err)
	}
}

// An invitee's session token is renewed on use, but never beyond the invite it came from.
func TestInviteeSessionEndsWithTheInvite(t *testing.T) {
	ts := newTestServer(t, nil)
	if _, err := ts.reg.Create(t.Context(), rooms.Settings{Name: "r"}); err != nil {
		t.Fatal(err)
	}
	inv, err := ts.srv.MintInvite("r", "speaker", 2*time.Hour, "http://x")
	if err != nil {
		t.Fatal(err)
	}
	r := ts.raw(t, nil)
	r.send(`{"type":"auth","id":1,"data":{"token":"` + inv.Token + `","name":"Ana"}}`)
	var first protocol.AuthReply
	if err := protocol.DecodeData(r.next().Data, &first); err != nil {
		t.Fatal(err)
	}
	cl, err := ts.keys.Verify(first.Token, time.Now())
	if err != nil || !cl.Session || cl.Until.IsZero() || cl.Expires.After(inv.Expires) || first.Member.Role != "speaker" {
		t.Fatalf("invitee session token %+v (%v), invite expires %v", cl, err, inv.Expires)
	}
	again := ts.raw(t, nil)
	again.send(`{"type":"auth","id":1,"data":{"token":"` + first.Token + `"}}`)
	var second protocol.AuthReply
	if err := protocol.DecodeData(again.next().Data, &second); err != nil {
		t.Fatal(err)
	}
	if cl2, err := ts.keys.Verify(second.Token, time.Now()); err != nil || cl2.Expires.After(inv.Expires) || second.Member != first.Member {
		t.Fatalf("renewed: %+v %v", cl2, err)
	}
}
