package server

import (
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/liveforum/liveforum/auth"
	"github.com/liveforum/liveforum/internal/rtctest"
	"github.com/liveforum/liveforum/rooms"
	"github.com/liveforum/liveforum/signaling"
)

// WHIP and WHEP tests: real pion peers on loopback talk to a real SFU through the HTTP endpoints. The
// clients are plain pion plus net/http, as a third-party WHIP encoder would be: nothing of the server's
// own code path is used on the client side.

const whipWait = 15 * time.Second

// newMediaTestServer is a test server with an SFU on loopback whose STUN and TURN servers (handed to
// clients only) are made up.
func newMediaTestServer(t *testing.T, mod func(*Config, *rooms.Config)) (*testServer, *signaling.Engine) {
	t.Helper()
	_, lo, _ := net.ParseCIDR("127.0.0.0/8")
	e, err := signaling.New(signaling.Config{
		ICE: signaling.ICEConfig{UDPAddr: "127.0.0.1:0", Interfaces: []string{"lo"}, IPs: []*net.IPNet{lo},
			Servers: []webrtc.ICEServer{
				{URLs: []string{"stun:stun.example.org:3478"}},
				{URLs: []string{"turn:turn.example.org:3478?transport=udp"}, Username: "ana", Credential: `pa"ss`},
			}},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() }) // after the server's shutdown: cleanups run last first
	ts := newTestServer(t, func(c *Config, rc *rooms.Config) {
		c.Media = e
		if mod != nil {
			mod(c, rc)
		}
	})
	return ts, e
}

var (
	vp8  = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	opus = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}
)

// whipEncoder is a WHIP client sending synthetic VP8 (a keyframe every 45 frames) and Opus; the last byte
// of every payload is its mark.
type whipEncoder struct {
	pc           *webrtc.PeerConnection
	video, audio *webrtc.TrackLocalStaticRTP
	mark         byte
	stop         chan struct{}
	wg           sync.WaitGroup
}

// newWHIPEncoder prepares an encoder's peer connection with the given tracks (video and/or audio).
func newWHIPEncoder(t *testing.T, video, audio bool, mark byte) *whipEncoder {
	t.Helper()
	enc := &whipEncoder{pc: rtctest.PeerConnection(t), mark: mark, stop: make(chan struct{})}
	add := func(c webrtc.RTPCodecCapability, id string) *webrtc.TrackLocalStaticRTP {
		tr, err := webrtc.NewTrackLocalStaticRTP(c, id, "obs")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := enc.pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
		return tr
	}
	if video {
		enc.video = add(vp8, "video")
	}
	if audio {
		enc.audio = add(opus, "audio")
	}
	t.Cleanup(enc.close)
	return enc
}

// answer sets the server's answer and starts sending.
func (enc *whipEncoder) answer(t *testing.T, sdp string) {
	t.Helper()
	if err := enc.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		t.Fatal(err)
	}
	enc.wg.Add(1)
	go enc.send()
}

// send writes 30 video frames (3 packets each) and 50 audio packets a second until stopped.
func (enc *whipEncoder) send() {
	defer enc.wg.Done()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var vseq, aseq uint16
	var vts, ats uint32
	for frame := 0; ; frame++ {
		select {
		case <-enc.stop:
			return
		case <-tick.C:
		}
		if enc.audio != nil {
			ats += 960
			aseq++
			_ = enc.audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: aseq, Timestamp: ats}, Payload: []byte{0xfc, 1, 2, enc.mark}})
		}
		if enc.video == nil || frame%3 == 2 {
			continue
		}
		vts += 3000
		key := byte(0x01) // P bit set: an interframe
		if frame%45 == 0 {
			key = 0x00
		}
		for i := range 3 {
			desc := byte(0x00)
			if i == 0 {
				desc = 0x10 // S: start of partition 0
			}
			vseq++
			_ = enc.video.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: vseq, Timestamp: vts, Marker: i == 2},
				Payload: []byte{desc, key, 0x9d, 0x01, 0x2a, enc.mark}})
		}
	}
}

