package web_test

// A third-party WHIP encoder against the server, watched by the web app: Meetecho's simple-whip-client
// (Debian package simple-whip-client, command whip-client: GStreamer's webrtcbin with libnice) publishes
// VP8 and Opus to /whip/{room} with a speaker's token; a viewer page in Chromium decodes the video and
// receives the audio; when the encoder is stopped with SIGINT it sends its WHIP DELETE and leaves the stage.
//
// Two facts of this machine, not of the encoder's WHIP, WebRTC or media code, are worked around by a small
// library preloaded into the encoder (whipShimC, compiled here with cc):
//   - Debian 12's whip-client links libsoup 2, while libnice links libgupnp-igd (UPnP port mapping), which
//     pulls in libsoup 3: the process aborts at start ("libsoup2 symbols detected. Using libsoup2 and libsoup3
//     in the same process is not supported"). The shim stands in for libgupnp-igd, so UPnP is off.
//   - libnice never offers loopback candidates when the host has another interface, and pins each socket to
//     its interface (IP_UNICAST_IF), so its checks to the server's 127.0.0.1 candidate go nowhere. The shim
//     shows it only the IPv4 loopback interface, as a plain one: it offers 127.0.0.1, and all media stays
//     on loopback like the other browser tests' (../shared/TESTING.md).

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/liveforum/liveforum/auth"
)

// The encoder's GStreamer pipelines: a moving ball on black, 320×240 (videotestsrc's default size), in VP8,
// and red noise in Opus. whip-client links each to its webrtcbin.
const (
	whipVideoPipeline = "videotestsrc is-live=true pattern=ball ! videoconvert ! vp8enc deadline=1 keyframe-max-dist=30 ! " +
		"rtpvp8pay pt=96 ! queue ! application/x-rtp,media=video,encoding-name=VP8,payload=96"
	whipAudioPipeline = "audiotestsrc is-live=true wave=red-noise ! audioconvert ! audioresample ! queue ! opusenc ! " +
		"rtpopuspay pt=111 ! queue ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111"
)

// whipShimC is preloaded into whip-client (see the top of this file). Its soname is libgupnp-igd's, so that
// when libnice is loaded it finds its libgupnp-igd already there and the real one (with libsoup 3) never is.
const whipShimC = `#define _GNU_SOURCE
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stddef.h>
#include <sys/socket.h>

/* libgupnp-igd's functions that libnice calls: no UPnP port mapper (libnice handles NULL: UPnP off). */
void *gupnp_simple_igd_thread_new(void) { return NULL; }
unsigned long gupnp_simple_igd_get_type(void) { return 0; }
void gupnp_simple_igd_add_port(void) {}
void gupnp_simple_igd_remove_port_local(void) {}

/* Only the IPv4 loopback interface, not flagged as loopback (libnice skips those): the host candidate is
   127.0.0.1. Other entries lose their address, which libnice skips; the list stays one block for freeifaddrs. */
int getifaddrs(struct ifaddrs **ifap) {
	int (*real)(struct ifaddrs **) = (int (*)(struct ifaddrs **))dlsym(RTLD_NEXT, "getifaddrs");
	int r = real(ifap);
	if (r != 0)
		return r;
	for (struct ifaddrs *ifa = *ifap; ifa != NULL; ifa = ifa->ifa_next) {
		if (ifa->ifa_addr != NULL && ifa->ifa_addr->sa_family == AF_INET && (ifa->ifa_flags & IFF_LOOPBACK))
			ifa->ifa_flags &= ~IFF_LOOPBACK;
		else
			ifa->ifa_addr = NULL;
	}
	return 0;
}
`

// whipClientPath finds simple-whip-client's command; the test fails (never skips) without it.
func whipClientPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("whip-client")
	if err != nil {
		t.Fatal("whip-client not found: install the Debian package simple-whip-client " +
			"(apt-get install -y simple-whip-client, or `make deps`)")
	}
	return p
}

// whipShim compiles whipShimC into a temporary directory and returns the library's path.
func whipShim(t *testing.T) string {
	t.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Fatal("cc not found: install gcc (apt-get install -y gcc; go test -race needs it too)")
	}
	dir := t.TempDir()
	src, lib := filepath.Join(dir, "whipshim.c"), filepath.Join(dir, "libgupnp-igd-1.0.so.4")
	if err := os.WriteFile(src, []byte(whipShimC), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(cc, "-shared", "-fPIC", "-Wl,-soname,libgupnp-igd-1.0.so.4", "-o", lib, src, "-ldl").CombinedOutput()
	if err != nil {
		t.Fatalf("compiling the whip-client shim: %v\n%s", err, out)
	}
	return lib
}

