package web_test

// The browser-test harness: a real liveforum server wired as cmd/liveforum wires it, on httptest with a
// listener that lets a test cut one page's connections; one headless Chromium per package run; pages in
// browser contexts of their own (separate cookies, localStorage, sessionStorage); waits on conditions with
// deadlines; console, uncaught-exception and CSP-violation collection; screenshots of every page when a
// test fails.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"go.uber.org/goleak"

	"github.com/liveforum/liveforum/auth"
	"github.com/liveforum/liveforum/broker"
	"github.com/liveforum/liveforum/protocol"
	"github.com/liveforum/liveforum/rooms"
	"github.com/liveforum/liveforum/server"
	"github.com/liveforum/liveforum/signaling"
	"github.com/liveforum/liveforum/web"
)

// Timeouts of the harness. They are deadlines for conditions, not sleeps: a passing test never waits them out.
const (
	actionTimeout = 10 * time.Second // one chromedp action (navigate, click, type, screenshot)
	waitTimeout   = 10 * time.Second // a condition in the page
	pollEvery     = 25 * time.Millisecond
)

// pageCookie names the page a request comes from, so the server side of the harness can tell which
// websocket belongs to which page (each page has its own browser context, so its own cookie jar).
const pageCookie = "lf-test-page"

func TestMain(m *testing.M) {
	code := m.Run()
	chrome.stop()
	if code == 0 {
		// chromedp's goroutines all end when the allocator is canceled and the browser process has exited
		// (chrome.stop waits for both), so no goroutine is ignored here.
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: goroutines left after the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// ---- the browser ----

// browser is the one headless Chromium of this test binary, started by the first test that needs it and
// stopped by TestMain.
type browser struct {
	once    sync.Once
	err     error
	ctx     context.Context // a chromedp context with a running browser: parent of every page's context
	cancel  []context.CancelFunc
	dataDir string
	output  syncBuffer
}

var chrome browser

// chromiumPath finds Chromium: $CHROMIUM, then chromium on PATH, then /usr/bin/chromium.
func chromiumPath() (string, error) {
	if p := os.Getenv("CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("CHROMIUM=%s: %w", p, err)
		}
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium", nil
	}
	return "", errors.New("install chromium: apt-get install -y chromium (or `make deps`; or set CHROMIUM to a Chromium binary)")
}

// start launches Chromium with the flags of ../shared/TESTING.md and a fresh profile directory.
func (b *browser) start() error {
	path, err := chromiumPath()
	if err != nil {
		return err
	}
	b.dataDir, err = os.MkdirTemp("", "liveforum-chromium-")
	if err != nil {
		return err
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Flag("headless", "new"),
		chromedp.NoSandbox, // required as root
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		// chromedp's defaults disable Translate and BlinkGenPropertyTrees; keep those and add TESTING.md's.
		chromedp.Flag("disable-features", "Translate,BlinkGenPropertyTrees,WebRtcHideLocalIpsWithMdns"),
		chromedp.Flag("lang", "en-US"), // the app follows the browser's language: make it deterministic
		chromedp.Flag("accept-lang", "en-US"),
		chromedp.UserDataDir(b.dataDir),
		chromedp.WindowSize(1440, 900),
		chromedp.CombinedOutput(&b.output),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelBrowser := chromedp.NewContext(allocCtx)
	b.cancel = []context.CancelFunc{cancelBrowser, cancelAlloc}
	b.ctx = ctx
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }() // the first Run starts the browser and binds it to ctx
	select {
	case err = <-started:
	case <-time.After(60 * time.Second):
		err = errors.New("chromium did not start within 60s")
	}
	if err != nil {
		return fmt.Errorf("starting %s: %w\nchromium output:\n%s", path, err, b.output.String())
	}
	return nil
}

// stop ends the browser and waits for its process and chromedp's goroutines, then removes the profile.
func (b *browser) stop() {
	for _, c := range b.cancel {
		c()
	}
	if b.dataDir != "" {
		_ = os.RemoveAll(b.dataDir)
	}
}

// needBrowser fails the test (never skips it) when Chromium cannot be found or started.
func needBrowser(t *testing.T) context.Context {
	t.Helper()
	chrome.once.Do(func() { chrome.err = chrome.start() })
	if chrome.err != nil {
		t.Fatal(chrome.err)
	}
	return chrome.ctx
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 {
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// ---- the server ----

// forum is a liveforum server in development mode, wired as cmd/liveforum wires it, with the web app and
// media (an SFU whose ICE is limited to loopback, on a port of its own).
type forum struct {
	t     *testing.T
	URL   string
	srv   *server.Server
	reg   *rooms.Registry
	b     broker.Broker
	keys  *auth.Keyring
	media *signaling.Engine
	ln    *trackingListener

	mu      sync.Mutex
	wsAddrs map[string][]string // page name → remote addresses of its websocket connections
	blocked map[string]bool     // pages whose websocket handshakes are refused (503)
}

// newForum starts a server with cmd/liveforum's defaults (its flags' default values) and DevMode on.
func newForum(t *testing.T) *forum {
	t.Helper()
	return newForumOn(t, broker.NewMemory(broker.MemoryOptions{HistorySize: 10000}))
}

// newForumOn is newForum on a given broker, which it closes when the test ends.
func newForumOn(t *testing.T, b broker.Broker) *forum {
	t.Helper()
	return startForum(t, b, true)
}

// newForumWithoutMedia is newForum with media off (no SFU), as a server run without it.
func newForumWithoutMedia(t *testing.T) *forum {
	t.Helper()
	return startForum(t, broker.NewMemory(broker.MemoryOptions{HistorySize: 10000}), false)
}

func startForum(t *testing.T, b broker.Broker, withMedia bool) *forum {
	t.Helper()
	keys, err := auth.NewKeyring(auth.GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	admin, err := auth.NewAdminKey(auth.GenerateAdminKey())
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() && os.Getenv("LIVEFORUM_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	var media *signaling.Engine
	if withMedia {
		media, err = signaling.New(signaling.Config{
			ICE: signaling.ICEConfig{
				UDPAddr:    "127.0.0.1:0",
				Interfaces: []string{"lo"},
				IPs:        []*net.IPNet{{IP: net.IPv4(127, 0, 0, 0), Mask: net.CIDRMask(8, 32)}},
			},
			Logger: log,
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	reg := rooms.NewRegistry(b, rooms.Config{
		HistoryOnJoin: 100, EmptyTTL: 10 * time.Minute, LeaveGrace: 5 * time.Second,
		MaxMembers: 10000, MaxChatRunes: 2000, FanoutDelay: 10 * time.Millisecond, Logger: log,
	})
	srv, err := server.New(server.Config{
		Keys: keys, AdminKey: admin, DevMode: true, AutoCreate: true,
		MaxMessageBytes: 64 << 10, MaxQueueBytes: 1 << 20, MaxConns: 50000, MaxRoomsPerConn: 4,
		ChatRate: 1, ChatBurst: 5, MsgRate: 20, MsgBurst: 60,
		PingInterval: 25 * time.Second, PongWait: 25 * time.Second / 2, WriteTimeout: 10 * time.Second,
		Version: "test", Logger: log, Media: media,
	}, reg, b)
	if err != nil {
		reg.Close(protocol.CloseShutdown, "")
		if media != nil {
			_ = media.Close()
		}
		t.Fatal(err)
	}
	f := &forum{t: t, srv: srv, reg: reg, b: b, keys: keys, media: media,
		wsAddrs: map[string][]string{}, blocked: map[string]bool{}}
	app := web.Routes(web.Options{DevMode: true, Version: "test", PublicRooms: server.PublicRooms(reg)})
	hs := httptest.NewUnstartedServer(f.watchWS(srv.Handler(app)))
	f.ln = &trackingListener{Listener: hs.Listener, conns: map[string]net.Conn{}}
	hs.Listener = f.ln
	hs.Start()
	f.URL = hs.URL
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		hs.CloseClientConnections()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("server shutdown: %v", err)
		}
		reg.Close(protocol.CloseShutdown, "")
		if media != nil {
			if err := media.Close(); err != nil {
				t.Errorf("media engine close: %v", err)
			}
		}
		hs.Close()
		b.Close()
	})
	return f
}

// createLobby creates the room development mode creates at start (cmd/liveforum devBanner).
func (f *forum) createLobby() {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := f.reg.Create(ctx, rooms.Settings{Name: "lobby", Title: "Lobby", Guests: true, Listed: true, EmptyTTL: 24 * time.Hour})
	if err != nil {
		f.t.Fatal(err)
	}
}

// watchWS records which page (by its cookie) opened which websocket, and refuses handshakes of blocked pages.
func (f *forum) watchWS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			name := "?"
			if c, err := r.Cookie(pageCookie); err == nil {
				name = c.Value
			}
			f.mu.Lock()
			blocked := f.blocked[name]
			if !blocked {
				f.wsAddrs[name] = append(f.wsAddrs[name], r.RemoteAddr)
			}
			f.mu.Unlock()
			if blocked {
				http.Error(w, "test: this page is cut off", http.StatusServiceUnavailable)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// cutOff refuses the page's new websocket handshakes and closes the TCP connections of its websockets,
// as a network failure would: the server sees a read error, the page an abnormal close (1006). It returns
// how many connections it closed.
func (f *forum) cutOff(page string) int {
	f.mu.Lock()
	f.blocked[page] = true
	addrs := f.wsAddrs[page]
	f.wsAddrs[page] = nil
	f.mu.Unlock()
	n := 0
	for _, a := range addrs {
		if f.ln.closeConn(a) {
			n++
		}
	}
	return n
}

// restore lets the page connect again.
func (f *forum) restore(page string) {
	f.mu.Lock()
	delete(f.blocked, page)
	f.mu.Unlock()
}

// chatLog returns the room's chat events as the server stored them: offset → text.
func (f *forum) chatLog(room string) map[uint64]string {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h, err := f.b.History(ctx, room, broker.HistoryOptions{})
	if err != nil {
		f.t.Fatalf("history of %s: %v", room, err)
	}
	out := map[uint64]string{}
	for _, ev := range h.Events {
		var e protocol.Event
		if json.Unmarshal(ev.Data, &e) == nil && e.Kind == protocol.KindChat {
			out[ev.Offset] = e.Text
		}
	}
	return out
}

// trackingListener remembers the connections it accepted, so a test can close one.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns map[string]net.Conn // by remote address
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.conns[c.RemoteAddr().String()] = c
	l.mu.Unlock()
	return &trackedConn{Conn: c, l: l}, nil
}

func (l *trackingListener) closeConn(addr string) bool {
	l.mu.Lock()
	c := l.conns[addr]
	delete(l.conns, addr)
	l.mu.Unlock()
	return c != nil && c.Close() == nil
}

type trackedConn struct {
	net.Conn
	l    *trackingListener
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c.RemoteAddr().String())
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// ---- pages ----

// page is one browser tab in a browser context of its own.
type page struct {
	t      *testing.T
	f      *forum
	name   string
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	problems []string // uncaught exceptions, CSP violations and JavaScript dialogs: each fails the test
	console  []string // everything the page logged, shown when the test fails
}

// cspProbe runs in every document before the page's own scripts (DevTools injects it, so the page's CSP
// does not apply to it) and reports CSP violations on the console with a marker the harness looks for.
const cspProbe = `document.addEventListener('securitypolicyviolation', (e) => {
  console.error('[lf-test] CSP violation: ' + e.effectiveDirective + ' blocked ' + (e.blockedURI || '(inline)') +
    ' in ' + e.sourceFile + ':' + e.lineNumber + (e.sample ? ' sample: ' + e.sample : ''));
}, true);`

const cspMarker = "[lf-test] CSP violation"

// joinedPage opens a desktop page at path and joins under a display name and reading language.
func (f *forum) joinedPage(t *testing.T, name, path, displayName, lang string) *page {
	t.Helper()
	p := f.newPage(t, name, desktopW, desktopH, false)
	p.open(path)
	p.join(displayName, lang)
	return p
}

// newPage opens a tab of width×height CSS pixels (mobile: a phone, with touch and the meta viewport
// honoured). When the test fails, the tab's screenshot is saved and its console is logged; any uncaught
// exception or CSP violation fails the test.
func (f *forum) newPage(t *testing.T, name string, width, height int64, mobile bool) *page {
	t.Helper()
	parent := needBrowser(t)
	p := &page{t: t, f: f, name: name}
	// A screenshot left by an earlier failing run would mislead whoever looks at the folder.
	_ = os.Remove(filepath.Join(screenshotDir(), testName(t), name+".png"))
	_ = os.Remove(filepath.Join(screenshotDir(), testName(t)))
	p.ctx, p.cancel = chromedp.NewContext(parent, chromedp.WithNewBrowserContext(), chromedp.WithListener(p.onEvent))
	t.Cleanup(p.close)
	if err := chromedp.Do(p.ctx); err != nil { // opens the tab, bound to p.ctx
		t.Fatalf("page %s: opening a tab: %v", name, err)
	}
	p.do("setting up the page",
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, cdppage.AddScriptToEvaluateOnNewDocument,
				cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: cspProbe})
			if err != nil {
				return err
			}
			_, err = cdp.Call(ctx, tg, network.SetCookie, network.SetCookieParams{Name: pageCookie, Value: name, URL: f.URL})
			return err
		}),
	)
	p.viewport(width, height, mobile)
	return p
}

func (p *page) viewport(width, height int64, mobile bool) {
	p.t.Helper()
	var opts []chromedp.EmulateViewportOption
	if mobile {
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulatePortrait)
	}
	p.do(fmt.Sprintf("setting the viewport to %dx%d", width, height), chromedp.EmulateViewport(width, height, opts...))
}

