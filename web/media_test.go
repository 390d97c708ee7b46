package web_test

// Browser tests of the stage's audio and video: real Chromium with its fake camera and microphone, the real
// SFU (signaling) on loopback, pages in browser contexts of their own.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// mediaTimeout bounds a media condition: ICE, DTLS and the first frames on loopback take well under it.
const mediaTimeout = 15 * time.Second

// inbound is one received track's inbound-rtp statistics as liveforum.media.inboundStats reports them.
type inbound struct {
	Identity             string  `json:"identity"`
	Source               string  `json:"source"` // audio, camera, screen
	Kind                 string  `json:"kind"`
	BytesReceived        float64 `json:"bytesReceived"`
	PacketsReceived      float64 `json:"packetsReceived"`
	FramesDecoded        float64 `json:"framesDecoded"`
	TotalSamplesReceived float64 `json:"totalSamplesReceived"`
}

// invitedPage opens an invite link of a role for room and joins under a name.
func (f *forum) invitedPage(t *testing.T, name, room, role, displayName string, width, height int64, mobile bool) *page {
	t.Helper()
	inv, err := f.srv.MintInvite(room, role, time.Hour, f.URL)
	if err != nil {
		t.Fatal(err)
	}
	p := f.newPage(t, name, width, height, mobile)
	p.open(inv.URL)
	p.join(displayName, "en")
	return p
}

// beforeScripts runs JavaScript in every document the page opens, before the page's own scripts (to stand
// in for a browser that refuses a permission, for instance).
func (p *page) beforeScripts(src string) {
	p.t.Helper()
	p.do("adding a script to run before the page's", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: src})
		return err
	}))
}

// identity is the page's own member identity.
func (p *page) identity() string {
	p.t.Helper()
	p.waitFor("waiting for the page to know who it is", `!!liveforum.store.self?.identity`, "", waitTimeout)
	return eval[string](p, `liveforum.store.self.identity`)
}

// tileSel is the CSS selector of the stage tile of a member.
func tileSel(identity string) string {
	return fmt.Sprintf(`%s[data-identity=%s]`, tid("stage-tile"), jsString(identity))
}

// stats reads the page's received tracks from a speaker.
func (p *page) stats(identity string) map[string]inbound {
	p.t.Helper()
	list := eval[[]inbound](p, `liveforum.media.inboundStats()`)
	out := map[string]inbound{}
	for _, s := range list {
		if s.Identity == identity {
			out[s.Source] = s
		}
	}
	return out
}

// mediaState explains the page's media for a failed wait.
const mediaStateJS = `(async () => ({
	state: liveforum.media.state, publishing: liveforum.media.publishing, error: liveforum.media.error,
	speakers: [...liveforum.media.speakers.values()].map(s => ({id: s.identity, audio: !!s.audio, camera: !!s.camera, screen: !!s.screen, flowing: s.flowing})),
	tiles: [...document.querySelectorAll('[data-testid=stage-tile]')].map(e => ({...e.dataset})),
	stats: await liveforum.media.inboundStats(),
}))()`

// statJS is an expression whose value is a statistic of a speaker's received track (-1 if none).
func statJS(identity, source, field string) string {
	return fmt.Sprintf(`((await liveforum.media.inboundStats()).find(s => s.identity === %s && s.source === %q)?.%s ?? -1)`,
		jsString(identity), source, field)
}

// waitGrowing waits until a statistic of a speaker's received track grows past what it is when called.
func (p *page) waitGrowing(identity, source, field string) {
	p.t.Helper()
	start := eval[float64](p, `(async () => `+statJS(identity, source, field)+`)()`)
	p.waitFor(fmt.Sprintf("waiting for %s's %s %s to grow past %v", identity, source, field, start),
		fmt.Sprintf(`%s > %v`, statJS(identity, source, field), start), mediaStateJS, mediaTimeout)
}