// gstWHIP is a running whip-client.
type gstWHIP struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done
}

// startWHIPClient runs whip-client publishing the test pipelines to whipURL with a bearer token. Its output
// is logged if the test fails; it is killed when the test ends if it still runs.
func startWHIPClient(t *testing.T, whipURL, token string) *gstWHIP {
	t.Helper()
	bin, shim := whipClientPath(t), whipShim(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-o", "-u", whipURL, "-t", token, "-V", whipVideoPipeline, "-A", whipAudioPipeline)
	cmd.Env = append(os.Environ(), "LD_PRELOAD="+shim)
	cmd.WaitDelay = 2 * time.Second
	g := &gstWHIP{cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = g.out, g.out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting %s: %v", bin, err)
	}
	t.Logf("whip-client started: %s", strings.Join(cmd.Args, " "))
	go func() {
		g.err = cmd.Wait()
		close(g.done)
	}()
	t.Cleanup(func() {
		cancel() // kills it if it still runs
		<-g.done
		if t.Failed() {
			t.Logf("whip-client output:\n%s", g.out.String())
		}
	})
	return g
}

// waitExit waits for the client to exit by itself and returns its exit status.
func (g *gstWHIP) waitExit(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-g.done:
		return g.err
	case <-time.After(d):
		t.Fatalf("whip-client still runs after %v", d)
		return nil
	}
}

// waitOutput waits until the client has printed a line containing s.
func (g *gstWHIP) waitOutput(t *testing.T, s string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(g.out.String(), s) {
		select {
		case <-g.done:
			t.Fatalf("whip-client exited (%v) without printing %q", g.err, s)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("whip-client did not print %q within %v", s, d)
		}
		time.Sleep(pollEvery)
	}
}

// httpExchanges is what a recording proxy saw: "METHOD /path status" per request, in order.
type httpExchanges struct {
	mu   sync.Mutex
	list []string
}

func (h *httpExchanges) add(s string) {
	h.mu.Lock()
	h.list = append(h.list, s)
	h.mu.Unlock()
}

func (h *httpExchanges) all() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.list...)
}

// find returns the exchanges whose request is method on a path with the prefix.
func (h *httpExchanges) find(method, prefix string) []string {
	var out []string
	for _, e := range h.all() {
		if strings.HasPrefix(e, method+" "+prefix) {
			out = append(out, e)
		}
	}
	return out
}

// wait waits until at least one exchange matches method and path prefix (the proxy records an exchange
// just after the answer has gone, so the tool may have acted on it already) and returns the matches.
func (h *httpExchanges) wait(t *testing.T, method, prefix string) []string {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		if got := h.find(method, prefix); len(got) > 0 || time.Now().After(deadline) {
			return got
		}
		time.Sleep(pollEvery)
	}
}

// statusWriter remembers the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// recordingProxy is a plain HTTP reverse proxy in front of the forum that records each request's method,
// path and the server's status, so a test can tell what a tool sent and what it was answered.
func (f *forum) recordingProxy(t *testing.T) (string, *httpExchanges) {
	t.Helper()
	target, err := url.Parse(f.URL)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = tr
	log := &httpExchanges{}
	ps := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		rp.ServeHTTP(sw, r)
		log.add(fmt.Sprintf("%s %s %d", r.Method, r.URL.Path, sw.code))
	}))
	t.Cleanup(func() {
		ps.Close()
		tr.CloseIdleConnections()
	})
	return ps.URL, log
}