// language makes the browser prefer a language (navigator.language and Accept-Language), as a user's
// browser settings would. Call it before opening a page of the app.
func (p *page) language(lang string) {
	p.t.Helper()
	ua := eval[string](p, `navigator.userAgent`)
	p.do("setting the browser language", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetUserAgentOverride, emulation.SetUserAgentOverrideParams{UserAgent: ua, AcceptLanguage: lang})
		return err
	}))
}

// offline makes the browser report that it has no network (navigator.onLine, the offline/online events).
func (p *page) offline(off bool) {
	p.t.Helper()
	p.do(fmt.Sprintf("setting navigator.onLine to %v", !off), chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, network.OverrideNetworkState, network.OverrideNetworkStateParams{
			Offline: off, DownloadThroughput: -1, UploadThroughput: -1})
		return err
	}))
}

// onEvent runs in chromedp's event loop for the tab: it only records.
func (p *page) onEvent(ev any) {
	var line string
	problem := false
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		line = "uncaught exception: " + d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			line += " " + d.Exception.Description
		}
		line += fmt.Sprintf(" (%s:%d:%d)", d.URL, d.LineNumber+1, d.ColumnNumber+1)
		problem = true
	case *runtime.EventConsoleAPICalled:
		var parts []string
		for _, a := range ev.Args {
			var s string
			if a.Type == runtime.RemoteObjectTypeString && json.Unmarshal(a.Value, &s) == nil {
				parts = append(parts, s)
			} else if a.Description != "" {
				parts = append(parts, a.Description)
			} else {
				parts = append(parts, string(a.Value))
			}
		}
		line = "console." + string(ev.Type) + ": " + strings.Join(parts, " ")
		problem = strings.Contains(line, cspMarker)
	case *cdppage.EventJavascriptDialogOpening:
		line = fmt.Sprintf("a JavaScript %s dialog opened: %q", ev.Type, ev.Message)
		problem = true
	case *cdplog.EventEntryAdded:
		e := ev.Entry
		line = fmt.Sprintf("log %s/%s: %s (%s)", e.Source, e.Level, e.Text, e.URL)
		problem = strings.Contains(e.Text, "Content Security Policy")
	default:
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.console = append(p.console, line)
	if problem {
		p.problems = append(p.problems, line)
	}
}