func TestStageSpeakerToViewer(t *testing.T) {
	f := newForum(t)
	viewer := f.joinedPage(t, "viewer", "/r/stage", "Vera Viewer", "en")
	speaker := f.invitedPage(t, "speaker", "stage", "speaker", "Sami Speaker", desktopW, desktopH, false)
	sid := speaker.identity()

	speaker.click("publish-mic")
	speaker.click("publish-camera")
	speaker.waitFor("waiting for the speaker to be live", jsq("publish-controls")+`.dataset.state === 'live'`, mediaStateJS, mediaTimeout)

	viewer.waitFor("waiting for the speaker's tile with video", fmt.Sprintf(`document.querySelector('%s')?.dataset.video === 'on'`, tileSel(sid)), mediaStateJS, mediaTimeout)
	viewer.waitGrowing(sid, "camera", "framesDecoded")
	viewer.waitGrowing(sid, "audio", "bytesReceived")
	viewer.waitGrowing(sid, "audio", "totalSamplesReceived")
	speaker.screenshot("stage-speaker-live.png", false)
	viewer.screenshot("stage-viewer-tile.png", false)
}

// clickSel clicks the element matching a CSS selector, as a user would.
func (p *page) clickSel(sel string) {
	p.t.Helper()
	p.waitFor("waiting for "+sel+" to be visible", fmt.Sprintf(`(() => { const e = document.querySelector(%s); if (!e) return false;
		const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0 && getComputedStyle(e).visibility !== 'hidden'; })()`, jsString(sel)),
		`[...document.querySelectorAll('[data-testid]')].map(e => e.dataset.testid)`, waitTimeout)
	p.do("clicking "+sel, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

// goLive turns on the page's microphone and camera and waits until it is live.
func (p *page) goLive(sources ...string) {
	p.t.Helper()
	for _, s := range sources {
		p.click("publish-" + s)
		p.waitFor("waiting for publish-"+s+" to be on", jsq("publish-"+s)+`.getAttribute('aria-pressed') === 'true'`, mediaStateJS, mediaTimeout)
	}
	p.waitFor("waiting to be live", jsq("publish-controls")+`.dataset.state === 'live'`, mediaStateJS, mediaTimeout)
}

// waitTile waits until the page shows a member's tile whose data-* attribute has a value.
func (p *page) waitTile(identity, attr, value string) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("waiting for %s's tile with data-%s=%q", identity, attr, value),
		fmt.Sprintf(`document.querySelector(%s)?.dataset[%s] === %s`, jsString(tileSel(identity)), jsString(attr), jsString(value)),
		mediaStateJS, mediaTimeout)
}

// waitNoTile waits until the page shows no tile of the member.
func (p *page) waitNoTile(identity string) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("waiting for %s's tile to go", identity), fmt.Sprintf(`!document.querySelector(%s)`, jsString(tileSel(identity))),
		mediaStateJS, mediaTimeout)
}

// A moderator mutes a speaker's audio: the server drops it, so a viewer receives no more audio bytes while
// the video goes on; the speaker is told the forum does not receive their microphone; unmuting brings the
// audio back.
func TestModeratorMutesSpeaker(t *testing.T) {
	f := newForum(t)
	viewer := f.joinedPage(t, "viewer", "/r/mute", "Vera Viewer", "en")
	speaker := f.invitedPage(t, "speaker", "mute", "speaker", "Sami Speaker", desktopW, desktopH, false)
	mod := f.invitedPage(t, "moderator", "mute", "moderator", "Mona Moderator", desktopW, desktopH, false)
	sid := speaker.identity()
	speaker.goLive("mic", "camera")
	viewer.waitTile(sid, "audio", "on")
	viewer.waitGrowing(sid, "audio", "bytesReceived")
	if viewer.visible("tile-mute-audio") {
		t.Error("a guest sees the moderator's mute button")
	}

	muteAudio := tileSel(sid) + " " + tid("tile-mute-audio")
	mod.waitTile(sid, "audio", "on")
	label := eval[string](mod, fmt.Sprintf(`document.querySelector(%s).getAttribute('aria-label')`, jsString(muteAudio)))
	if !strings.Contains(label, "Sami Speaker") {
		t.Errorf("the mute button's label %q does not name the speaker", label)
	}
	mod.clickSel(muteAudio)
	mod.waitFor("waiting for the mute button to be pressed", fmt.Sprintf(`document.querySelector(%s).getAttribute('aria-pressed') === 'true'`, jsString(muteAudio)), mediaStateJS, waitTimeout)

	// The viewer's page notices on its own that the audio stopped; then the statistics must agree: while
	// the video advances by 30 more frames (a second of the fake camera), not one audio byte arrives.
	viewer.waitTile(sid, "audio", "off")
	viewer.waitTile(sid, "video", "on")
	before := viewer.stats(sid)
	viewer.waitFor("waiting for 30 more video frames", fmt.Sprintf(`%s >= %v`, statJS(sid, "camera", "framesDecoded"), before["camera"].FramesDecoded+30), mediaStateJS, mediaTimeout)
	after := viewer.stats(sid)
	if after["audio"].BytesReceived != before["audio"].BytesReceived {
		t.Errorf("audio bytes still arrive after the mute: %v then %v", before["audio"].BytesReceived, after["audio"].BytesReceived)
	}
	speaker.waitFor("waiting for the speaker to learn the forum does not receive their microphone", jsq("publish-controls")+`.dataset.muted === 'true'`, mediaStateJS, mediaTimeout)

	mod.clickSel(muteAudio)
	mod.waitFor("waiting for the mute button to be released", fmt.Sprintf(`document.querySelector(%s).getAttribute('aria-pressed') === 'false'`, jsString(muteAudio)), mediaStateJS, waitTimeout)
	viewer.waitGrowing(sid, "audio", "bytesReceived")
	viewer.waitTile(sid, "audio", "on")
	speaker.waitFor("waiting for the speaker's live line to clear", jsq("publish-controls")+`.dataset.muted === 'false'`, mediaStateJS, mediaTimeout)
}