func (enc *whipEncoder) close() {
	select {
	case <-enc.stop:
	default:
		close(enc.stop)
	}
	enc.wg.Wait()
}

// whepPlayer is a WHEP client that counts the packets it receives, by kind, and remembers the last mark.
type whepPlayer struct {
	pc      *webrtc.PeerConnection
	mu      sync.Mutex
	packets map[string]int
	marks   map[string]byte
	tracks  atomic.Int32
}

func newWHEPPlayer(t *testing.T) *whepPlayer {
	t.Helper()
	p := &whepPlayer{pc: rtctest.PeerConnection(t), packets: map[string]int{}, marks: map[string]byte{}}
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := p.pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	p.pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		p.tracks.Add(1)
		kind := tr.Kind().String()
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.packets[kind]++
			if len(pkt.Payload) > 0 {
				p.marks[kind] = pkt.Payload[len(pkt.Payload)-1]
			}
			p.mu.Unlock()
		}
	})
	return p
}

func (p *whepPlayer) count(kind string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.packets[kind]
}

func (p *whepPlayer) mark(kind string) byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.marks[kind]
}

func (p *whepPlayer) answer(t *testing.T, sdp string) {
	t.Helper()
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		t.Fatal(err)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(whipWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// created checks a 201 answer to a WHIP or WHEP POST and returns the session's path.
func created(t *testing.T, resp *http.Response, body []byte, prefix string) string {
	t.Helper()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST %s: status %d: %s", prefix, resp.StatusCode, body)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, prefix+"/") || len(loc) != len(prefix)+1+36 {
		t.Fatalf("Location %q, want %s/<uuid>", loc, prefix)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/sdp" {
		t.Fatalf("Content-Type %q", ct)
	}
	if et := resp.Header.Get("ETag"); len(et) < 3 || et[0] != '"' || et[len(et)-1] != '"' {
		t.Fatalf("ETag %q, want a quoted entity tag", et)
	}
	if !strings.HasPrefix(string(body), "v=0") || !strings.Contains(string(body), "a=candidate:") {
		t.Fatalf("answer without candidates:\n%s", body)
	}
	return loc
}

// A pion WHIP client publishes VP8 and Opus with a speaker's token; a WHEP viewer with a participant's
// token receives both. DELETE with the speaker's token ends the publishing: the viewer receives nothing
// more; a second DELETE finds nothing.
func TestWHIPToWHEP(t *testing.T) {
	ts, e := newMediaTestServer(t, nil)
	speaker := ts.token("stage", "ana", "Ana", auth.RoleSpeaker) // names the room: creates it (-auto-create)

	enc := newWHIPEncoder(t, true, true, 'a')
	resp, body := ts.call(t, "POST", "/whip/stage", speaker, "application/sdp", rtctest.Offer(t, enc.pc))
	whip := created(t, resp, body, "/whip/stage")
	links := resp.Header.Values("Link")
	wantLinks := []string{`<stun:stun.example.org:3478>; rel="ice-server"`,
		`<turn:turn.example.org:3478?transport=udp>; rel="ice-server"; username="ana"; credential="pa\"ss"; credential-type="password"`}
	if strings.Join(links, "\n") != strings.Join(wantLinks, "\n") {
		t.Fatalf("Link headers:\n%s\nwant\n%s", strings.Join(links, "\n"), strings.Join(wantLinks, "\n"))
	}
	enc.answer(t, string(body))
	if st, err := ts.reg.Get(t.Context(), "stage"); err != nil || st.Guests {
		t.Fatalf("room created by the speaker's WHIP: %+v %v", st, err)
	}

	player := newWHEPPlayer(t)
	viewer := ts.token("*", "bo", "Bo", auth.RoleParticipant)
	resp, body = ts.call(t, "POST", "/whep/stage", viewer, "application/sdp", rtctest.Offer(t, player.pc))
	whep := created(t, resp, body, "/whep/stage")
	player.answer(t, string(body))
	waitUntil(t, "the viewer receives video and audio", func() bool {
		return player.count("video") >= 30 && player.count("audio") >= 30
	})
	if player.mark("video") != 'a' || player.mark("audio") != 'a' {
		t.Fatalf("marks %q %q, want the encoder's", player.mark("video"), player.mark("audio"))
	}
	room, _ := e.Room("stage")
	if got := room.Publishers(); len(got) != 1 || got[0] != "ana" {
		t.Fatalf("publishers %v, want [ana]", got)
	}

	resp, body = ts.call(t, "DELETE", whip, speaker, "", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE %s: %d %s", whip, resp.StatusCode, body)
	}
	time.Sleep(300 * time.Millisecond) // packets in flight
	before := player.count("video") + player.count("audio")
	time.Sleep(time.Second)
	if after := player.count("video") + player.count("audio"); after != before {
		t.Fatalf("the viewer received %d packets after the publisher was deleted", after-before)
	}
	if got := room.Publishers(); len(got) != 0 {
		t.Fatalf("publishers after DELETE: %v", got)
	}
	if resp, _ := ts.call(t, "DELETE", whip, speaker, "", ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("second DELETE: %d, want 404", resp.StatusCode)
	}
	waitUntil(t, "the WHIP session is forgotten", func() bool { return ts.srv.whip.count() == 1 })

	if resp, _ := ts.call(t, "DELETE", whep, viewer, "", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE %s: %d", whep, resp.StatusCode)
	}
	waitUntil(t, "no session is left", func() bool { return ts.srv.whip.count() == 0 })
}

// Requests that must fail, each with its status.
func TestWHIPRefusals(t *testing.T) {
	ts, _ := newMediaTestServer(t, nil)
	if _, err := ts.reg.Create(t.Context(), rooms.Settings{Name: "hall"}); err != nil {
		t.Fatal(err)
	}
	av := rtctest.Offer(t, newWHIPEncoder(t, true, true, 0).pc)
	speaker := ts.token("hall", "ana", "Ana", auth.RoleSpeaker)
	expired, err := ts.keys.Sign(auth.Claims{Room: "hall", Identity: "ana", Name: "Ana", Role: auth.RoleSpeaker,
		Expires: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	inv, err := ts.srv.MintInvite("hall", "speaker", time.Hour, "http://x")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, method, path, token, ctype, body string
		want                                   int
		header, value                          string // a header the answer must have
	}{
		{"no token", "POST", "/whip/hall", "", "application/sdp", av, 401, "WWW-Authenticate", `Bearer realm="liveforum"`},
		{"bad token", "POST", "/whip/hall", "not.a.token", "application/sdp", av, 401, "WWW-Authenticate", `Bearer realm="liveforum", error="invalid_token"`},
		{"expired token", "POST", "/whip/hall", expired, "application/sdp", av, 401, "WWW-Authenticate",
			`Bearer realm="liveforum", error="invalid_token", error_description="token expired"`},
		{"participant", "POST", "/whip/hall", ts.token("hall", "bo", "Bo", auth.RoleParticipant), "application/sdp", av, 403, "", ""},
		{"bot", "POST", "/whip/hall", ts.token("*", "bot", "Bot", auth.RoleBot), "application/sdp", av, 403, "", ""},
		{"interpreter with video", "POST", "/whip/hall", ts.token("hall", "iv", "Iva", auth.RoleInterpreter), "application/sdp", av, 403, "", ""},
		{"invite link", "POST", "/whip/hall", inv.Token, "application/sdp", av, 403, "", ""},
		{"token for another room", "POST", "/whip/hall", ts.token("other", "ana", "Ana", auth.RoleSpeaker), "application/sdp", av, 403, "", ""},
		{"bad sdp", "POST", "/whip/hall", speaker, "application/sdp", "hello", 400, "", ""},
		{"sdp without media", "POST", "/whip/hall", speaker, "application/sdp", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", 400, "", ""},
		{"wrong content type", "POST", "/whip/hall", speaker, "application/json", av, 415, "", ""},
		{"no content type", "POST", "/whip/hall", speaker, "", av, 415, "", ""},
		{"too large", "POST", "/whip/hall", speaker, "application/sdp", av + strings.Repeat("a=x\r\n", signaling.MaxSDPBytes/5), 413, "", ""},
		{"room that does not exist", "POST", "/whip/nowhere", ts.token("*", "ana", "Ana", auth.RoleSpeaker), "application/sdp", av, 404, "", ""},
		{"bad room name", "POST", "/whip/no%20such", speaker, "application/sdp", av, 404, "", ""},
		{"whep without token, no guests", "POST", "/whep/hall", "", "application/sdp", av, 401, "WWW-Authenticate", `Bearer realm="liveforum"`},
		{"patch", "PATCH", "/whip/hall/0b5bd3b3-4f3e-4a39-a3a5-2a1c1b1d1e1f", speaker, "application/trickle-ice-sdpfrag", "a=x", 405, "Allow", "DELETE, OPTIONS"},
		{"get endpoint", "GET", "/whip/hall", speaker, "", "", 405, "Allow", "POST, OPTIONS"},
		{"delete unknown", "DELETE", "/whip/hall/0b5bd3b3-4f3e-4a39-a3a5-2a1c1b1d1e1f", speaker, "", "", 404, "", ""},
		{"options", "OPTIONS", "/whip/hall", "", "", "", 204, "Accept-Post", "application/sdp"},
		{"options whep", "OPTIONS", "/whep/hall", "", "", "", 204, "Accept-Post", "application/sdp"},
	} {
		resp, body := ts.call(t, c.method, c.path, c.token, c.ctype, c.body)
		if resp.StatusCode != c.want {
			t.Errorf("%s: status %d, want %d: %s", c.name, resp.StatusCode, c.want, body)
			continue
		}
		if c.header != "" && resp.Header.Get(c.header) != c.value {
			t.Errorf("%s: %s %q, want %q", c.name, c.header, resp.Header.Get(c.header), c.value)
		}
	}
	if n := ts.srv.whip.count(); n != 0 {
		t.Fatalf("%d sessions after refusals", n)
	}
}

// An interpreter publishes audio only; its session is ended by another token of the same member or by a
// moderator, not by someone else.
func TestWHIPInterpreterAndWhoMayDelete(t *testing.T) {
	ts, e := newMediaTestServer(t, nil)
	if _, err := ts.reg.Create(t.Context(), rooms.Settings{Name: "hall"}); err != nil {
		t.Fatal(err)
	}
	start := func(identity string) string {
		enc := newWHIPEncoder(t, false, true, 'i')
		resp, body := ts.call(t, "POST", "/whip/hall", ts.token("hall", identity, "Iva", auth.RoleInterpreter), "application/sdp", rtctest.Offer(t, enc.pc))
		loc := created(t, resp, body, "/whip/hall")
		enc.answer(t, string(body))
		return loc
	}
	first := start("iva")
	if resp, _ := ts.call(t, "DELETE", first, ts.token("hall", "bo", "Bo", auth.RoleSpeaker), "", ""); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("DELETE by another speaker: %d, want 403", resp.StatusCode)
	}
	if resp, _ := ts.call(t, "DELETE", first, "", "", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("DELETE without a token: %d, want 401", resp.StatusCode)
	}
	if resp, _ := ts.call(t, "DELETE", strings.Replace(first, "/whip/", "/whep/", 1), ts.token("hall", "iva", "Iva", auth.RoleInterpreter), "", ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("DELETE of a WHIP session at /whep: %d, want 404", resp.StatusCode)
	}
	if resp, _ := ts.call(t, "DELETE", first, ts.token("*", "iva", "Iva", auth.RoleInterpreter), "", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE with another token of the same member: %d, want 200", resp.StatusCode)
	}
	second := start("iva")
	if resp, _ := ts.call(t, "DELETE", second, ts.token("hall", "mo", "Mo", auth.RoleModerator), "", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE by a moderator: %d, want 200", resp.StatusCode)
	}
	room, _ := e.Room("hall")
	if got := room.Publishers(); len(got) != 0 {
		t.Fatalf("publishers %v", got)
	}
}

// In a room that admits guests, WHEP needs no token, and the session URL alone ends the session; in
// development mode, a WHEP to a room that does not exist creates it with guests admitted, as a join does.
func TestWHEPGuests(t *testing.T) {
	ts, _ := newMediaTestServer(t, func(c *Config, _ *rooms.Config) { c.DevMode = true })
	if _, err := ts.reg.Create(t.Context(), rooms.Settings{Name: "closed"}); err != nil {
		t.Fatal(err)
	}
	player := newWHEPPlayer(t)
	offer := rtctest.Offer(t, player.pc)
	resp, body := ts.call(t, "POST", "/whep/open-house", "", "application/sdp", offer)
	loc := created(t, resp, body, "/whep/open-house")
	if st, err := ts.reg.Get(t.Context(), "open-house"); err != nil || !st.Guests {
		t.Fatalf("room made by a dev-mode WHEP: %+v %v", st, err)
	}
	if resp, body := ts.call(t, "POST", "/whep/closed", "", "application/sdp", offer); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("WHEP without a token in a room without guests: %d %s", resp.StatusCode, body)
	}
	if resp, _ := ts.call(t, "DELETE", loc, "", "", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE of a guest's WHEP: %d", resp.StatusCode)
	}
}

// Pages of allowed origins may call WHIP (CORS); pages of others are refused.
func TestWHIPCORS(t *testing.T) {
	ts, _ := newMediaTestServer(t, func(c *Config, _ *rooms.Config) { c.AllowedOrigins = []string{"https://forum.example.org"} })
	req, _ := http.NewRequest("OPTIONS", ts.http.URL+"/whip/hall", nil)
	req.Header.Set("Origin", "https://forum.example.org")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
	resp, err := ts.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := resp.Header
	if resp.StatusCode != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != "https://forum.example.org" ||
		!strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") || !strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") ||
		!strings.Contains(h.Get("Access-Control-Expose-Headers"), "Location") || h.Get("Accept-Post") != "application/sdp" {
		t.Fatalf("preflight: %d %v", resp.StatusCode, h)
	}
	req, _ = http.NewRequest("POST", ts.http.URL+"/whip/hall", strings.NewReader("v=0"))
	req.Header.Set("Origin", "https://evil.example")
	req.Header.Set("Content-Type", "application/sdp")
	resp, err = ts.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("foreign origin: %d %v", resp.StatusCode, resp.Header)
	}
}

// Server.Shutdown ends the WHIP and WHEP sessions and refuses new ones; a server without media answers 404.
func TestWHIPShutdownAndMediaOff(t *testing.T) {
	ts, e := newMediaTestServer(t, nil)
	enc := newWHIPEncoder(t, true, true, 'a')
	offer := rtctest.Offer(t, enc.pc)
	speaker := ts.token("hall", "ana", "Ana", auth.RoleSpeaker)
	resp, body := ts.call(t, "POST", "/whip/hall", speaker, "application/sdp", offer)
	created(t, resp, body, "/whip/hall")
	if err := ts.srv.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	room, _ := e.Room("hall")
	if n, pubs := ts.srv.whip.count(), room.Publishers(); n != 0 || len(pubs) != 0 {
		t.Fatalf("after shutdown: %d sessions, publishers %v", n, pubs)
	}
	if resp, _ := ts.call(t, "POST", "/whip/hall", speaker, "application/sdp", offer); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("POST while shutting down: %d, want 503", resp.StatusCode)
	}

	off := newTestServer(t, nil)
	if resp, body := off.call(t, "POST", "/whip/hall", speaker, "application/sdp", offer); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("WHIP with media off: %d %s", resp.StatusCode, body)
	}
}
