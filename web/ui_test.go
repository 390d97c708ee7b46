package web_test

// Browser tests of the forum view's behaviour beyond the list: auto-scroll and the new-messages
// jump, accessible names, the offline state, leaving and joining again.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/dom"
	"github.com/chromedp/chromedp"
)

// scrollerJS finds the element that scrolls the chat: the nearest ancestor of chat-list that can scroll.
var scrollerJS = fmt.Sprintf(`(() => { for (let e = %s; e; e = e.parentElement) {
	const o = getComputedStyle(e).overflowY; if ((o === 'auto' || o === 'scroll') && e.scrollHeight > e.clientHeight) return e; }
	return null; })()`, jsq("chat-list"))

// The chat follows new messages until the reader scrolls up; then it stays put and a "new messages"
// button appears, which jumps to the end.
func TestChatAutoScrollAndNewMessages(t *testing.T) {
	f := newForum(t)
	var pages []*page
	for _, name := range []string{"ana", "bruno", "carla"} {
		p := f.newPage(t, name, desktopW, desktopH, false)
		p.open("/r/scrolling")
		p.join(strings.ToUpper(name[:1])+name[1:], "en")
		pages = append(pages, p)
	}
	ana, bruno, carla := pages[0], pages[1], pages[2]
	var texts []string
	// The chat rate limit lets each person send five at once.
	for i, p := range []*page{ana, bruno, carla} {
		n := []int{4, 5, 4}[i]
		for j := range n {
			text := fmt.Sprintf("message %d from %s: %s", j+1, p.name, strings.TrimSpace(strings.Repeat("lorem ipsum dolor ", 4)))
			p.send(text)
			texts = append(texts, text)
		}
	}
	ana.waitMessages(texts...)
	ana.waitLastMessageShown("following the conversation")
	if !eval[bool](ana, `!!`+scrollerJS) {
		t.Fatalf("the chat does not scroll with %d messages at %dx%d: cannot test auto-scroll", len(texts), desktopW, desktopH)
	}
	// The reader scrolls up to read.
	eval[chromedp.Void](ana, `(() => { const s = `+scrollerJS+`; s.scrollTop = 0; s.dispatchEvent(new Event('scroll')); })()`)
	ana.waitFor("waiting for the chat to be scrolled to the top", scrollerJS+`?.scrollTop === 0`, "", waitTimeout)
	if ana.visible("new-messages") {
		t.Errorf("new-messages shows before any new message")
	}
	carla.send("a new message while Ana reads back")
	ana.waitMessages("a new message while Ana reads back")
	ana.waitVisible("new-messages")
	if top := eval[float64](ana, scrollerJS+`?.scrollTop ?? -1`); top != 0 {
		t.Errorf("the chat moved to scrollTop %v while the reader was reading back", top)
	}
	t.Logf("new-messages reads %q", ana.text("new-messages"))
	ana.click("new-messages")
	ana.waitLastMessageShown("after the new-messages jump")
	ana.waitFor("waiting for new-messages to go", `(() => { const e = `+jsq("new-messages")+`; return !e || e.hidden || e.getBoundingClientRect().height === 0; })()`, "", waitTimeout)
}

// unnamedControls lists the controls in the page's accessibility tree (as Chromium computes it: hidden
// elements are not in it) that have no accessible name.
func (p *page) unnamedControls() []string {
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
			switch role {
			case "button", "textbox", "combobox", "listbox", "checkbox", "radio", "searchbox", "link", "tab", "menuitem":
			default:
				continue
			}
			if strings.TrimSpace(name) != "" {
				continue
			}
			what := role
			if n.BackendDOMNodeID != 0 {
				d, err := cdp.Call(ctx, tg, dom.DescribeNode, dom.DescribeNodeParams{BackendNodeID: n.BackendDOMNodeID})
				if err == nil && d.Node != nil {
					what += " <" + strings.ToLower(d.Node.NodeName)
					for i := 0; i+1 < len(d.Node.Attributes); i += 2 {
						if a := d.Node.Attributes[i]; a == "data-testid" || a == "id" || a == "class" {
							what += fmt.Sprintf(" %s=%q", a, d.Node.Attributes[i+1])
						}
					}
					what += ">"
				}
			}
			out = append(out, what)
		}
		return nil
	}))
	return out
}