// Only roles that may publish get the controls: none for participants and guests, the microphone alone for
// interpreters, whose audio reaches the others as a tile without video.
func TestPublishControlsFollowTheRole(t *testing.T) {
	f := newForum(t)
	guest := f.joinedPage(t, "guest", "/r/roles", "Gita Guest", "en")
	participant := f.invitedPage(t, "participant", "roles", "participant", "Paulo Participant", desktopW, desktopH, false)
	interpreter := f.invitedPage(t, "interpreter", "roles", "interpreter", "Inês Interpreter", desktopW, desktopH, false)
	for _, p := range []*page{guest, participant, interpreter} {
		p.waitFor("waiting for the stage's media", jsq("stage")+`.dataset.media === 'connected'`, mediaStateJS, mediaTimeout)
	}
	for _, p := range []*page{guest, participant} {
		for _, id := range []string{"publish-controls", "publish-mic", "publish-camera", "publish-screen"} {
			if p.visible(id) {
				t.Errorf("page %s (role %s) shows %s", p.name, eval[string](p, `liveforum.store.self.role`), id)
			}
		}
	}
	interpreter.waitVisible("publish-mic")
	for _, id := range []string{"publish-camera", "publish-screen"} {
		if interpreter.visible(id) {
			t.Errorf("the interpreter's page shows %s", id)
		}
	}
	if bad := interpreter.unnamedControls(); len(bad) > 0 {
		t.Errorf("interpreter's page: controls without an accessible name: %q", bad)
	}
	iid := interpreter.identity()
	interpreter.goLive("mic")
	if s := interpreter.text("publish-live"); !strings.Contains(s, "hear you") {
		t.Errorf("the interpreter's live line reads %q", s)
	}
	participant.waitTile(iid, "audio", "on")
	participant.waitTile(iid, "video", "off")
	participant.waitGrowing(iid, "audio", "totalSamplesReceived")
	if participant.visible("tile-mute-audio") {
		t.Error("a participant sees the moderator's mute button")
	}
}

