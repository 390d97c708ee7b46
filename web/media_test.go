package web_test

// Browser tests of the stage's audio and video: real Chromium with its fake camera and microphone, the real
// SFU (signaling) on loopback, pages in browser contexts of their own.

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/cdproto/cdp"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
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
	// Chromium answers the server's offers as the DTLS client, over UDP: both pages' subscriptions (the
	// speaker's too) take the direct path.
	if direct, pion := f.media.SendPaths(); direct != 2 || pion != 0 {
		t.Errorf("subscribers sent to directly: %d, through pion: %d; want 2 and 0", direct, pion)
	}
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
// audio back. Then the camera, the same way.
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

	// The camera too: the viewer's video stops, and the speaker's live line says the forum does not
	// receive their camera (it said "everyone can see and hear you" before).
	muteVideo := tileSel(sid) + " " + tid("tile-mute-video")
	mod.clickSel(muteVideo)
	mod.waitFor("waiting for the camera's mute button to be pressed", fmt.Sprintf(`document.querySelector(%s).getAttribute('aria-pressed') === 'true'`, jsString(muteVideo)), mediaStateJS, waitTimeout)
	viewer.waitTile(sid, "video", "off")
	speaker.waitFor("waiting for the speaker to learn the forum does not receive their camera", jsq("publish-controls")+`.dataset.mutedVideo === 'true'`, mediaStateJS, mediaTimeout)
	if got, want := speaker.text("publish-live"), "The forum is not receiving your camera"; !strings.Contains(got, want) {
		t.Errorf("the speaker's live line with the camera stopped: %q, want it to say %q", got, want)
	}
	mod.clickSel(muteVideo)
	viewer.waitTile(sid, "video", "on")
	speaker.waitFor("waiting for the speaker's live line to clear of the camera", jsq("publish-controls")+`.dataset.mutedVideo === 'false'`, mediaStateJS, mediaTimeout)
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

// qualityCaptureJS records, in window.__quality, the media.quality requests the page sends over its
// websocket ({id, track, quality}) with the server's answer to each (answer: "reply", or "error <code>").
const qualityCaptureJS = `(() => {
	const log = [];
	window.__quality = log;
	const send = WebSocket.prototype.send;
	WebSocket.prototype.send = function (d) {
		try {
			const m = JSON.parse(d);
			if (m.type === 'media.quality') log.push({ id: m.id, track: m.data.track, quality: m.data.quality, answer: '' });
		} catch { /* not ours */ }
		return send.call(this, d);
	};
	const WS = window.WebSocket;
	window.WebSocket = class extends WS {
		constructor(...args) {
			super(...args);
			this.addEventListener('message', (e) => {
				for (const piece of String(e.data).split('\n')) {
					let m;
					try { m = JSON.parse(piece); } catch { continue; }
					const entry = m && m.id && log.findLast((x) => x.id === m.id && !x.answer);
					if (entry) entry.answer = m.type === 'error' ? 'error ' + (m.data && m.data.code) : m.type;
				}
			});
		}
	};
})()`

// qualityPage opens a viewer's page that records its media.quality requests (qualityCaptureJS) and joins.
func (f *forum) qualityPage(t *testing.T, name, room, displayName string, width, height int64, mobile bool) *page {
	t.Helper()
	p := f.newPage(t, name, width, height, mobile)
	p.beforeScripts(qualityCaptureJS)
	p.open("/r/" + room)
	p.join(displayName, "en")
	return p
}

// qualityStateJS explains a failed quality wait: the page's choice, its tracks' caps, what it sent, the
// frames it receives.
const qualityStateJS = `(async () => ({
	quality: liveforum.media.quality,
	frames: (await liveforum.media.inboundStats()).filter(s => s.kind === 'video').map(s => s.source + ' ' + s.frameWidth + 'x' + s.frameHeight + ' decoded ' + s.framesDecoded),
	tracks: liveforum.media.qualities().map(q => q.track.replace(/^.*:/, '') + ' wanted ' + q.wanted + ' asked ' + q.asked),
	tiles: [...document.querySelectorAll('[data-testid=stage-tile] video')].map(v => v.clientWidth + 'x' + v.clientHeight),
	sent: (window.__quality || []).map(x => x.track.replace(/^.*:/, '') + ' ' + x.quality + ' ' + x.answer),
}))()`

