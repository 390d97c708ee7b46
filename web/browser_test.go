package web_test

// Browser tests of the web app: real Chromium, real server, the data-testid contract of docs/web-testing.md.

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"github.com/liveforum/liveforum/web"
)

const (
	desktopW, desktopH = 1440, 900
	phoneW, phoneH     = 375, 812
)

// message is a chat message as the page shows it.
type message struct {
	Offset string `json:"offset"`
	Text   string `json:"text"`
	Own    bool   `json:"own"`
}

// messagesJS reads the chat list: each [data-testid=chat-message] with its data-offset, its text (the
// chat-text element when there is one, else the whole element) and whether it is marked as one's own.
var messagesJS = fmt.Sprintf(`[...document.querySelectorAll('%s %s')].map(el => ({
	offset: el.dataset.offset ?? '',
	text: (el.querySelector('%s') ?? el).textContent,
	own: el.dataset.own === 'true',
}))`, tid("chat-list"), tid("chat-message"), tid("chat-text"))

func (p *page) messages() []message {
	p.t.Helper()
	return eval[[]message](p, messagesJS)
}

// peopleJS reads the people list: each member's name and role (the person's data-role, else its group's).
var peopleJS = fmt.Sprintf(`[...document.querySelectorAll('%s %s')].map(el => ({
	name: (el.querySelector('%s') ?? el).textContent.trim(),
	role: el.dataset.role ?? el.closest('[data-role]')?.dataset.role ?? '',
}))`, tid("people-list"), tid("person"), tid("person-name"))

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// join fills the join screen and waits for the forum view, connected.
func (p *page) join(name, lang string) {
	p.t.Helper()
	p.typeInto("join-name", name)
	if lang != "" {
		p.choose("join-language", lang)
	}
	p.click("join-submit")
	p.waitVisible("chat-input")
	p.waitState("connected", waitTimeout)
}

// visible reports whether the element with the testid is rendered and visible now.
func (p *page) visible(id string) bool {
	p.t.Helper()
	return eval[bool](p, fmt.Sprintf(`(() => { const e = %s; if (!e) return false; const r = e.getBoundingClientRect();
		return r.width > 0 && r.height > 0 && getComputedStyle(e).visibility !== 'hidden'; })()`, jsq(id)))
}

// chooseUILanguage picks a UI language in the menu, opening the menu first if it is closed.
func (p *page) chooseUILanguage(lang string) {
	p.t.Helper()
	if !p.visible("ui-language") {
		p.click("menu")
	}
	p.choose("ui-language", lang)
}

// pressEnter presses Enter in the focused element as a keyboard does: keydown, then keyup. (SendKeys
// also sends a "char" event that types a line break even when the page cancelled the keydown, which a
// real keyboard does not: see chromedp's docs/API.md, example 20.)
func (p *page) pressEnter() {
	p.t.Helper()
	p.do("pressing Enter", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		for _, typ := range []input.DispatchKeyEventType{input.DispatchKeyEventTypeRawKeyDown, input.DispatchKeyEventTypeKeyUp} {
			_, err := cdp.Call(ctx, tg, input.DispatchKeyEvent, input.DispatchKeyEventParams{
				Type: typ, Key: "Enter", Code: "Enter", WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13,
			})
			if err != nil {
				return err
			}
		}
		return nil
	}))
}

// send types a chat message and sends it with the send button.
func (p *page) send(text string) {
	p.t.Helper()
	if len(text) > 120 {
		p.fill("chat-input", text)
	} else {
		p.typeInto("chat-input", text)
	}
	p.click("chat-send")
	// The input empties once the message is handed to the client.
	p.waitFor("waiting for chat-input to empty after sending", jsq("chat-input")+`.value === ''`, "", waitTimeout)
}

// waitMessages waits until the chat list shows each text (as a substring of one message).
func (p *page) waitMessages(texts ...string) {
	p.t.Helper()
	list, _ := json.Marshal(texts)
	p.waitFor(fmt.Sprintf("waiting for %d chat messages", len(texts)),
		fmt.Sprintf(`(() => { const got = (%s).map(m => m.text); return %s.every(t => got.some(g => g.includes(t))); })()`, messagesJS, list),
		fmt.Sprintf(`(() => { const got = (%s).map(m => m.text); return {shown: got.length, missing: %s.filter(t => !got.some(g => g.includes(t))),
			pending: [...document.querySelectorAll('%s')].map(e => e.innerText), error: document.querySelector('.chat-error')?.innerText}; })()`,
			messagesJS, list, tid("chat-pending")),
		waitTimeout)
}