// A browser that refuses the camera, and one without a microphone: the page says so in the controls'
// alert, nothing is sent, and nothing throws.
func TestPermissionDeniedAndNoDevice(t *testing.T) {
	f := newForum(t)
	inv, err := f.srv.MintInvite("denied", "speaker", time.Hour, f.URL)
	if err != nil {
		t.Fatal(err)
	}
	p := f.newPage(t, "speaker", desktopW, desktopH, false)
	p.beforeScripts(`(() => {
		const md = navigator.mediaDevices;
		md.getUserMedia = (c) => Promise.reject(new DOMException(c && c.video ? 'Permission denied' : 'Requested device not found',
			c && c.video ? 'NotAllowedError' : 'NotFoundError'));
		md.getDisplayMedia = () => Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));
	})()`)
	p.open(inv.URL)
	p.join("Sami Speaker", "en")
	for _, c := range []struct{ button, source, reason, says string }{
		{"publish-camera", "camera", "denied", "did not allow the camera"},
		{"publish-mic", "mic", "notFound", "No microphone"},
		{"publish-screen", "screen", "denied", "Screen sharing"},
	} {
		p.click(c.button)
		p.waitFor(fmt.Sprintf("waiting for the %s error", c.source),
			fmt.Sprintf(`%s.dataset.source === %q && %s.dataset.reason === %q && !%s.hidden`, jsq("publish-error"), c.source, jsq("publish-error"), c.reason, jsq("publish-error")),
			mediaStateJS, waitTimeout)
		if s := p.text("publish-error"); !strings.Contains(s, c.says) {
			t.Errorf("%s: the error reads %q, want it to say %q", c.source, s, c.says)
		}
		if v := eval[string](p, jsq(c.button)+`.getAttribute('aria-pressed')`); v != "false" {
			t.Errorf("%s is aria-pressed=%s after a refusal", c.button, v)
		}
	}
	if st := eval[string](p, jsq("publish-controls")+`.dataset.state`); st != "off" {
		t.Errorf("publish-controls data-state=%q after refusals, want off", st)
	}
	p.clickSel(tid("publish-error") + " button")
	p.waitFor("waiting for the error to be dismissed", jsq("publish-error")+`.hidden`, "", waitTimeout)
	p.screenshot("stage-denied.png", false)
}

// A speaker's screen (a second video track, named "screen" in the speaker's offer) is shown large above the
// tiles, where the speaker's camera stays; when the speaker stops sharing it goes.
func TestScreenShareShownLarge(t *testing.T) {
	f := newForum(t)
	viewer := f.joinedPage(t, "viewer", "/r/screen", "Vera Viewer", "en")
	speaker := f.invitedPage(t, "speaker", "screen", "speaker", "Sami Speaker", desktopW, desktopH, false)
	sid := speaker.identity()
	speaker.goLive("mic", "camera", "screen") // the fake UI picks a screen without asking

	viewer.waitFor("waiting for the speaker's screen, large", fmt.Sprintf(`%s.dataset.identity === %s && !%s.hidden`, jsq("stage-screen"), jsString(sid), jsq("stage-screen")),
		mediaStateJS, mediaTimeout)
	viewer.waitGrowing(sid, "screen", "framesDecoded")
	viewer.waitTile(sid, "video", "on")
	viewer.waitGrowing(sid, "camera", "framesDecoded")
	screenW := eval[float64](viewer, jsq("stage-screen")+`.getBoundingClientRect().width`)
	tileW := eval[float64](viewer, fmt.Sprintf(`document.querySelector(%s).getBoundingClientRect().width`, jsString(tileSel(sid))))
	if screenW < 2*tileW {
		t.Errorf("the screen (%v px wide) is not shown large next to the tile (%v px)", screenW, tileW)
	}
	if c := viewer.text("stage-screen"); !strings.Contains(c, "Sami Speaker") {
		t.Errorf("the screen's caption %q does not name the speaker", c)
	}
	viewer.screenshot("stage-viewer-screen.png", false)

	speaker.click("publish-screen")
	speaker.waitFor("waiting for the screen button to be off", jsq("publish-screen")+`.getAttribute('aria-pressed') === 'false'`, mediaStateJS, waitTimeout)
	viewer.waitFor("waiting for the screen to go", jsq("stage-screen")+`.hidden`, mediaStateJS, mediaTimeout)
	viewer.waitTile(sid, "video", "on")
	viewer.waitGrowing(sid, "camera", "framesDecoded")
}

