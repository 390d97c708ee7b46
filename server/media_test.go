package server

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/liveforum/liveforum/auth"
	"github.com/liveforum/liveforum/client"
	"github.com/liveforum/liveforum/internal/rtctest"
	"github.com/liveforum/liveforum/protocol"
)

// Media signalling over the websocket, with real pion peers on loopback (the WHIP tests' helpers).

// stageViewer is a member receiving the room's stage: the server's offers come over the websocket and it
// answers each; it counts packets by kind and keeps the last payload mark.
type stageViewer struct {
	c      *client.Client
	pc     *webrtc.PeerConnection
	offers chan string
	// nodeMayDie: the test kills the media node, so an answer to an offer it made just before may be
	// refused as unavailable.
	nodeMayDie atomic.Bool

	mu      sync.Mutex
	packets map[string]int
	marks   map[string]byte
	names   map[string]string // the publishers' names in the server's last offer
}

func newStageViewer(t *testing.T, ts *testServer, room, identity string, role auth.Role) *stageViewer {
	t.Helper()
	v := &stageViewer{pc: rtctest.PeerConnection(t), offers: make(chan string, 16), packets: map[string]int{}, marks: map[string]byte{}}
	v.c = ts.dial(client.Options{Token: ts.token(room, identity, identity, role),
		OnMedia: func(r, typ string, data json.RawMessage) {
			var m protocol.MediaSDP
			if typ == protocol.TypeMediaOffer && json.Unmarshal(data, &m) == nil {
				v.mu.Lock()
				v.names = m.Names
				v.mu.Unlock()
				v.offers <- m.SDP
			}
		}})
	join(t, v.c, room)
	v.pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		kind := tr.Kind().String()
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			v.mu.Lock()
			v.packets[kind]++
			if len(p.Payload) > 0 {
				v.marks[kind] = p.Payload[len(p.Payload)-1]
			}
			v.mu.Unlock()
		}
	})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // answers every offer, in order
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case sdp := <-v.offers:
				answer, err := rtctest.Answer(v.pc, sdp)
				if err == nil {
					ctx, cancel := context.WithTimeout(context.Background(), whipWait)
					_, err = v.c.Send(ctx, protocol.TypeMediaAnswer, room, protocol.MediaSDP{SDP: answer})
					cancel()
				}
				var re *client.RequestError
				if err != nil && !(v.nodeMayDie.Load() && errors.As(err, &re) && re.Code == protocol.CodeUnavailable) {
					t.Errorf("answering the server's offer: %v", err)
				}
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return v
}

func (v *stageViewer) count(kind string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.packets[kind]
}

func (v *stageViewer) mark(kind string) byte {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.marks[kind]
}

func mediaRequest(t *testing.T, c *client.Client, typ, room string, data any) (json.RawMessage, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), whipWait)
	defer cancel()
	return c.Send(ctx, typ, room, data)
}

// publishOverWS publishes the encoder's tracks with media.publish and starts it sending.
func publishOverWS(t *testing.T, c *client.Client, room string, enc *whipEncoder) {
	t.Helper()
	reply, err := mediaRequest(t, c, protocol.TypeMediaPublish, room, protocol.MediaSDP{SDP: rtctest.Offer(t, enc.pc)})
	if err != nil {
		t.Fatalf("media.publish in %s: %v", room, err)
	}
	var answer protocol.MediaSDP
	if err := json.Unmarshal(reply, &answer); err != nil {
		t.Fatal(err)
	}
	enc.answer(t, answer.SDP)
}

func wantCode(t *testing.T, err error, code, what string) {
	t.Helper()
	var re *client.RequestError
	if !errors.As(err, &re) || re.Code != code {
		t.Fatalf("%s: %v, want the error code %s", what, err, code)
	}
}