// waitFrameHeight waits until the page decodes a speaker's camera at a height (the layer the server forwards).
func (p *page) waitFrameHeight(identity string, cond string) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("waiting for %s's camera to arrive at a frameHeight h %s", identity, cond),
		fmt.Sprintf(`(h => h %s)(%s)`, cond, statJS(identity, "camera", "frameHeight")), qualityStateJS, mediaTimeout)
}

// chooseQuality opens the stage's quality menu and clicks an option, as a user would.
func (p *page) chooseQuality(q string) {
	p.t.Helper()
	if !eval[bool](p, jsq("stage-quality")+`.open`) {
		p.click("stage-quality-toggle")
	}
	p.clickSel(fmt.Sprintf(`%s:has(input[value=%q])`, `.stage-quality-option`, q))
	p.waitFor("waiting for the quality "+q+" to be chosen", fmt.Sprintf(`liveforum.media.quality === %q && %s.dataset.quality === %q`, q, jsq("stage-quality"), q),
		qualityStateJS, waitTimeout)
}

// The viewer's quality menu. The speaker's browser publishes its camera in three simulcast layers (180, 360
// and 720 lines from Chromium's 720p fake camera). A viewer whose remembered choice is High receives the
// 720-line layer (360 when the speaker's browser is short of CPU and scales its layers down); choosing Low in
// the menu brings the 180-line one within seconds: the page asked the server
// with media.quality for the speaker's camera, under the track id its peer connection shows, and the server
// answered without error. Back in Auto, the tile asks for medium, made small for low, and low while the tab
// is hidden. A reconnected viewer asks again, and its new subscription, which the server starts at high,
// brings the 180-line layer.
//
// The frames are checked only on the way down and within a subscription's first seconds: after 8 s the
// server's bandwidth controller also caps a subscriber by the browser's REMB estimate, which on loopback
// stays far under what is sent, so from then on a viewer may get the lowest layer whatever it asks.
func TestStageQualityMenu(t *testing.T) {
	f := newForum(t)
	speaker := f.invitedPage(t, "speaker", "quality", "speaker", "Sami Speaker", desktopW, desktopH, false)
	sid := speaker.identity()
	wantTrack := jsString(sid + ":camera")
	speaker.goLive("mic", "camera")
	layersJS := `(async () => { const l = []; (await liveforum.media._pub.pc.getStats()).forEach(s => {
		if (s.type === 'outbound-rtp' && s.kind === 'video' && s.rid && s.bytesSent > 0) l.push(s.rid + ':' + s.frameWidth + 'x' + s.frameHeight + ':' + s.qualityLimitationReason); }); return l; })()`
	speaker.waitFor("waiting for the speaker to send three layers of the camera, no longer held back by its bandwidth estimate",
		`(l => l.length === 3 && l.every(x => !/:bandwidth$/.test(x)))(await `+layersJS+`)`, layersJS, mediaTimeout)
	t.Logf("the speaker sends %q", eval[[]string](speaker, layersJS))

	// The viewer joins now, its subscription fresh.
	viewer := f.newPage(t, "viewer", desktopW, desktopH, false)
	viewer.beforeScripts(qualityCaptureJS)
	viewer.beforeScripts(`(() => { try { if (!localStorage.getItem('liveforum.quality')) localStorage.setItem('liveforum.quality', 'high'); } catch { /* no storage here */ } })()`)
	viewer.open("/r/quality")
	viewer.join("Vera Viewer", "en")
	viewer.waitTile(sid, "video", "on")
	viewer.waitVisible("stage-quality")
	if q := eval[string](viewer, jsq("stage-quality")+`.dataset.quality`); q != "high" {
		t.Errorf("the quality menu shows %q, want the remembered high", q)
	}

	// The track id the server knows is the one the viewer's peer connection shows: the receiver's track and
	// the offer's msid agree, and both are "<speaker>:camera".
	ids := eval[[]string](viewer, fmt.Sprintf(`(() => { const sp = liveforum.media.speakers.get(%s);
		const tr = liveforum.media._sub.pc.getTransceivers().find(t => t.mid === sp.mids.camera);
		return [tr.receiver.track.id, sp.ids.camera]; })()`, jsString(sid)))
	if len(ids) != 2 || ids[0] != sid+":camera" || ids[1] != sid+":camera" {
		t.Fatalf("the camera's track id in the viewer's peer connection is %q (receiver track, msid), want %q", ids, sid+":camera")
	}

	// High: the top layer, 720 lines (360 if the speaker's browser, short of CPU, scaled its layers down).
	viewer.waitFrameHeight(sid, ">= 360")
	high := eval[float64](viewer, `(async () => `+statJS(sid, "camera", "frameHeight")+`)()`)
	t.Logf("at High the viewer decodes %v lines", high)
	// The viewer's bandwidth estimate (REMB) starts low and climbs toward what it receives; the server must
	// not take the climb for congestion (it once held viewers at the lowest layer from ~8 s on). Well past
	// the estimate's warm-up, High still brings the same layer.
	time.Sleep(12 * time.Second)
	if later := eval[float64](viewer, `(async () => `+statJS(sid, "camera", "frameHeight")+`)()`); later < high {
		t.Errorf("at High the viewer decodes %v lines 12 s later, %v before: the server stepped the layer down", later, high)
	}
	viewer.click("stage-quality-toggle")
	viewer.waitVisible("stage-quality-option")
	viewer.screenshot("stage-quality-menu.png", false)
	viewer.chooseQuality("low")
	viewer.waitFrameHeight(sid, fmt.Sprintf("> 0 && h <= 180 && h < %v", high))
	viewer.waitFor("waiting for the server to accept low for the camera", fmt.Sprintf(`window.__quality.some(x => x.track === %s && x.quality === 'low' && x.answer === 'reply')`, wantTrack),
		qualityStateJS, waitTimeout)
	if kept := eval[string](viewer, `localStorage.getItem('liveforum.quality')`); kept != "low" {
		t.Errorf("localStorage liveforum.quality = %q after choosing low", kept)
	}
	// The speaker's own camera comes back from the server too; the speaker's page never shows it from there.
	speaker.waitFor("waiting for the speaker's page to ask low for its own camera", fmt.Sprintf(`liveforum.media.qualities().some(q => q.track === %s && q.asked === 'low')`, wantTrack),
		qualityStateJS, mediaTimeout)

	// Auto: the tile on a 1440 px wide page is about 600×340, which asks for medium; 200 px wide, for low;
	// in a hidden tab (document.visibilityState, stood in for here: headless Chromium's tab is never
	// hidden), low.
	asked := func(q, why string) {
		t.Helper()
		viewer.waitFor(why, qualityAsked(wantTrack, q),
			qualityStateJS, waitTimeout)
	}
	viewer.chooseQuality("auto")
	asked("medium", "waiting for the tile to ask for medium")
	viewer.do("closing the menu", chromedp.KeyEvent(kb.Escape))
	viewer.waitFor("waiting for the menu to close", `!`+jsq("stage-quality")+`.open`, "", waitTimeout)
	tile := jsString(tileSel(sid))
	eval[bool](viewer, fmt.Sprintf(`(() => { document.querySelector(%s).style.width = '200px'; return true; })()`, tile))
	asked("low", "waiting for the small tile to ask for low")
	viewer.screenshot("stage-quality-small-tile.png", false)
	eval[bool](viewer, fmt.Sprintf(`(() => { document.querySelector(%s).style.width = ''; return true; })()`, tile))
	asked("medium", "waiting for the tile, large again, to ask for medium")
	eval[bool](viewer, `(() => { Object.defineProperty(document, 'visibilityState', { value: 'hidden', configurable: true });
		document.dispatchEvent(new Event('visibilitychange')); return true; })()`)
	asked("low", "waiting for the hidden tab to ask for low")
	eval[bool](viewer, `(() => { delete document.visibilityState; document.dispatchEvent(new Event('visibilitychange')); return document.visibilityState === 'visible'; })()`)
	asked("medium", "waiting for the tab, visible again, to ask for medium")

	// A reconnect: the page subscribes anew and asks again for what it wants.
	viewer.chooseQuality("low")
	asked("low", "waiting for the server to accept low")
	sentBefore := eval[int](viewer, `window.__quality.length`)
	if n := f.cutOff("viewer"); n == 0 {
		t.Fatal("the viewer's page has no websocket the test could cut")
	}
	viewer.waitState("reconnecting", waitTimeout)
	f.restore("viewer")
	viewer.waitState("connected", 20*time.Second)
	viewer.waitTile(sid, "video", "on")
	viewer.waitFor("waiting for the page to ask for low again", fmt.Sprintf(`window.__quality.slice(%d).some(x => x.track === %s && x.quality === 'low' && x.answer === 'reply')`, sentBefore, wantTrack),
		qualityStateJS, mediaTimeout)
	viewer.waitGrowing(sid, "camera", "framesDecoded")
	viewer.waitFrameHeight(sid, "> 0 && h <= 180")

	if bad := eval[[]string](viewer, `window.__quality.filter(x => x.answer !== 'reply' && x.answer !== '').map(x => x.track + ' ' + x.quality + ': ' + x.answer)`); len(bad) > 0 {
		t.Errorf("the server refused media.quality requests: %q", bad)
	}
	if audio := eval[int](viewer, `window.__quality.filter(x => /:mic$/.test(x.track)).length`); audio != 0 {
		t.Errorf("the page capped the audio track %d times", audio)
	}
}