// Choosing another microphone while live swaps the track in place: the viewers keep receiving audio on the
// same track (no new negotiation), from the chosen device.
func TestChangeDeviceWhileLive(t *testing.T) {
	f := newForum(t)
	viewer := f.joinedPage(t, "viewer", "/r/devices", "Vera Viewer", "en")
	speaker := f.invitedPage(t, "speaker", "devices", "speaker", "Sami Speaker", desktopW, desktopH, false)
	sid := speaker.identity()
	speaker.goLive("mic", "camera")
	viewer.waitGrowing(sid, "audio", "bytesReceived")
	mid := eval[string](viewer, fmt.Sprintf(`liveforum.media.speakers.get(%s).mids.audio`, jsString(sid)))

	speaker.click("publish-devices-toggle")
	speaker.waitVisible("device-mic")
	speaker.waitFor("waiting for the microphones to be listed", jsq("device-mic")+`.options.length >= 3`,
		`[...`+jsq("device-mic")+`.options].map(o => o.textContent)`, waitTimeout)
	want := eval[string](speaker, jsq("device-mic")+`.options[2].value`)
	speaker.choose("device-mic", want)
	speaker.waitFor("waiting for the chosen microphone to be the one sent", fmt.Sprintf(`liveforum.media.local.mic?.getSettings().deviceId === %s && !liveforum.media.busy.mic`, jsString(want)),
		mediaStateJS, mediaTimeout)
	viewer.waitGrowing(sid, "audio", "bytesReceived")
	if got := eval[string](viewer, fmt.Sprintf(`liveforum.media.speakers.get(%s).mids.audio`, jsString(sid))); got != mid {
		t.Errorf("the audio arrives on mid %q after the device change, was %q: the change renegotiated", got, mid)
	}
	if st := eval[string](speaker, jsq("publish-controls")+`.dataset.state`); st != "live" {
		t.Errorf("publish-controls data-state=%q after the device change", st)
	}
}

// When a page's connection drops, the server ends its media; once the page is back it subscribes again,
// and a speaker goes live again by itself with what was on.
func TestStageAfterReconnect(t *testing.T) {
	f := newForum(t)
	viewer := f.joinedPage(t, "viewer", "/r/again", "Vera Viewer", "en")
	speaker := f.invitedPage(t, "speaker", "again", "speaker", "Sami Speaker", desktopW, desktopH, false)
	sid := speaker.identity()
	speaker.goLive("mic", "camera")
	viewer.waitGrowing(sid, "camera", "framesDecoded")

	if n := f.cutOff("speaker"); n == 0 {
		t.Fatal("the speaker's page has no websocket the test could cut")
	}
	viewer.waitNoTile(sid)
	f.restore("speaker")
	speaker.waitState("connected", 20*time.Second)
	speaker.waitFor("waiting for the speaker to be live again", jsq("publish-controls")+`.dataset.state === 'live'`, mediaStateJS, mediaTimeout)
	viewer.waitTile(sid, "video", "on")
	viewer.waitGrowing(sid, "camera", "framesDecoded")
	viewer.waitGrowing(sid, "audio", "bytesReceived")

	if n := f.cutOff("viewer"); n == 0 {
		t.Fatal("the viewer's page has no websocket the test could cut")
	}
	viewer.waitState("reconnecting", waitTimeout)
	f.restore("viewer")
	viewer.waitState("connected", 20*time.Second)
	viewer.waitTile(sid, "video", "on")
	viewer.waitGrowing(sid, "camera", "framesDecoded")
	viewer.waitGrowing(sid, "audio", "bytesReceived")
}

// At 375 px: the stage tab with a live speaker, the controls in one row, no horizontal scroll; a viewer on
// the chat tab still hears the speaker (the stage's video element plays), and the stage tab shows a dot.
func TestStageOnPhone(t *testing.T) {
	f := newForum(t)
	viewer := f.newPage(t, "viewer", phoneW, phoneH, true)
	viewer.open("/r/phone")
	viewer.join("Vera Viewer", "en")
	speaker := f.invitedPage(t, "speaker", "phone", "speaker", "Sami Speaker With A Long Name", phoneW, phoneH, true)
	mod := f.invitedPage(t, "moderator", "phone", "moderator", "Mona Moderator", phoneW, phoneH, true)
	sid := speaker.identity()
	speaker.clickSel("#tab-stage")
	speaker.goLive("mic", "camera")

	viewer.waitTile(sid, "video", "on")
	viewer.waitFor("waiting for the stage tab's live mark", `document.getElementById('tab-stage').dataset.live === 'true'`, "", waitTimeout)
	viewer.waitFor("waiting for the speaker's video element to play on the hidden stage",
		fmt.Sprintf(`(() => { const v = document.querySelector(%s + ' video'); return v && !v.paused && !v.muted && v.srcObject?.getAudioTracks().length === 1; })()`, jsString(tileSel(sid))),
		mediaStateJS, mediaTimeout)
	viewer.waitGrowing(sid, "audio", "totalSamplesReceived")

	mod.clickSel("#tab-stage")
	mod.waitTile(sid, "video", "on")
	for _, p := range []*page{speaker, mod} {
		if !eval[bool](p, `document.documentElement.scrollWidth <= document.documentElement.clientWidth`) {
			t.Errorf("page %s scrolls sideways at %d px", p.name, phoneW)
		}
		if bad := p.unnamedControls(); len(bad) > 0 {
			t.Errorf("page %s: controls without an accessible name: %q", p.name, bad)
		}
	}
	top := func(p *page, id string) float64 {
		return eval[float64](p, jsq(id)+`.getBoundingClientRect().top`)
	}
	if a, b := top(speaker, "publish-mic"), top(speaker, "publish-devices-toggle"); a != b {
		t.Errorf("at %d px the microphone button (top %v) and the devices button (top %v) are not on one row", phoneW, a, b)
	}
	speaker.screenshot("stage-phone-speaker.png", false)
	mod.screenshot("stage-phone-moderator.png", false)
}