// speakerToken signs an access token of a speaker for a room.
func (f *forum) speakerToken(t *testing.T, room, identity, name string) string {
	t.Helper()
	tok, err := f.keys.Sign(auth.Claims{Room: room, Identity: identity, Name: name, Role: auth.RoleSpeaker,
		Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// videoPictureJS reads the picture of the <video> of a member's tile: its size and the share of dark and of
// bright pixels (a canvas copy of the current frame).
func videoPictureJS(identity string) string {
	return fmt.Sprintf(`(() => {
		const v = document.querySelector(%s + ' video');
		if (!v || !v.videoWidth) return {width: 0, height: 0, dark: 0, bright: 0, playing: false};
		const c = document.createElement('canvas');
		c.width = v.videoWidth; c.height = v.videoHeight;
		const g = c.getContext('2d');
		g.drawImage(v, 0, 0);
		const d = g.getImageData(0, 0, c.width, c.height).data;
		let dark = 0, bright = 0;
		for (let i = 0; i < d.length; i += 4) {
			const y = (d[i] + d[i + 1] + d[i + 2]) / 3;
			if (y < 40) dark++; else if (y > 200) bright++;
		}
		const n = d.length / 4;
		return {width: v.videoWidth, height: v.videoHeight, dark: dark / n, bright: bright / n, playing: !v.paused};
	})()`, jsString(tileSel(identity)))
}

type videoPicture struct {
	Width   int     `json:"width"`
	Height  int     `json:"height"`
	Dark    float64 `json:"dark"`
	Bright  float64 `json:"bright"`
	Playing bool    `json:"playing"`
}

// encoderOnStage starts a viewer page in a room and a GStreamer encoder publishing to it over WHIP with a
// speaker's token, through a proxy that records the encoder's requests; it returns once the encoder says it
// is connected.
func (f *forum) encoderOnStage(t *testing.T, room, identity string) (*page, *gstWHIP, *httpExchanges) {
	t.Helper()
	viewer := f.joinedPage(t, "viewer", "/r/"+room, "Vera Viewer", "en")
	viewer.waitFor("waiting for the stage's media", jsq("stage")+`.dataset.media === 'connected'`, mediaStateJS, mediaTimeout)
	base, exchanges := f.recordingProxy(t)
	enc := startWHIPClient(t, base+"/whip/"+room, f.speakerToken(t, room, identity, "GStreamer Encoder"))
	enc.waitOutput(t, "PeerConnection connected", mediaTimeout)
	return viewer, enc, exchanges
}

// A GStreamer encoder publishes over WHIP; a viewer in the browser sees its test pattern and receives its
// audio; SIGINT makes the encoder DELETE its session (200), and its tile leaves the viewer's stage.
func TestWHIPEncoderToViewer(t *testing.T) {
	const room, identity = "encoder", "gst-encoder"
	viewer, enc, exchanges := newForum(t).encoderOnStage(t, room, identity)
	if got := exchanges.wait(t, "POST", "/whip/"+room); len(got) != 1 || !strings.HasSuffix(got[0], " 201") {
		t.Fatalf("the encoder's WHIP POST: %q, want one answered 201 (all requests: %q)", got, exchanges.all())
	}

	viewer.waitTile(identity, "video", "on")
	viewer.waitTile(identity, "audio", "on")
	// The encoder is no member of the room: its tile has the name in its token, which the server gives with
	// its offers.
	viewer.waitFor("waiting for the encoder's name on its tile", fmt.Sprintf(`document.querySelector(%s + ' [data-testid=tile-name]')?.textContent === 'GStreamer Encoder'`,
		jsString(tileSel(identity))), mediaStateJS, mediaTimeout)
	viewer.waitFor("waiting for the first decoded frame", statJS(identity, "camera", "framesDecoded")+` > 0`, mediaStateJS, mediaTimeout)
	// Two readings a second apart at least: the video keeps being decoded (30 more frames of a 30 fps
	// source) and the audio keeps arriving.
	first := viewer.stats(identity)
	viewer.waitFor("waiting for 30 more decoded frames", fmt.Sprintf(`%s >= %v`, statJS(identity, "camera", "framesDecoded"), first["camera"].FramesDecoded+30),
		mediaStateJS, mediaTimeout)
	viewer.waitFor("waiting for more audio", fmt.Sprintf(`%s > %v && %s > %v`,
		statJS(identity, "audio", "bytesReceived"), first["audio"].BytesReceived,
		statJS(identity, "audio", "totalSamplesReceived"), first["audio"].TotalSamplesReceived), mediaStateJS, mediaTimeout)
	second := viewer.stats(identity)
	t.Logf("viewer's inbound from the encoder: video frames decoded %v → %v, audio bytes %v → %v, audio samples %v → %v",
		first["camera"].FramesDecoded, second["camera"].FramesDecoded, first["audio"].BytesReceived, second["audio"].BytesReceived,
		first["audio"].TotalSamplesReceived, second["audio"].TotalSamplesReceived)

	// The picture is videotestsrc's ball: a 320×240 frame, mostly black, with a bright ball (about 1.4 % of
	// the pixels).
	pic := eval[videoPicture](viewer, videoPictureJS(identity))
	if pic.Width != 320 || pic.Height != 240 || !pic.Playing || pic.Dark < 0.7 || pic.Bright < 0.005 {
		t.Errorf("the tile's video is not the encoder's ball pattern: %+v (want 320×240, playing, mostly dark with some bright pixels)", pic)
	}
	t.Logf("the tile's picture: %+v", pic)
	viewer.screenshot("whip-encoder-viewer.png", false)

	// Ctrl-C: whip-client sends its DELETE, then stops its pipeline and exits.
	stopped := time.Now()
	if err := enc.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := enc.waitExit(t, 5*time.Second); err != nil {
		t.Errorf("whip-client exited with %v after SIGINT", err)
	}
	if got := exchanges.wait(t, "DELETE", "/whip/"+room+"/"); len(got) != 1 || !strings.HasSuffix(got[0], " 200") {
		t.Errorf("the encoder's WHIP DELETE: %q, want one answered 200 (all requests: %q)", got, exchanges.all())
	}
	viewer.waitNoTile(identity)
	t.Logf("the tile left the viewer's stage %v after SIGINT", time.Since(stopped).Round(10*time.Millisecond))
	viewer.waitFor("waiting for the stage to be empty", jsq("stage")+`.dataset.live === 'false'`, mediaStateJS, waitTimeout)
	if n := eval[int](viewer, fmt.Sprintf(`(async () => (await liveforum.media.inboundStats()).filter(s => s.identity === %s).length)()`, jsString(identity))); n != 0 {
		t.Errorf("the viewer still receives %d tracks of the encoder", n)
	}
	// Trickle: whip-client PATCHes its candidates; the server answers 405 (no trickle, docs/api.md) and
	// the client goes on, since the server learns its address from its ICE checks.
	for _, e := range exchanges.find("PATCH", "/") {
		if !strings.HasSuffix(e, " 405") {
			t.Errorf("PATCH answered other than 405: %q", e)
		}
	}
	t.Logf("HTTP exchanges of the encoder: %q", exchanges.all())
}

// With a bad token the server refuses the offer with 401, and whip-client gives up and exits by itself
// (with status 0: it reports the HTTP error on its output).
func TestWHIPEncoderBadToken(t *testing.T) {
	f := newForum(t)
	base, exchanges := f.recordingProxy(t)
	enc := startWHIPClient(t, base+"/whip/encoder", "not-a-token")
	err := enc.waitExit(t, mediaTimeout)
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("whip-client: %v", err)
	}
	if exit != nil && exit.Sys().(syscall.WaitStatus).Signaled() {
		t.Errorf("whip-client was killed by a signal: %v", err)
	}
	t.Logf("whip-client exited by itself: %v (nil: status 0)", err)
	exchanges.wait(t, "POST", "/whip/encoder")
	if got := exchanges.all(); len(got) != 1 || got[0] != "POST /whip/encoder 401" {
		t.Errorf("HTTP exchanges %q, want only the POST answered 401", got)
	}
	if out := enc.out.String(); !strings.Contains(out, "[401] Unauthorized") {
		t.Errorf("whip-client's output does not report the 401:\n%s", out)
	}
}

// An encoder killed outright sends no DELETE: the server ends its session when ICE gives up on it (5 s
// without a packet, then 5 s more), and its tile leaves the viewer's stage within about 10 s.
func TestWHIPEncoderKilled(t *testing.T) {
	const room, identity = "encoder", "gst-encoder"
	viewer, enc, exchanges := newForum(t).encoderOnStage(t, room, identity)
	viewer.waitTile(identity, "video", "on")
	viewer.waitFor("waiting for the first decoded frame", statJS(identity, "camera", "framesDecoded")+` > 0`, mediaStateJS, mediaTimeout)

	killed := time.Now()
	if err := enc.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = enc.waitExit(t, 5*time.Second)
	// ~10 s for ICE, then the renegotiation that takes the tracks away: bounded at twice that.
	viewer.waitFor(fmt.Sprintf("waiting for %s's tile to go", identity), fmt.Sprintf(`!document.querySelector(%s)`, jsString(tileSel(identity))),
		mediaStateJS, 25*time.Second)
	took := time.Since(killed)
	t.Logf("the killed encoder's tile left the viewer's stage %v after SIGKILL", took.Round(100*time.Millisecond))
	if took < 5*time.Second {
		t.Errorf("the tile left %v after SIGKILL: sooner than ICE can tell (a DELETE was sent? %q)", took, exchanges.find("DELETE", "/"))
	}
	if got := exchanges.find("DELETE", "/"); len(got) != 0 {
		t.Errorf("a killed encoder sent a DELETE: %q", got)
	}
}