// The quality menu on a phone (375 px): it opens from the stage tab without sideways scroll, inside the
// screen, with a name for the toggle, the group and each option in the accessibility tree; it works from
// the keyboard (Enter opens, arrows choose, Escape closes and gives the focus back); the choice survives a
// reload, whose new subscription asks for it again; it speaks Russian. A phone viewer on the chat tab (the
// stage hidden) asks for low.
func TestStageQualityMenuOnPhone(t *testing.T) {
	f := newForum(t)
	viewer := f.qualityPage(t, "viewer", "qphone", "Vera Viewer", phoneW, phoneH, true)
	speaker := f.invitedPage(t, "speaker", "qphone", "speaker", "Sami Speaker", desktopW, desktopH, false)
	sid := speaker.identity()
	wantTrack := jsString(sid + ":camera")
	speaker.goLive("mic", "camera")

	// On the chat tab (the default on a phone) the stage is hidden: its video needs the lowest layer.
	viewer.waitFor("waiting for the hidden tile to ask for low", qualityAsked(wantTrack, "low"),
		qualityStateJS, mediaTimeout)

	viewer.clickSel("#tab-stage")
	viewer.waitTile(sid, "video", "on")
	// A 343 px wide tile is 193 px high: low, like the hidden one; the menu is what changes it here.
	viewer.waitFor("waiting for the shown tile to ask for low", fmt.Sprintf(`liveforum.media.qualities().some(q => q.track === %s && q.wanted === 'low')`, wantTrack),
		qualityStateJS, waitTimeout)
	viewer.waitVisible("stage-quality")
	viewer.click("stage-quality-toggle")
	viewer.waitVisible("stage-quality-option")
	if !eval[bool](viewer, `document.documentElement.scrollWidth <= document.documentElement.clientWidth`) {
		t.Errorf("the page scrolls sideways at %d px with the quality menu open", phoneW)
	}
	box := eval[[]float64](viewer, `(() => { const r = document.querySelector('.stage-quality-body').getBoundingClientRect(); return [r.left, r.right, innerWidth]; })()`)
	if box[0] < 0 || box[1] > box[2] {
		t.Errorf("the open quality menu spans %v–%v px, outside the %v px screen", box[0], box[1], box[2])
	}
	if bad := viewer.unnamedControls(); len(bad) > 0 {
		t.Errorf("controls without an accessible name: %q", bad)
	}
	names := viewer.axNames("radio", "group", "DisclosureTriangle", "button")
	for _, want := range []string{"radio:Auto", "radio:High", "radio:Medium", "radio:Low", "group:Video quality"} {
		if !slices.Contains(names, want) {
			t.Errorf("the accessibility tree lacks %q: %q", want, names)
		}
	}
	if !slices.ContainsFunc(names, func(n string) bool { return strings.HasSuffix(n, ":Video quality: Auto") }) {
		t.Errorf("the quality toggle is not named \"Video quality: Auto\": %q", names)
	}
	viewer.screenshot("stage-quality-phone.png", false)

	// The keyboard: close it, then Enter on the toggle opens it, Tab reaches the chosen option, arrows
	// choose, Escape closes and focuses the toggle.
	viewer.do("pressing Escape", chromedp.KeyEvent(kb.Escape))
	viewer.waitFor("waiting for the menu to close", `!`+jsq("stage-quality")+`.open`, "", waitTimeout)
	viewer.do("focusing the toggle", chromedp.Focus(chromedp.CSS(tid("stage-quality-toggle"))))
	viewer.do("pressing Enter", chromedp.KeyEvent(kb.Enter))
	viewer.waitFor("waiting for Enter to open the menu", jsq("stage-quality")+`.open`, "", waitTimeout)
	viewer.do("pressing Tab", chromedp.KeyEvent(kb.Tab))
	viewer.waitFor("waiting for the focus on the chosen option", `document.activeElement?.value === 'auto'`, `document.activeElement?.outerHTML`, waitTimeout)
	for range 3 {
		viewer.do("pressing ArrowDown", chromedp.KeyEvent(kb.ArrowDown))
	}
	viewer.waitFor("waiting for the arrows to choose Low", `liveforum.media.quality === 'low'`, qualityStateJS, waitTimeout)
	viewer.do("pressing ArrowUp", chromedp.KeyEvent(kb.ArrowUp))
	viewer.waitFor("waiting for the arrow to choose Medium", `liveforum.media.quality === 'medium'`, qualityStateJS, waitTimeout)
	viewer.do("pressing Escape", chromedp.KeyEvent(kb.Escape))
	viewer.waitFor("waiting for Escape to close the menu and focus the toggle",
		`!`+jsq("stage-quality")+`.open && document.activeElement === `+jsq("stage-quality-toggle"), `document.activeElement?.outerHTML`, waitTimeout)
	viewer.waitFor("waiting for the server to accept medium", fmt.Sprintf(`window.__quality.some(x => x.track === %s && x.quality === 'medium' && x.answer === 'reply')`, wantTrack),
		qualityStateJS, mediaTimeout)

	// A reload rejoins with this tab's session, keeps the choice and asks for it in its new subscription.
	viewer.open("/r/qphone")
	viewer.waitState("connected", waitTimeout)
	viewer.clickSel("#tab-stage")
	viewer.waitVisible("stage-quality")
	if q := eval[string](viewer, jsq("stage-quality")+`.dataset.quality + ' ' + liveforum.media.quality`); q != "medium medium" {
		t.Errorf("after a reload the menu and the page's choice are %q, want medium", q)
	}
	viewer.waitFor("waiting for the reloaded page to ask for medium", fmt.Sprintf(`liveforum.media.qualities().some(q => q.track === %s && q.asked === 'medium')`, wantTrack),
		qualityStateJS, mediaTimeout)

	// In Russian (long words): the menu speaks it and still fits.
	viewer.chooseUILanguage("ru")
	viewer.do("pressing Escape", chromedp.KeyEvent(kb.Escape)) // the app's menu
	viewer.click("stage-quality-toggle")
	viewer.waitVisible("stage-quality-option")
	viewer.waitFor("waiting for the quality toggle to be labelled in Russian", jsq("stage-quality-toggle")+`.getAttribute('aria-label') === 'Качество видео: Среднее'`,
		jsq("stage-quality-toggle")+`.getAttribute('aria-label')`, waitTimeout)
	if !eval[bool](viewer, `document.documentElement.scrollWidth <= document.documentElement.clientWidth`) {
		t.Errorf("the page scrolls sideways at %d px with the quality menu open in Russian", phoneW)
	}
	viewer.screenshot("stage-quality-phone-ru.png", false)
}