// close checks the page's problems, saves a screenshot if the test failed, and closes the tab.
func (p *page) close() {
	p.mu.Lock()
	problems, console := p.problems, p.console
	p.mu.Unlock()
	for _, pr := range problems {
		p.t.Errorf("page %s: %s", p.name, pr)
	}
	if p.t.Failed() {
		if len(console) > 0 {
			p.t.Logf("page %s console:\n  %s", p.name, strings.Join(console, "\n  "))
		}
		if loc, err := p.location(); err == nil {
			p.t.Logf("page %s was at %s", p.name, loc)
		}
		p.screenshot(filepath.Join(testName(p.t), p.name+".png"), true)
	}
	p.cancel()
}

func (p *page) location() (string, error) {
	ctx, cancel := context.WithTimeout(p.ctx, 2*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Location())
}

// screenshot saves a full-page PNG under the screenshot folder; best effort when quiet.
func (p *page) screenshot(rel string, quiet bool) string {
	ctx, cancel := context.WithTimeout(p.ctx, actionTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err == nil {
		path := filepath.Join(screenshotDir(), rel)
		if err = os.MkdirAll(filepath.Dir(path), 0o755); err == nil {
			if err = os.WriteFile(path, png, 0o644); err == nil {
				p.t.Logf("screenshot of %s: %s", p.name, path)
				return path
			}
		}
	}
	if quiet {
		p.t.Logf("page %s: no screenshot: %v", p.name, err)
	} else {
		p.t.Errorf("page %s: screenshot %s: %v", p.name, rel, err)
	}
	return ""
}

// screenshotDir is $LIVEFORUM_SCREENSHOTS, or testdata-out at the repository root.
func screenshotDir() string {
	if d := os.Getenv("LIVEFORUM_SCREENSHOTS"); d != "" {
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		return "testdata-out"
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(d, "testdata-out")
		}
		if filepath.Dir(d) == d {
			return filepath.Join(dir, "testdata-out")
		}
	}
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func testName(t *testing.T) string { return unsafeName.ReplaceAllString(t.Name(), "_") }

// do runs actions with a deadline and fails the test with what it was doing.
func (p *page) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, actionTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("page %s: %s: %v", p.name, what, err)
	}
}