// On a server without media the stage says so, lists the speakers as before, and offers no controls.
func TestStageWithoutMedia(t *testing.T) {
	f := newForumWithoutMedia(t)
	speaker := f.invitedPage(t, "speaker", "quiet", "speaker", "Sami Speaker", desktopW, desktopH, false)
	speaker.waitFor("waiting for the stage to learn there is no media", jsq("stage")+`.dataset.media === 'unavailable'`, mediaStateJS, waitTimeout)
	speaker.waitVisible("stage-note")
	if s := speaker.text("stage-note"); !strings.Contains(s, "not available") {
		t.Errorf("stage-note reads %q", s)
	}
	if speaker.visible("publish-controls") {
		t.Error("publish controls are shown on a server without media")
	}
	if s := speaker.text("stage"); !strings.Contains(s, "Sami Speaker") {
		t.Errorf("the stage does not list the speaker: %q", s)
	}
}

// The SDP helpers of media.js, on descriptions shaped like Chromium's (a=msid) and like older ones (only
// a=ssrc … msid:): a publisher's offer gets its track ids labelled per mid, and a viewer reads them back.
func TestMediaSDPHelpers(t *testing.T) {
	f := newForum(t)
	p := f.newPage(t, "sdp", desktopW, desktopH, false)
	p.open("/r/sdp")
	p.waitVisible("join-name")
	type result struct {
		Labelled string            `json:"labelled"`
		Msids    map[string]string `json:"msids"`
		Sources  []string          `json:"sources"`
	}
	got := eval[result](p, `import('/static/js/media.js').then((m) => {
		const offer = ['v=0', 'o=- 1 2 IN IP4 127.0.0.1', 's=-', 'a=msid-semantic: WMS *',
			'm=audio 9 UDP/TLS/RTP/SAVPF 111', 'a=mid:0', 'a=msid:st a1b2', 'a=ssrc:11 cname:x', 'a=ssrc:11 msid:st a1b2',
			'm=video 9 UDP/TLS/RTP/SAVPF 96', 'a=mid:1', 'a=msid:st c3d4',
			'm=video 9 UDP/TLS/RTP/SAVPF 96', 'a=mid:2', 'a=ssrc:22 msid:st e5f6', ''].join('\r\n');
		const labelled = m.labelTracks(offer, new Map([['0', 'mic'], ['1', 'camera'], ['2', 'screen']]));
		const server = labelled.replaceAll('msid:st ', 'msid:ana ana:');
		const msids = Object.fromEntries([...m.msidsByMid(server)].map(([mid, v]) => [mid, v.stream + ' ' + v.track]));
		return { labelled, msids, sources: [m.sourceOf('audio', 'ana:mic'), m.sourceOf('video', 'ana:camera'), m.sourceOf('video', 'ana:screen'), m.sourceOf('video', 'obs-video')] };
	})`)
	for _, want := range []string{"a=msid:st mic\r\n", "a=ssrc:11 msid:st mic\r\n", "a=msid:st camera\r\n", "a=ssrc:22 msid:st screen\r\n", "a=msid-semantic: WMS *\r\n"} {
		if !strings.Contains(got.Labelled, want) {
			t.Errorf("labelled offer lacks %q:\n%s", want, got.Labelled)
		}
	}
	if fmt.Sprint(got.Msids) != "map[0:ana ana:mic 1:ana ana:camera 2:ana ana:screen]" {
		t.Errorf("msidsByMid = %v", got.Msids)
	}
	if fmt.Sprint(got.Sources) != "[audio camera screen camera]" {
		t.Errorf("sourceOf = %v", got.Sources)
	}
}