// In Auto the layer wishes follow the layout: when a speaker's screen is shown large, their camera's tile
// shrinks to a thumbnail and asks for low while the screen asks for what its size needs; when the screen
// goes, the tile grows back and asks for more.
func TestStageQualityFollowsLayout(t *testing.T) {
	f := newForum(t)
	viewer := f.qualityPage(t, "viewer", "qlayout", "Vera Viewer", desktopW, desktopH, false)
	speaker := f.invitedPage(t, "speaker", "qlayout", "speaker", "Sami Speaker", desktopW, desktopH, false)
	sid := speaker.identity()
	camera, screen := jsString(sid+":camera"), jsString(sid+":screen")
	speaker.goLive("mic", "camera")
	viewer.waitTile(sid, "video", "on")
	viewer.waitFor("waiting for the camera's tile to ask for medium", qualityAsked(camera, "medium"), qualityStateJS, mediaTimeout)

	speaker.click("publish-screen")
	viewer.waitFor("waiting for the speaker's screen, large", fmt.Sprintf(`%s.dataset.identity === %s && !%s.hidden`, jsq("stage-screen"), jsString(sid), jsq("stage-screen")),
		qualityStateJS, mediaTimeout)
	viewer.waitFor("waiting for the thumbnail to ask for low", qualityAsked(camera, "low"), qualityStateJS, mediaTimeout)
	viewer.waitFor("waiting for the large screen to ask for medium", qualityAsked(screen, "medium"), qualityStateJS, mediaTimeout)
	viewer.waitGrowing(sid, "screen", "framesDecoded")

	speaker.click("publish-screen")
	viewer.waitFor("waiting for the screen to go", jsq("stage-screen")+`.hidden`, qualityStateJS, mediaTimeout)
	viewer.waitFor("waiting for the tile, large again, to ask for medium", qualityAsked(camera, "medium"), qualityStateJS, mediaTimeout)
	if bad := eval[[]string](viewer, `window.__quality.filter(x => x.answer !== 'reply' && x.answer !== '').map(x => x.track + ' ' + x.quality + ': ' + x.answer)`); len(bad) > 0 {
		t.Errorf("the server refused media.quality requests: %q", bad)
	}
}