// A speaker publishes over the websocket; a participant subscribed to the stage receives its video and
// audio; a moderator mutes the speaker's audio at the server; the speaker leaves and its media ends.
func TestMediaOverTheWebsocket(t *testing.T) {
	ts, _ := newMediaTestServer(t, nil)
	const room = "plenario"
	viewer := newStageViewer(t, ts, room, "vi", auth.RoleParticipant)
	reply, err := mediaRequest(t, viewer.c, protocol.TypeMediaSubscribe, room, nil)
	if err != nil {
		t.Fatal(err)
	}
	var cfg protocol.MediaConfig
	if err := json.Unmarshal(reply, &cfg); err != nil || len(cfg.ICEServers) != 2 || cfg.ICEServers[1].Username != "ana" {
		t.Fatalf("media.subscribe reply %s: want the two ICE servers", reply)
	}

	speaker := ts.dial(client.Options{Token: ts.token(room, "sp", "Speaker", auth.RoleSpeaker)})
	join(t, speaker, room)
	enc := newWHIPEncoder(t, true, true, 's')
	publishOverWS(t, speaker, room, enc)
	waitUntil(t, "the viewer receives the speaker's video and audio", func() bool {
		return viewer.count("video") > 20 && viewer.count("audio") > 20 && viewer.mark("video") == 's'
	})

	// Who may do what.
	other := newWHIPEncoder(t, true, true, 'p')
	_, err = mediaRequest(t, viewer.c, protocol.TypeMediaPublish, room, protocol.MediaSDP{SDP: rtctest.Offer(t, other.pc)})
	wantCode(t, err, protocol.CodeForbidden, "a participant publishes")
	_, err = mediaRequest(t, viewer.c, protocol.TypeMediaMute, room, protocol.MediaMute{Identity: "sp", Kind: "audio", Muted: true})
	wantCode(t, err, protocol.CodeForbidden, "a participant mutes the speaker")
	_, err = mediaRequest(t, speaker, protocol.TypeMediaPublish, room, protocol.MediaSDP{SDP: "not sdp"})
	wantCode(t, err, protocol.CodeBadRequest, "a speaker publishes garbage")
	_, err = mediaRequest(t, viewer.c, protocol.TypeMediaAnswer, "elsewhere", protocol.MediaSDP{SDP: "x"})
	wantCode(t, err, protocol.CodeNotJoined, "an answer for a room not joined")

	mod := ts.dial(client.Options{Token: ts.token(room, "mo", "Moderator", auth.RoleModerator)})
	join(t, mod, room)
	if _, err := mediaRequest(t, mod, protocol.TypeMediaMute, room, protocol.MediaMute{Identity: "sp", Kind: "audio", Muted: true}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	audio, video := viewer.count("audio"), viewer.count("video")
	time.Sleep(time.Second)
	if got := viewer.count("audio") - audio; got != 0 {
		t.Errorf("%d audio packets after the moderator's mute", got)
	}
	if viewer.count("video")-video < 20 {
		t.Error("the video stopped too")
	}
	_, err = mediaRequest(t, mod, protocol.TypeMediaMute, room, protocol.MediaMute{Identity: "vi", Kind: "audio", Muted: true})
	wantCode(t, err, protocol.CodeNotFound, "muting someone who does not publish")

	// The speaker leaves: its media ends for the viewer.
	ctx, cancel := context.WithTimeout(context.Background(), whipWait)
	defer cancel()
	if err := speaker.Leave(ctx, room); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	video = viewer.count("video")
	time.Sleep(time.Second)
	if got := viewer.count("video") - video; got != 0 {
		t.Errorf("%d video packets after the speaker left", got)
	}
}

// An interpreter publishes audio, not video.
func TestMediaInterpreterAudioOnly(t *testing.T) {
	ts, _ := newMediaTestServer(t, nil)
	const room = "plenario"
	in := ts.dial(client.Options{Token: ts.token(room, "in", "Interpreter", auth.RoleInterpreter)})
	join(t, in, room)
	both := newWHIPEncoder(t, true, true, 'i')
	_, err := mediaRequest(t, in, protocol.TypeMediaPublish, room, protocol.MediaSDP{SDP: rtctest.Offer(t, both.pc)})
	wantCode(t, err, protocol.CodeForbidden, "an interpreter publishes video")
	audio := newWHIPEncoder(t, false, true, 'i')
	if _, err := mediaRequest(t, in, protocol.TypeMediaPublish, room, protocol.MediaSDP{SDP: rtctest.Offer(t, audio.pc)}); err != nil {
		t.Fatalf("an interpreter publishes audio: %v", err)
	}
}
