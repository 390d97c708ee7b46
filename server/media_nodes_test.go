package server

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/liveforum/liveforum/auth"
	"github.com/liveforum/liveforum/broker"
	"github.com/liveforum/liveforum/client"
	"github.com/liveforum/liveforum/internal/redistest"
	"github.com/liveforum/liveforum/internal/rtctest"
	"github.com/liveforum/liveforum/protocol"
	"github.com/liveforum/liveforum/rooms"
	"github.com/liveforum/liveforum/signaling"
)

// mediaNode is a server with its own SFU and Redis broker, sharing keys with the test's other nodes.
func mediaNode(t *testing.T, rs *redistest.Server, keys *auth.Keyring) (*testServer, *signaling.Engine) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := broker.NewRedis(ctx, broker.RedisOptions{URL: rs.URL(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	_, lo, _ := net.ParseCIDR("127.0.0.0/8")
	e, err := signaling.New(signaling.Config{ICE: signaling.ICEConfig{UDPAddr: "127.0.0.1:0", Interfaces: []string{"lo"},
		IPs: []*net.IPNet{lo}}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	ts := newTestServerOn(t, b, func(c *Config, _ *rooms.Config) {
		c.Media = e
		if keys != nil {
			c.Keys = keys
		}
	})
	if keys != nil {
		ts.keys = keys
	}
	return ts, e
}

// With Redis and two nodes, a speaker connected to node A and a viewer connected to node B see and hear
// each other through the room's media node; a moderator on B mutes the speaker there.
func TestMediaAcrossNodes(t *testing.T) {
	rs := redistest.Start(t)
	a, ea := mediaNode(t, rs, nil)
	b, eb := mediaNode(t, rs, a.keys)
	const room = "plenario"

	speaker := a.dial(client.Options{Token: a.token(room, "sp", "Speaker", auth.RoleSpeaker)})
	join(t, speaker, room)
	enc := newWHIPEncoder(t, true, true, 's')
	publishOverWS(t, speaker, room, enc)

	viewer := newStageViewer(t, b, room, "vi", auth.RoleParticipant)
	if _, err := mediaRequest(t, viewer.c, protocol.TypeMediaSubscribe, room, nil); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the viewer on node B receives the speaker's video and audio from node A", func() bool {
		return viewer.count("video") > 20 && viewer.count("audio") > 20 && viewer.mark("video") == 's'
	})
	if !ea.Active(room) || eb.Active(room) {
		t.Fatalf("the room's media is active on A: %v, on B: %v; want A only", ea.Active(room), eb.Active(room))
	}

	// A speaker connected to B publishes too, through A: the viewer gets a second speaker.
	other := b.dial(client.Options{Token: b.token(room, "sp2", "Second speaker", auth.RoleSpeaker)})
	join(t, other, room)
	enc2 := newWHIPEncoder(t, true, true, 't')
	publishOverWS(t, other, room, enc2)
	r, _ := ea.Room(room)
	waitUntil(t, "both speakers publish on node A", func() bool { return len(r.Publishers()) == 2 })
	// Their names come with the server's offers, relayed to the viewer's node; the second speaker's name
	// was relayed with its publish.
	waitUntil(t, "the viewer on node B has both speakers' names", func() bool {
		viewer.mu.Lock()
		defer viewer.mu.Unlock()
		return viewer.names["sp"] == "Speaker" && viewer.names["sp2"] == "Second speaker" && len(viewer.names) == 2
	})

	// A moderator on B mutes the first speaker's audio, on A.
	mod := b.dial(client.Options{Token: b.token(room, "mo", "Moderator", auth.RoleModerator)})
	join(t, mod, room)
	if _, err := mediaRequest(t, mod, protocol.TypeMediaMute, room, protocol.MediaMute{Identity: "sp", Kind: "audio", Muted: true}); err != nil {
		t.Fatalf("muting across nodes: %v", err)
	}
	_, err := mediaRequest(t, viewer.c, protocol.TypeMediaPublish, room, protocol.MediaSDP{SDP: rtctest.Offer(t, newWHIPEncoder(t, true, false, 'x').pc)})
	wantCode(t, err, protocol.CodeForbidden, "a participant on node B publishes")
}

// WHIP and WHEP on a node that does not hold the room's media run on the node that does: an encoder
// POSTs to node B, a WHEP player POSTs to node B, and both meet on node A, where a websocket speaker
// took the room's media first; DELETE on B ends the session on A.
func TestWHIPAndWHEPAcrossNodes(t *testing.T) {
	rs := redistest.Start(t)
	a, ea := mediaNode(t, rs, nil)
	b, eb := mediaNode(t, rs, a.keys)
	const room = "plenario"

	speaker := a.dial(client.Options{Token: a.token(room, "sp", "Speaker", auth.RoleSpeaker)})
	join(t, speaker, room)
	enc := newWHIPEncoder(t, true, true, 's')
	publishOverWS(t, speaker, room, enc)

	obs := newWHIPEncoder(t, true, true, 'o')
	resp, body := b.call(t, "POST", "/whip/"+room, b.token(room, "obs", "OBS", auth.RoleSpeaker), "application/sdp", rtctest.Offer(t, obs.pc))
	created(t, resp, body, "/whip/"+room)
	obs.answer(t, string(body))
	r, _ := ea.Room(room)
	waitUntil(t, "the encoder on node B publishes on node A", func() bool { return len(r.Publishers()) == 2 })
	if got := r.Names()["obs"]; got != "OBS" {
		t.Errorf("the encoder's name on node A: %q, want the token's, OBS", got)
	}
	if eb.Active(room) {
		t.Fatal("node B's SFU has the room's media too")
	}

	player := newWHEPPlayer(t)
	viewer := b.token(room, "vi", "Viewer", auth.RoleParticipant)
	resp, body = b.call(t, "POST", "/whep/"+room, viewer, "application/sdp", rtctest.Offer(t, player.pc))
	whep := created(t, resp, body, "/whep/"+room)
	player.answer(t, string(body))
	waitUntil(t, "the WHEP player on node B receives the stage from node A", func() bool {
		return player.count("video") > 20 && player.count("audio") > 20
	})

	if resp, body := b.call(t, "DELETE", whep, viewer, "", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE %s on node B: %d %s", whep, resp.StatusCode, body)
	}
	time.Sleep(300 * time.Millisecond)
	before := player.count("video")
	time.Sleep(time.Second)
	if got := player.count("video") - before; got != 0 {
		t.Fatalf("the player received %d packets after its DELETE", got)
	}
}