// axNames lists "role:name" of the nodes of the page's accessibility tree that have one of the roles.
func (p *page) axNames(roles ...string) []string {
	p.t.Helper()
	var out []string
	p.do("reading the accessibility tree", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		tree, err := cdp.Call(ctx, tg, accessibility.GetFullAXTree, accessibility.GetFullAXTreeParams{})
		if err != nil {
			return err
		}
		for _, n := range tree.Nodes {
			if n.Ignored || n.Role == nil {
				continue
			}
			var role, name string
			_ = json.Unmarshal(n.Role.Value, &role)
			if n.Name != nil {
				_ = json.Unmarshal(n.Name.Value, &name)
			}
			if slices.Contains(roles, role) {
				out = append(out, role+":"+name)
			}
		}
		return nil
	}))
	return out
}

// stallJS makes a page's peer connection (the subscription's or the publishing one's) report itself
// disconnected, as one whose other end went silent does (a media node that died): the state is faked, the
// reaction to it is the page's.
func stallJS(which string) string {
	return fmt.Sprintf(`(() => { const m = liveforum.media; const pc = %s === 'sub' ? m._sub.pc : m._pub.pc;
		window.__stalled = pc; Object.defineProperty(pc, 'connectionState', { get: () => 'disconnected' });
		pc.dispatchEvent(new Event('connectionstatechange')); return true; })()`, jsString(which))
}