// lastMessageShownJS is "" when the newest chat message can be seen (inside the viewport, not clipped to
// nothing or covered: the page hit-tests to it at its top and bottom), else what is wrong.
var lastMessageShownJS = fmt.Sprintf(`(() => {
	const all = document.querySelectorAll('%s %s'); const el = all[all.length - 1];
	if (!el) return 'there is no chat message';
	const r = el.getBoundingClientRect();
	if (r.height < 1 || r.bottom <= 0 || r.top >= innerHeight || r.right <= 0 || r.left >= innerWidth)
		return 'it is outside the viewport: ' + JSON.stringify(r) + ' in ' + innerWidth + 'x' + innerHeight;
	for (const y of [r.top + Math.min(6, r.height / 2), r.bottom - Math.min(6, r.height / 2)]) {
		const hit = document.elementFromPoint(r.left + Math.min(12, r.width / 2), y);
		if (!hit || !el.contains(hit)) return 'it is clipped or covered: at y=' + Math.round(y) + ' the page shows ' +
			(hit ? hit.outerHTML.slice(0, 160) : 'nothing') + '; message box ' + JSON.stringify(r);
	}
	return '';
})()`, tid("chat-list"), tid("chat-message"))

// waitLastMessageShown waits until the newest message can be seen.
func (p *page) waitLastMessageShown(why string) {
	p.t.Helper()
	p.waitFor("waiting for the newest chat message to be on screen ("+why+")", lastMessageShownJS+` === ''`, lastMessageShownJS, waitTimeout)
}