// open navigates to a path of the forum (or a full URL) and waits for the load.
func (p *page) open(path string) {
	p.t.Helper()
	u := path
	if strings.HasPrefix(path, "/") {
		u = p.f.URL + path
	}
	p.do("opening "+u, chromedp.Navigate(u))
}

// eval evaluates a JavaScript expression (awaiting a promise) in the page.
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, actionTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("page %s: evaluating %s: %v", p.name, abbreviate(expr), err)
	}
	return v
}

// waitFor polls a JavaScript condition (an expression, which may use await) until it is true, and fails the test with what it waited for and
// the value of explain (a JavaScript expression describing the current state) if it is not within d.
// chromedp.Poll is not used: it builds its predicate with new Function, which the app's CSP forbids.
func (p *page) waitFor(what, cond, explain string, d time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(d)
	var lastErr error
	for {
		ctx, cancel := context.WithTimeout(p.ctx, 2*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(async () => !!(`+cond+`))()`, chromedp.EvalAwaitPromise))
		cancel()
		if err == nil && ok {
			return
		}
		if err != nil {
			lastErr = err // e.g. the execution context was replaced by a navigation: try again
		}
		if time.Now().After(deadline) || p.ctx.Err() != nil {
			break
		}
		timer := time.NewTimer(pollEvery)
		select {
		case <-timer.C:
		case <-p.ctx.Done():
			timer.Stop()
		}
	}
	state := ""
	if explain != "" {
		ctx, cancel := context.WithTimeout(p.ctx, 2*time.Second)
		v, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](explain, chromedp.EvalAwaitPromise))
		cancel()
		if err == nil {
			state = "; state: " + abbreviate(string(v))
		}
	}
	if lastErr != nil {
		state += fmt.Sprintf("; last error: %v", lastErr)
	}
	p.t.Fatalf("page %s: %s: not within %v%s", p.name, what, d, state)
}

func abbreviate(s string) string {
	if len(s) > 600 {
		return s[:600] + "…"
	}
	return s
}

// tid is the CSS selector of a data-testid.
func tid(id string) string { return fmt.Sprintf(`[data-testid=%q]`, id) }

// jsq is a JavaScript expression for document.querySelector of a data-testid.
func jsq(id string) string { return fmt.Sprintf(`document.querySelector('[data-testid=%q]')`, id) }

// waitVisible waits until the element with the testid is rendered and visible.
func (p *page) waitVisible(id string) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("waiting for data-testid=%q to be visible", id),
		fmt.Sprintf(`(() => { const e = %s; if (!e) return false; const r = e.getBoundingClientRect(); const s = getComputedStyle(e);
			return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'; })()`, jsq(id)),
		`({url: location.href, testids: [...document.querySelectorAll('[data-testid]')].map(e => e.dataset.testid)})`, waitTimeout)
}

// click clicks the element with the testid, as a user would (mouse events at its centre).
func (p *page) click(id string) {
	p.t.Helper()
	p.waitVisible(id)
	p.do("clicking "+id, chromedp.Click(chromedp.CSS(tid(id)), chromedp.NodeVisible))
}

// typeInto replaces the value of an input with text typed on the keyboard.
func (p *page) typeInto(id, text string) {
	p.t.Helper()
	p.waitVisible(id)
	// chromedp.Clear fails on an empty <textarea> ("does not have child #text node"): clear it from script.
	eval[chromedp.Void](p, fmt.Sprintf(`(() => { const e = %s; if (e.value !== '') { e.value = '';
		e.dispatchEvent(new Event('input', {bubbles: true})); } })()`, jsq(id)))
	p.do("typing into "+id, chromedp.SendKeys(chromedp.CSS(tid(id)), text))
}

// fill sets an input's value at once (for long texts) and fires input and change, as a paste would.
func (p *page) fill(id, text string) {
	p.t.Helper()
	p.waitVisible(id)
	v, _ := json.Marshal(text)
	eval[chromedp.Void](p, fmt.Sprintf(`(() => { const e = %s; e.focus(); e.value = %s;
		e.dispatchEvent(new Event('input', {bubbles: true})); e.dispatchEvent(new Event('change', {bubbles: true})); })()`, jsq(id), v))
}

// choose selects an option of a <select> and fires input and change, as a user's choice would.
func (p *page) choose(id, value string) {
	p.t.Helper()
	p.waitVisible(id)
	v, _ := json.Marshal(value)
	ok := eval[bool](p, fmt.Sprintf(`(() => { const e = %s; if (![...e.options].some(o => o.value === %s)) return false;
		e.value = %s; e.dispatchEvent(new Event('input', {bubbles: true})); e.dispatchEvent(new Event('change', {bubbles: true})); return true; })()`,
		jsq(id), v, v))
	if !ok {
		opts := eval[[]string](p, fmt.Sprintf(`[...%s.options].map(o => o.value)`, jsq(id)))
		p.t.Fatalf("page %s: %s has no option %q (options: %q)", p.name, id, value, opts)
	}
}

// text is the visible text of the element with the testid.
func (p *page) text(id string) string {
	p.t.Helper()
	return eval[string](p, fmt.Sprintf(`(%s?.innerText ?? '').trim()`, jsq(id)))
}

// connState is connection-status's data-state.
func (p *page) connState() string {
	p.t.Helper()
	return eval[string](p, fmt.Sprintf(`%s?.dataset.state ?? '(no connection-status)'`, jsq("connection-status")))
}

// waitState waits for connection-status's data-state.
func (p *page) waitState(state string, d time.Duration) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("waiting for connection-status data-state=%q", state),
		fmt.Sprintf(`%s?.dataset.state === %q`, jsq("connection-status"), state),
		fmt.Sprintf(`({state: %s?.dataset.state, banner: %s?.innerText})`, jsq("connection-status"), jsq("connection-banner")), d)
}