// A peer connection that stays disconnected is given up after a few seconds and made anew — the server
// makes no ICE restarts, and a browser would wait ~30 s to call it failed — for the viewer's subscription
// and for the speaker's publishing; a publish answered "unavailable" (the room's media node dead and not
// yet replaced) is tried again until it succeeds.
func TestMediaRecoversFromStalls(t *testing.T) {
	f := newForum(t)
	viewer := f.joinedPage(t, "viewer", "/r/stall", "Vera Viewer", "en")
	speaker := f.invitedPage(t, "speaker", "stall", "speaker", "Sami Speaker", desktopW, desktopH, false)
	sid := speaker.identity()
	speaker.goLive("mic", "camera")
	viewer.waitTile(sid, "video", "on")
	viewer.waitGrowing(sid, "camera", "framesDecoded")

	// The viewer's subscription stalls: after ~6 s the page subscribes again and the video comes back.
	stalled := time.Now()
	eval[bool](viewer, stallJS("sub"))
	viewer.waitFor("waiting for a new subscription", `liveforum.media._sub && liveforum.media._sub.pc && liveforum.media._sub.pc !== window.__stalled`,
		mediaStateJS, 20*time.Second)
	if took := time.Since(stalled); took < 5*time.Second {
		t.Errorf("the stalled subscription was given up after %v: sooner than its grace", took)
	}
	viewer.waitFor("waiting for the stage's media", jsq("stage")+`.dataset.media === 'connected'`, mediaStateJS, mediaTimeout)
	viewer.waitTile(sid, "video", "on")
	viewer.waitGrowing(sid, "camera", "framesDecoded")

	// The speaker's publishing stalls, and the media node then refuses twice as unavailable: the page keeps
	// trying (1 s, 2 s, 4 s apart) and goes live again.
	eval[bool](speaker, `(() => { const c = liveforum.media.client; const real = c.mediaPublish.bind(c); window.__refused = 0;
		c.mediaPublish = (room, sdp) => window.__refused < 2 ? (window.__refused++, Promise.reject(Object.assign(new Error('unavailable'), { code: 'unavailable' }))) : real(room, sdp);
		return true; })()`)
	eval[bool](speaker, stallJS("pub"))
	speaker.waitFor("waiting for the page to leave the live state", jsq("publish-controls")+`.dataset.state !== 'live'`, mediaStateJS, 20*time.Second)
	speaker.waitFor("waiting to be live again", jsq("publish-controls")+`.dataset.state === 'live' && window.__refused === 2`, mediaStateJS, 30*time.Second)
	// The third failure in a row was shown as an error; live again, it is gone.
	if d := eval[string](speaker, `liveforum.media.error ? liveforum.media.error.source + ':' + liveforum.media.error.reason : ''`); d != "" {
		t.Errorf("live again, the page still shows the error %q", d)
	}
	viewer.waitGrowing(sid, "camera", "framesDecoded")
	viewer.waitGrowing(sid, "audio", "bytesReceived")
}

// qualityAsked is a condition: the page wants layer q of a track (a JS string) and has asked the server for it.
func qualityAsked(track, q string) string {
	return fmt.Sprintf(`liveforum.media.qualities().some(q => q.track === %s && q.wanted === %q && q.asked === %q)`, track, q, q)
}