// find returns the message whose text is text, failing unless exactly one is. Without a chat-text element
// the message's text is its whole text, author and time first, so the body is its end.
func find(t *testing.T, p *page, msgs []message, text string) message {
	t.Helper()
	var found []message
	for _, m := range msgs {
		if strings.HasSuffix(m.Text, text) {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		t.Fatalf("page %s: %d messages end with %q, want 1; messages: %+v", p.name, len(found), text, msgs)
	}
	return found[0]
}

// checkOffsets fails unless every message has a distinct numeric data-offset, in increasing order down
// the list, and the set equals the server's log of chat offsets for the room (nothing missing, nothing
// invented).
func checkOffsets(t *testing.T, p *page, msgs []message, logged map[uint64]string) {
	t.Helper()
	var offs []uint64
	seen := map[uint64]int{}
	for _, m := range msgs {
		o, err := strconv.ParseUint(m.Offset, 10, 64)
		if err != nil {
			t.Errorf("page %s: message %q has data-offset %q, not a number", p.name, m.Text, m.Offset)
			continue
		}
		seen[o]++
		offs = append(offs, o)
	}
	for o, n := range seen {
		if n > 1 {
			t.Errorf("page %s: offset %d shown %d times (%q)", p.name, o, n, logged[o])
		}
	}
	if !slices.IsSorted(offs) {
		t.Errorf("page %s: messages not in offset order: %v", p.name, offs)
	}
	for o, text := range logged {
		if seen[o] == 0 {
			t.Errorf("page %s: message at offset %d (%q) is missing", p.name, o, text)
		}
	}
	for o := range seen {
		if _, ok := logged[o]; !ok {
			t.Errorf("page %s: shows offset %d, which is no chat message in the room's log", p.name, o)
		}
	}
}

// Two people chat both ways: each sees the other's message and their own, their own marked as such, each
// with the offset the server gave it, and each sees the other in the people list.
func TestChatBothWays(t *testing.T) {
	f := newForum(t)
	ana := f.newPage(t, "ana", desktopW, desktopH, false)
	bruno := f.newPage(t, "bruno", desktopW, desktopH, false)
	ana.open("/r/two-way")
	ana.join("Ana", "en")
	bruno.open("/r/two-way")
	bruno.waitVisible("join-name")
	// Pages are separate people: Ana's remembered name must not leak into Bruno's browser context.
	if v := eval[string](bruno, jsq("join-name")+`.value`); v != "" {
		t.Fatalf("bruno's join-name is pre-filled with %q: the pages share storage", v)
	}
	bruno.join("Bruno", "pt-BR")

	ana.send("Hello Bruno, Ana here")
	// Bruno sends with the keyboard: Enter in the message box.
	bruno.typeInto("chat-input", "Oi Ana, aqui é o Bruno")
	bruno.pressEnter()
	bruno.waitFor("waiting for Enter to send the message", jsq("chat-input")+`.value === ''`, jsq("chat-input")+`.value`, waitTimeout)
	logged := f.chatLog("two-way")
	if len(logged) != 2 {
		t.Fatalf("server logged %d chat messages, want 2: %v", len(logged), logged)
	}
	for _, p := range []*page{ana, bruno} {
		p.waitMessages("Hello Bruno, Ana here", "Oi Ana, aqui é o Bruno")
		msgs := p.messages()
		checkOffsets(t, p, msgs, logged)
		fromAna := find(t, p, msgs, "Hello Bruno, Ana here")
		fromBruno := find(t, p, msgs, "Oi Ana, aqui é o Bruno")
		if fromAna.Own != (p == ana) || fromBruno.Own != (p == bruno) {
			t.Errorf("page %s: own marks wrong: Ana's message own=%v, Bruno's own=%v", p.name, fromAna.Own, fromBruno.Own)
		}
		p.waitLastMessageShown("auto-scroll")
		p.waitFor("waiting for both people in people-list",
			fmt.Sprintf(`(() => { const n = (%s).map(p => p.name).join('|'); return n.includes('Ana') && n.includes('Bruno'); })()`, peopleJS),
			peopleJS, waitTimeout)
	}
}

// A third person who joins late sees the history, with the same offsets, in order.
func TestLateJoinerSeesHistory(t *testing.T) {
	f := newForum(t)
	ana := f.joinedPage(t, "ana", "/r/history", "Ana", "en")
	bruno := f.joinedPage(t, "bruno", "/r/history", "Bruno", "es")
	ana.send("first: the agenda is on the board")
	bruno.send("second: ¿empezamos?")
	ana.send("third: yes, let's start")
	bruno.waitMessages("first:", "second:", "third:")

	carla := f.newPage(t, "carla", desktopW, desktopH, false)
	carla.open("/r/history")
	carla.join("Carla", "fr")
	carla.waitMessages("first:", "second:", "third:")
	msgs := carla.messages()
	checkOffsets(t, carla, msgs, f.chatLog("history"))
	for _, m := range msgs {
		if m.Own {
			t.Errorf("late joiner Carla sees %q marked as her own", m.Text)
		}
	}
	// Everyone sees the late joiner arrive.
	ana.waitFor("waiting for Carla in Ana's people list",
		fmt.Sprintf(`(%s).some(p => p.name.includes('Carla'))`, peopleJS), peopleJS, waitTimeout)
}

// The server loses one page's connection; while it is away the other page chats; when it can connect
// again it recovers every missed message exactly once, and its connection status goes reconnecting →
// connected.
func TestReconnectRecoversMissedMessages(t *testing.T) {
	f := newForum(t)
	ana := f.joinedPage(t, "ana", "/r/recovery", "Ana", "en")
	bruno := f.joinedPage(t, "bruno", "/r/recovery", "Bruno", "de")
	bruno.send("before the drop")
	ana.waitMessages("before the drop")

	// Record every state connection-status takes from now on.
	eval[chromedp.Void](bruno, fmt.Sprintf(`(() => { const el = %s; window.__lfStates = [el.dataset.state];
		new MutationObserver(() => { const s = el.dataset.state; if (window.__lfStates.at(-1) !== s) window.__lfStates.push(s); })
			.observe(el, {attributes: true, attributeFilter: ['data-state']}); })()`, jsq("connection-status")))

	if n := f.cutOff("bruno"); n == 0 {
		t.Fatal("bruno's page has no websocket connection the test could cut")
	}
	bruno.waitState("reconnecting", waitTimeout)
	bruno.waitVisible("connection-banner") // the user is told what is happening

	missed := []string{"while away 1", "while away 2: ¿me oyes?", "while away 3 <b>not bold</b>", "while away 4"}
	for _, m := range missed {
		ana.send(m)
	}
	ana.waitMessages(missed...)
	if got := bruno.connState(); got != "reconnecting" {
		t.Fatalf("bruno's state is %q while the server refuses it, want reconnecting", got)
	}
	// Bruno writes while cut off: the message waits, and goes out once, after the recovery.
	bruno.send("written while cut off")
	bruno.waitVisible("chat-pending")

	f.restore("bruno")
	bruno.waitState("connected", 20*time.Second)
	bruno.waitMessages(missed...)
	bruno.waitMessages("written while cut off")
	ana.waitMessages("written while cut off")
	bruno.waitFor("waiting for chat-pending to empty", `!`+jsq("chat-pending"), "", waitTimeout)
	// A live message after the recovery: anything the recovery would show twice would have arrived by now.
	bruno.send("back again")
	ana.waitMessages("back again")
	bruno.waitMessages("back again")

	logged := f.chatLog("recovery")
	if len(logged) != 7 {
		t.Fatalf("server logged %d chat messages, want 7 (the one written while cut off once): %v", len(logged), logged)
	}
	for _, p := range []*page{ana, bruno} {
		msgs := p.messages()
		checkOffsets(t, p, msgs, logged)
		for _, text := range logged {
			find(t, p, msgs, text)
		}
	}
	states := eval[[]string](bruno, `window.__lfStates`)
	i := slices.Index(states, "reconnecting")
	if i < 0 || !slices.Contains(states[i:], "connected") || slices.Contains(states, "closed") {
		t.Errorf("bruno's connection-status went %v, want connected → reconnecting → connected", states)
	}
	t.Logf("bruno's connection-status: %s", strings.Join(states, " → "))
}

// Chat messages full of HTML and script appear as text and execute nothing; only http(s) URLs become
// links, with rel=noopener.
func TestChatIsTextNotHTML(t *testing.T) {
	f := newForum(t)
	ana := f.joinedPage(t, "ana", "/r/safety", "Ana <img src=x onerror=window.__xss=3>", "en")
	bruno := f.joinedPage(t, "bruno", "/r/safety", "Bruno", "en")

	fromAna := []string{
		`<img src=x onerror=window.__xss=1>`,
		`<script>window.__xss=2</script>`,
		`javascript:alert(1)`,
	}
	fromBruno := []string{
		`[x](javascript:alert(1))`,
		`read https://example.org/a?b=1&c=2 please`,
		`<a href="javascript:window.__xss=4">click</a><b>bold</b>`,
	}
	for _, m := range fromAna {
		ana.send(m)
	}
	for _, m := range fromBruno {
		bruno.send(m)
	}
	all := append(slices.Clone(fromAna), fromBruno...)
	for _, p := range []*page{ana, bruno} {
		p.waitMessages(all...)
		msgs := p.messages()
		for _, text := range all {
			m := find(t, p, msgs, text)
			if !strings.Contains(m.Text, text) {
				t.Errorf("page %s: %q shown as %q", p.name, text, m.Text)
			}
		}
		if xss := eval[string](p, `typeof window.__xss === 'undefined' ? 'undefined' : String(window.__xss)`); xss != "undefined" {
			t.Errorf("page %s: window.__xss = %s: a chat message or name ran script", p.name, xss)
		}
		list := tid("chat-list")
		bad := eval[[]string](p, fmt.Sprintf(`[...document.querySelectorAll('%[1]s img, %[1]s script, %[1]s iframe, %[1]s object, %[1]s embed, %[1]s b')].map(e => e.outerHTML)`, list))
		if len(bad) > 0 {
			t.Errorf("page %s: chat-list contains elements made from message text: %q", p.name, bad)
		}
		type link struct {
			Href, Rel, Text, Target string
		}
		links := eval[[]link](p, fmt.Sprintf(`[...document.querySelectorAll('%s a')].map(a => ({Href: a.href, Rel: a.rel, Text: a.textContent, Target: a.target}))`, list))
		var https *link
		for i, l := range links {
			if !strings.HasPrefix(l.Href, "http://") && !strings.HasPrefix(l.Href, "https://") {
				t.Errorf("page %s: a link in the chat goes to %q (%q)", p.name, l.Href, l.Text)
			}
			if strings.Contains(l.Href, "example.org") {
				https = &links[i]
			}
		}
		switch {
		case https == nil:
			t.Errorf("page %s: the https URL is not a link; links: %+v", p.name, links)
		case https.Href != "https://example.org/a?b=1&c=2":
			t.Errorf("page %s: the https link goes to %q", p.name, https.Href)
		case !slices.Contains(strings.Fields(https.Rel), "noopener"):
			t.Errorf("page %s: the https link has rel=%q, want noopener", p.name, https.Rel)
		}
	}
	// The name with markup is shown as text too.
	bruno.waitFor("waiting for Ana's name, as text, in the people list",
		fmt.Sprintf(`(%s).some(p => p.name.includes('<img src=x'))`, peopleJS), peopleJS, waitTimeout)
}

// rawKeysJS lists visible texts and labelling attributes that look like catalog keys ("chat.send"): what
// the app shows when a catalog lacks a string.
const rawKeysJS = `(() => {
	const key = /^[a-z][a-zA-Z0-9]*(\.[a-zA-Z0-9]+)+$/;
	const out = [];
	const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
	for (let n; (n = walk.nextNode());) {
		const s = n.nodeValue.trim(); const e = n.parentElement;
		if (key.test(s) && e && !e.closest('[data-testid="chat-list"]') && e.getClientRects().length) out.push(s);
	}
	for (const e of document.querySelectorAll('[placeholder], [aria-label], [title]')) {
		for (const a of ['placeholder', 'aria-label', 'title']) {
			const v = (e.getAttribute(a) || '').trim();
			if (key.test(v) && !e.closest('[data-testid="chat-list"]')) out.push(a + '=' + v);
		}
	}
	if (key.test(document.title)) out.push('title: ' + document.title);
	return out;
})()`

// Switching the UI language changes the visible strings and <html lang>; the choice is remembered; a
// browser that prefers a language gets it without choosing.
func TestLanguageSwitch(t *testing.T) {
	f := newForum(t)
	p := f.newPage(t, "ana", desktopW, desktopH, false)
	p.open("/r/languages")
	p.join("Ana", "en")
	htmlLang := func() string { return eval[string](p, `document.documentElement.lang`) }
	if got := htmlLang(); got != "en" {
		t.Errorf("<html lang> is %q in an en-US browser, want en", got)
	}
	seen := map[string]string{"en": p.text("chat-send")}
	for _, lang := range []string{"pt-BR", "ru", "de"} {
		before := p.text("chat-send")
		p.chooseUILanguage(lang)
		p.waitFor("waiting for <html lang="+lang+">", `document.documentElement.lang === `+jsString(lang), `document.documentElement.lang`, waitTimeout)
		p.waitFor("waiting for chat-send's text to change", fmt.Sprintf(`%s.innerText.trim() !== %s`, jsq("chat-send"), jsString(before)),
			jsq("chat-send")+`.innerText`, waitTimeout)
		seen[lang] = p.text("chat-send")
	}
	t.Logf("chat-send reads %q", seen)
	for a, ta := range seen {
		for b, tb := range seen {
			if a < b && ta == tb {
				t.Errorf("chat-send reads %q in both %s and %s", ta, a, b)
			}
		}
	}
	// Every language: no string is missing from its catalog (the app shows a missing key as the key).
	for _, lang := range uiLanguages {
		p.chooseUILanguage(lang)
		p.waitFor("waiting for <html lang="+lang+">", `document.documentElement.lang === `+jsString(lang), `document.documentElement.lang`, waitTimeout)
		if raw := eval[[]string](p, rawKeysJS); len(raw) > 0 {
			t.Errorf("in %s the forum view shows untranslated keys: %q", lang, raw)
		}
	}
	p.chooseUILanguage("de")
	// The select shows the current language.
	if v := eval[string](p, jsq("ui-language")+`.value`); v != "de" {
		t.Errorf("ui-language shows %q after choosing de", v)
	}
	// Remembered across a reload.
	p.do("reloading", chromedp.Reload())
	p.waitFor("waiting for the saved language after a reload", `document.documentElement.lang === 'de'`, `document.documentElement.lang`, waitTimeout)

	// A browser that prefers Russian gets Russian on its first visit.
	ru := f.newPage(t, "ivan", desktopW, desktopH, false)
	ru.language("ru-RU,ru")
	ru.open("/r/languages")
	ru.waitVisible("join-name")
	ru.waitFor("waiting for <html lang=ru> in a browser that prefers Russian", `document.documentElement.lang === 'ru'`, `document.documentElement.lang`, waitTimeout)
}

// At 375 px the forum view has no horizontal scroll, also with very long unbroken text, and a long
// word wraps inside its message rather than being cut off.
func TestPhoneNoHorizontalScroll(t *testing.T) {
	f := newForum(t)
	p := f.newPage(t, "phone", phoneW, phoneH, true)
	p.open("/r/phone")
	p.waitVisible("join-name")
	noScroll := func(where string) {
		t.Helper()
		type dims struct{ Client, Scroll, Body, Inner float64 }
		d := eval[dims](p, `({Client: document.documentElement.clientWidth, Scroll: document.documentElement.scrollWidth,
			Body: document.body.scrollWidth, Inner: window.innerWidth})`)
		if d.Client > phoneW || d.Inner > phoneW {
			t.Errorf("%s: layout is %v px wide on a %d px phone (innerWidth %v): is <meta name=viewport content=\"width=device-width, initial-scale=1\"> there?",
				where, d.Client, phoneW, d.Inner)
		}
		if d.Scroll > d.Client || d.Body > d.Client {
			wide := eval[[]string](p, `[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 0.5)
				.slice(0, 8).map(e => e.tagName.toLowerCase() + (e.dataset.testid ? '[data-testid=' + e.dataset.testid + ']' : '') + (e.className ? '.' + e.className : '') + ' right=' + Math.round(e.getBoundingClientRect().right))`)
			t.Errorf("%s: horizontal scroll: scrollWidth %v (body %v) > clientWidth %v; too wide: %q", where, d.Scroll, d.Body, d.Client, wide)
		}
	}
	noScroll("join screen")
	p.join("Zé", "pt-BR")
	noScroll("forum view")
	long := strings.Repeat("Pneumonoultramicroscopicsilicovolcanoconiosis", 10)
	url := "https://example.org/" + strings.Repeat("a-very-long-path-segment/", 12)
	p.send(long)
	p.send(url)
	p.waitMessages(long[:60], url[:40])
	noScroll("forum view with long messages")
	p.waitLastMessageShown("a phone must show the conversation")
	type box struct{ Right, ScrollW, ClientW float64 }
	boxes := eval[[]box](p, fmt.Sprintf(`[...document.querySelectorAll('%s %s')].map(el => { const t = el.querySelector('%s') ?? el;
		return {Right: el.getBoundingClientRect().right, ScrollW: t.scrollWidth, ClientW: t.clientWidth}; })`, tid("chat-list"), tid("chat-message"), tid("chat-text")))
	for i, b := range boxes {
		if b.Right > phoneW+0.5 || b.ScrollW > b.ClientW+1 {
			t.Errorf("message %d does not fit: right edge %v px (viewport %d), text %v px wide in a %v px box", i, b.Right, phoneW, b.ScrollW, b.ClientW)
		}
	}
}

// The landing page lists the development lobby from /rooms.json, says the server is in development mode,
// and its form takes you to /r/<name>, or to the forum of a pasted invite link.
func TestLandingPage(t *testing.T) {
	f := newForum(t)
	f.createLobby()
	p := f.newPage(t, "visitor", desktopW, desktopH, false)
	p.open("/")
	p.waitVisible("landing-join-form")
	lobby := fmt.Sprintf(`document.querySelector('%s %s[data-room="lobby"] a[href]')`, tid("room-list"), tid("room"))
	p.waitFor("waiting for the lobby in room-list", fmt.Sprintf(`(() => { const a = %s; return a && new URL(a.href).pathname === '/r/lobby' && a.innerText.includes('Lobby'); })()`, lobby),
		fmt.Sprintf(`%s?.innerText`, jsq("room-list")), waitTimeout)
	p.waitVisible("landing-dev")

	p.typeInto("landing-room-input", "tenants-2026")
	p.do("pressing Enter in landing-room-input", chromedp.SendKeys(chromedp.CSS(tid("landing-room-input")), "\r"))
	p.waitFor("waiting for the form to open /r/tenants-2026", `location.pathname === '/r/tenants-2026'`, `location.href`, waitTimeout)
	p.waitVisible("join-name")

	// A pasted invite link goes to its forum, invitation kept.
	inv, err := f.srv.MintInvite("assembly", "speaker", time.Hour, f.URL)
	if err != nil {
		t.Fatal(err)
	}
	p.open("/")
	p.fill("landing-room-input", inv.URL)
	p.click("landing-join-submit")
	p.waitFor("waiting for the invite link to open /r/assembly", `location.pathname === '/r/assembly'`, `location.href`, waitTimeout)
	p.waitVisible("join-name")

	// The lobby link opens the lobby's join screen.
	p.open("/")
	p.waitFor("waiting for the lobby link", lobby, "", waitTimeout)
	p.do("clicking the lobby link", chromedp.Click(chromedp.CSS(tid("room")+`[data-room="lobby"] a`), chromedp.NodeVisible))
	p.waitFor("waiting for /r/lobby", `location.pathname === '/r/lobby'`, `location.href`, waitTimeout)
	p.waitVisible("join-name")
}

// An invite link carries its token in the fragment: whoever opens it chooses a name, joins with the
// invite's role (a moderator here), and the token leaves the address bar.
func TestInviteLinkJoinsAsModerator(t *testing.T) {
	f := newForum(t)
	inv, err := f.srv.MintInvite("assembly", "moderator", time.Hour, f.URL)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(inv.URL, "#invite=") {
		t.Fatalf("invite URL %q carries no #invite= fragment", inv.URL)
	}
	guest := f.newPage(t, "guest", desktopW, desktopH, false)
	guest.open("/r/assembly")
	guest.join("Gabi", "es")

	mod := f.newPage(t, "mona", desktopW, desktopH, false)
	mod.open(inv.URL)
	mod.join("Mona", "en")
	mod.waitFor("waiting for the invite token to leave the address bar",
		fmt.Sprintf(`!location.href.includes(%s) && !location.hash.includes('invite')`, jsString(inv.Token)), `location.href`, waitTimeout)
	for _, p := range []*page{mod, guest} {
		p.waitFor("waiting for Mona among the moderators",
			fmt.Sprintf(`(%s).some(p => p.name.includes('Mona') && p.role === 'moderator')`, peopleJS), peopleJS, waitTimeout)
		p.waitFor("waiting for Gabi, not a moderator",
			fmt.Sprintf(`(%s).some(p => p.name.includes('Gabi') && p.role !== 'moderator' && p.role !== '')`, peopleJS), peopleJS, waitTimeout)
	}
	// A reload keeps the moderator's seat (the session, not the invite token, is remembered).
	mod.do("reloading", chromedp.Reload())
	mod.waitState("connected", waitTimeout)
	mod.waitVisible("chat-input")
	mod.waitFor("waiting for Mona, still a moderator, after a reload",
		fmt.Sprintf(`(%s).some(p => p.name.includes('Mona') && p.role === 'moderator')`, peopleJS), peopleJS, waitTimeout)
	if n := eval[int](mod, fmt.Sprintf(`(%s).filter(p => p.name.includes('Mona')).length`, peopleJS)); n != 1 {
		t.Errorf("after a reload Mona is listed %d times", n)
	}
}

// TestScreenshots saves the join screen and the forum view at desktop and phone width on every run, for
// people to look at (the README shows one): join-desktop.png, forum-desktop.png, forum-phone.png.
func TestScreenshots(t *testing.T) {
	f := newForum(t)
	ana := f.newPage(t, "desktop", desktopW, desktopH, false)
	ana.open("/r/assembleia")
	ana.waitVisible("join-submit")
	ana.screenshot("join-desktop.png", false)
	ana.join("Ana Souza", "pt-BR")

	bruno := f.newPage(t, "bruno", desktopW, desktopH, false)
	bruno.open("/r/assembleia")
	bruno.join("Bruno Keller", "de")
	ana.send("Bom dia a todas! A pauta de hoje: orçamento e a nova sede.")
	bruno.send("Guten Morgen! Die Unterlagen: https://example.org/protokoll")
	ana.send("Obrigada, Bruno. Começamos às 10h.")

	phone := f.newPage(t, "phone", phoneW, phoneH, true)
	phone.open("/r/assembleia")
	phone.join("Carla Díaz", "es")
	phone.send("¡Hola! Me conecto desde el móvil.")
	for _, p := range []*page{ana, phone} {
		p.waitMessages("Bom dia a todas!", "Guten Morgen!", "Começamos às 10h.", "¡Hola!")
		p.waitFor("waiting for three people", fmt.Sprintf(`(%s).length >= 3`, peopleJS), peopleJS, waitTimeout)
	}
	ana.screenshot("forum-desktop.png", false)
	phone.screenshot("forum-phone.png", false)
}

// The harness itself: a page that breaks the app's CSP and throws is caught, so a test of the app would
// fail on it.
func TestHarnessCatchesCSPViolationsAndExceptions(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Security-Policy", web.ContentSecurityPolicy)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><html><body><p style="color:red">x</p><script>window.inline = 1</script><script src="/throw.js"></script></body></html>`)
	})
	mux.HandleFunc("/throw.js", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		fmt.Fprint(w, `setTimeout(() => { throw new Error('boom from the harness test') }, 0);`)
	})
	hs := httptest.NewServer(mux)
	defer hs.Close()
	f := &forum{t: t, URL: hs.URL}
	p := f.newPage(t, "bad", 800, 600, false)
	p.open("/")
	deadline := time.Now().Add(waitTimeout)
	var problems []string
	for time.Now().Before(deadline) {
		p.mu.Lock()
		problems = slices.Clone(p.problems)
		p.mu.Unlock()
		joined := strings.Join(problems, "\n")
		if strings.Contains(joined, "CSP violation: script-src") && strings.Contains(joined, "style-src") &&
			strings.Contains(joined, "boom from the harness test") {
			break
		}
		time.Sleep(pollEvery)
	}
	p.mu.Lock()
	p.problems = nil // expected here: they must not fail this test
	p.mu.Unlock()
	joined := strings.Join(problems, "\n")
	for _, want := range []string{"CSP violation: script-src", "style-src", "boom from the harness test"} {
		if !strings.Contains(joined, want) {
			t.Errorf("the harness missed %q; it recorded:\n%s", want, joined)
		}
	}
	if v := eval[string](p, `String(window.inline)`); v != "undefined" {
		t.Errorf("the inline script ran despite the CSP: window.inline = %s", v)
	}
}

// Messages written while cut off, more than the chat rate's burst, are all sent once the page is back, in
// order and each once (the ones over the burst wait for the rate instead of being dropped).
func TestOfflineBurstIsSentAtTheChatRate(t *testing.T) {
	f := newForum(t)
	ana := f.joinedPage(t, "ana", "/r/burst", "Ana", "en")
	bruno := f.joinedPage(t, "bruno", "/r/burst", "Bruno", "de")
	if n := f.cutOff("bruno"); n == 0 {
		t.Fatal("bruno's page has no websocket connection the test could cut")
	}
	bruno.waitState("reconnecting", waitTimeout)
	var texts []string
	for i := range 7 {
		texts = append(texts, fmt.Sprintf("offline %d", i+1))
		bruno.send(texts[i])
	}
	f.restore("bruno")
	bruno.waitState("connected", 20*time.Second)
	ana.waitMessages(texts...)
	logged := f.chatLog("burst")
	offsets := slices.Sorted(maps.Keys(logged))
	var inOrder []string
	for _, off := range offsets {
		inOrder = append(inOrder, logged[off])
	}
	if fmt.Sprint(inOrder) != fmt.Sprint(texts) {
		t.Fatalf("server logged %q, want %q in that order, each once", inOrder, texts)
	}
}