// Every visible control has an accessible name, on the landing page, the join screen and the forum view,
// at desktop and phone width.
func TestControlsAreLabelled(t *testing.T) {
	f := newForum(t)
	check := func(p *page, where string) {
		t.Helper()
		// The pages name some controls from script (translated labels): give them until the deadline.
		var bad []string
		for deadline := time.Now().Add(waitTimeout); ; {
			if bad = p.unnamedControls(); len(bad) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * pollEvery)
		}
		if len(bad) > 0 {
			t.Errorf("%s (%s): controls without an accessible name: %q", where, p.name, bad)
		}
	}
	for _, c := range []struct {
		name          string
		width, height int64
		mobile        bool
	}{{"desktop", desktopW, desktopH, false}, {"phone", phoneW, phoneH, true}} {
		p := f.newPage(t, c.name, c.width, c.height, c.mobile)
		p.open("/")
		p.waitVisible("landing-join-form")
		check(p, "landing page")
		p.open("/r/labels")
		p.waitVisible("join-name")
		check(p, "join screen")
		p.join("Ana "+c.name, "en")
		check(p, "forum view")
		if !p.visible("ui-language") {
			p.click("menu")
			p.waitVisible("ui-language")
			check(p, "forum view with the menu open")
		}
	}
}

// When the browser reports no network the page says "offline" rather than "reconnecting", and when the
// network is back it reconnects and catches up.
func TestOfflineThenBack(t *testing.T) {
	f := newForum(t)
	ana := f.newPage(t, "ana", desktopW, desktopH, false)
	bruno := f.newPage(t, "bruno", phoneW, phoneH, true)
	ana.open("/r/offline")
	ana.join("Ana", "en")
	bruno.open("/r/offline")
	bruno.join("Bruno", "tr")

	bruno.offline(true)
	if f.cutOff("bruno") == 0 {
		t.Fatal("bruno's page has no websocket connection the test could cut")
	}
	bruno.waitState("offline", waitTimeout)
	bruno.waitVisible("connection-banner")
	ana.send("said while Bruno was offline")
	ana.send("and another one")
	ana.waitMessages("said while Bruno was offline", "and another one")

	f.restore("bruno")
	bruno.offline(false)
	bruno.waitState("connected", 20*time.Second)
	bruno.waitMessages("said while Bruno was offline", "and another one")
	checkOffsets(t, bruno, bruno.messages(), f.chatLog("offline"))
}

// Leaving ends the forum for the reader (the ended screen says why) and the others see them go; "join
// again" brings them back as the same member.
func TestLeaveAndRejoin(t *testing.T) {
	f := newForum(t)
	ana := f.newPage(t, "ana", desktopW, desktopH, false)
	bruno := f.newPage(t, "bruno", phoneW, phoneH, true)
	ana.open("/r/leaving")
	ana.join("Ana", "en")
	bruno.open("/r/leaving")
	bruno.join("Bruno", "fr")
	ana.waitFor("waiting for Bruno in Ana's people list", fmt.Sprintf(`(%s).some(p => p.name.includes('Bruno'))`, peopleJS), peopleJS, waitTimeout)
	identity := eval[string](bruno, fmt.Sprintf(`document.querySelector('%s %s.self')?.dataset.identity ?? ''`, tid("people-list"), tid("person")))

	if !bruno.visible("leave") {
		bruno.click("menu") // a phone keeps "leave" in the menu
	}
	bruno.click("leave")
	bruno.waitFor("waiting for the ended screen", `document.body.dataset.view === 'ended' && document.getElementById('ended-view')?.dataset.reason === 'left'`,
		`({view: document.body.dataset.view, reason: document.getElementById('ended-view')?.dataset.reason})`, waitTimeout)
	ana.waitFor("waiting for Bruno to leave Ana's people list", fmt.Sprintf(`!(%s).some(p => p.name.includes('Bruno'))`, peopleJS), peopleJS, waitTimeout)

	bruno.click("rejoin")
	bruno.waitState("connected", waitTimeout)
	ana.waitFor("waiting for Bruno to come back", fmt.Sprintf(`(%s).some(p => p.name.includes('Bruno'))`, peopleJS), peopleJS, waitTimeout)
	again := eval[string](bruno, fmt.Sprintf(`document.querySelector('%s %s.self')?.dataset.identity ?? ''`, tid("people-list"), tid("person")))
	if identity == "" || again != identity {
		t.Errorf("Bruno rejoined as %q, was %q: want the same member", again, identity)
	}
}
