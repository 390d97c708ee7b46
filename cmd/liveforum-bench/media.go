package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/liveforum/liveforum/auth"
	"github.com/liveforum/liveforum/protocol"
)

// mediaConfig is every setting of `liveforum-bench media`.
type mediaConfig struct {
	base               string // http(s)://host:port
	room               string
	secret             string
	n                  int
	duration           time.Duration
	videoKbps          int
	connectConcurrency int
	serverPID          int
	iceInterfaces      []string
	nack               bool
	client             string // "lean" or "pion"
	maxLossPct         float64
	jsonOnly           bool
	cpuProfile         string
	memProfile         string
	adminKey           string
	serverProfile      string

	keys *auth.Keyring
}

// parseMedia reads the flags of `media`. The secret has an environment twin, as for chat.
func parseMedia(args []string, stderr io.Writer, getenv func(string) string) (mediaConfig, error) {
	var c mediaConfig
	var rawURL, ifaces string
	fs := flag.NewFlagSet("liveforum-bench media", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&rawURL, "url", "http://127.0.0.1:8080", "base URL of the server (WHIP at <url>/whip/<room>, WHEP at <url>/whep/<room>); a ws:// URL is taken as its http:// twin")
	fs.StringVar(&c.room, "room", "bench", "room to run in")
	fs.StringVar(&c.secret, "secret", "", "the server's token signing keys, to mint a speaker token for the publisher and viewer tokens (LIVEFORUM_SECRET)")
	fs.IntVar(&c.n, "n", 100, "subscribers (WHEP viewers), each its own peer connection")
	fs.DurationVar(&c.duration, "duration", 20*time.Second, "measurement window, starting once every subscriber is connected and receiving")
	fs.IntVar(&c.videoKbps, "video-kbps", 1500, "VP8 video payload bitrate of the synthetic publisher, kbit/s (30 frames/s, packets of at most 1200 bytes); Opus audio adds 32 kbit/s")
	fs.IntVar(&c.connectConcurrency, "connect-concurrency", 16, "subscribers connecting at once")
	fs.IntVar(&c.serverPID, "server-pid", 0, "process id of the server, on this machine, to measure its CPU over the window from /proc (0: not measured)")
	fs.StringVar(&ifaces, "ice-interfaces", "lo", "comma-separated network interfaces the bench's ICE candidates may use (empty: all)")
	fs.BoolVar(&c.nack, "nack", true, "subscribers send NACKs for lost packets (as browsers do), so the server retransmits from its cache")
	fs.StringVar(&c.client, "client", "lean", "subscribers' receive path: lean (pion does ICE, DTLS and RTCP; the bench reads, decrypts and NACKs the RTP itself) or pion (pion's whole receive chain and its NACK generator)")
	fs.Float64Var(&c.maxLossPct, "max-loss", 1, "loss, in percent of the packets sent in the window, above which the checks fail")
	fs.BoolVar(&c.jsonOnly, "json-only", false, "print only the JSON line")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the bench itself to this file")
	fs.StringVar(&c.memProfile, "memprofile", "", "write a heap profile of the bench itself, taken at the end of the window, to this file")
	fs.StringVar(&c.adminKey, "admin-key", "", "the server's admin key, for -server-cpuprofile (LIVEFORUM_ADMIN_KEY)")
	fs.StringVar(&c.serverProfile, "server-cpuprofile", "", "write the server's CPU profile over the window (from its /debug/pprof, with -admin-key) to this file; profiling costs the server a little CPU")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if c.secret == "" {
		c.secret = getenv("LIVEFORUM_SECRET")
	}
	if c.adminKey == "" {
		c.adminKey = getenv("LIVEFORUM_ADMIN_KEY")
	}
	for s := range strings.SplitSeq(ifaces, ",") {
		if s = strings.TrimSpace(s); s != "" {
			c.iceInterfaces = append(c.iceInterfaces, s)
		}
	}
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	base, err := httpBase(rawURL)
	check(err == nil, "-url: %q is not an http:// or ws:// URL", rawURL)
	c.base = base
	check(protocol.ValidRoomName(c.room) == nil, "-room: %q is not a valid room name", c.room)
	check(c.n > 0, "-n must be positive")
	check(c.duration > 0, "-duration must be positive")
	check(c.videoKbps >= 0 && c.videoKbps <= 100_000, "-video-kbps must be 0..100000")
	check(c.connectConcurrency > 0, "-connect-concurrency must be positive")
	check(c.client == "lean" || c.client == "pion", "-client must be lean or pion")
	check(c.serverPID >= 0, "-server-pid must not be negative")
	check(c.maxLossPct >= 0, "-max-loss must not be negative")
	check(c.serverProfile == "" || c.adminKey != "", "-server-cpuprofile needs -admin-key")
	if c.secret == "" {
		check(false, "-secret (or LIVEFORUM_SECRET) is required: WHIP needs a speaker token")
	} else {
		keys, err := auth.ParseKeys(c.secret)
		check(err == nil, "-secret: %v", err)
		c.keys = keys
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("%w: %w", errUsage, err)
	}
	return c, nil
}

// runMedia is `liveforum-bench media`: it prints the summary, and returns errChecksFailed if subscribers
// failed to connect, got nothing, or lost more than -max-loss.
func runMedia(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	cfg, err := parseMedia(args, stderr, getenv)
	if err != nil {
		return err
	}
	stop, err := startProfile(cfg.cpuProfile)
	if err != nil {
		return err
	}
	res, err := benchMedia(ctx, cfg, stderr)
	if perr := stop(); err == nil && perr != nil {
		err = fmt.Errorf("cpuprofile: %w", perr)
	}
	if err != nil {
		return err
	}
	res.print(stdout, cfg.jsonOnly)
	if !res.ok() {
		return errChecksFailed
	}
	return nil
}

// The synthetic payload: bytes 0-1 are codec headers (VP8 payload descriptor and payload header, or an
// Opus TOC byte and a filler), then this run's marks. Subscribers read only these 16 bytes of each packet.
const (
	offCounter  = 2  // uint32: the track's packet counter, from 0
	offSentNs   = 6  // int64: unix nanoseconds when the publisher wrote the packet
	offRun      = 14 // 4 bytes: the run id, so packets of another publisher on the stage are told apart
	markLen     = 18
	maxVideoPay = 1200
	audioPay    = 80
)

// window is the measurement window, in unix nanoseconds of the publisher's send time: a packet counts if
// it was sent within [start, end). Both ends are set before the publisher reaches them, so the publisher
// and every subscriber classify each packet alike.
type window struct {
	start, end atomic.Int64
}

func newWindow() *window {
	w := &window{}
	w.start.Store(math.MaxInt64)
	w.end.Store(math.MaxInt64)
	return w
}

func (w *window) contains(ns int64) bool { return ns >= w.start.Load() && ns < w.end.Load() }

// mediaBench is one run of the media benchmark.
type mediaBench struct {
	cfg  mediaConfig
	warn io.Writer
	run  [4]byte
	hc   *http.Client
	win  *window

	pub  *mediaPublisher
	subs []*mediaSub

	// The lean subscribers' taps, for retryNacks (from start to closeSubs).
	tapMu    sync.Mutex
	taps     []*tap
	nackStop chan struct{}
	nackDone chan struct{}
	nackOnce sync.Once

	delMu   sync.Mutex
	delErrs map[string]int // failed DELETEs by reason
}

// benchMedia publishes, connects the subscribers, measures over the window and disconnects.
func benchMedia(ctx context.Context, cfg mediaConfig, warn io.Writer) (*mediaResult, error) {
	b := &mediaBench{cfg: cfg, warn: warn, win: newWindow()}
	_, _ = rand.Read(b.run[:])
	b.hc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: cfg.connectConcurrency, IdleConnTimeout: 5 * time.Second}}
	defer b.hc.CloseIdleConnections()
	res := &mediaResult{N: cfg.n, Room: cfg.room, URL: cfg.base, Run: hex.EncodeToString(b.run[:]),
		VideoKbps: cfg.videoKbps, NACK: cfg.nack, Client: cfg.client, MaxLossPct: cfg.maxLossPct, BenchProcs: runtime.GOMAXPROCS(0)}

	api, err := newMediaAPI(cfg.iceInterfaces, cfg.nack) // lean subscribers take its codecs and feedback, not its interceptors
	if err != nil {
		return nil, err
	}
	pubAPI, err := newMediaAPI(cfg.iceInterfaces, true)
	if err != nil {
		return nil, err
	}
	defer b.closeAll()
	if cfg.client == "lean" && cfg.nack {
		b.nackStop = make(chan struct{})
		b.nackDone = make(chan struct{})
		go b.retryNacks()
	}

	tok, err := b.token("pub", auth.RoleSpeaker)
	if err != nil {
		return nil, err
	}
	b.pub, err = startPublisher(ctx, b, pubAPI.api, tok)
	if err != nil {
		return nil, fmt.Errorf("publisher: %w", err)
	}

	// Tokens are minted before the clock starts.
	toks := make([]string, cfg.n)
	for i := range toks {
		if toks[i], err = b.token(fmt.Sprintf("s%d", i), auth.RoleParticipant); err != nil {
			return nil, err
		}
	}
	b.subs = make([]*mediaSub, cfg.n)
	t0 := time.Now()
	var failed atomic.Int64
	errCounts := map[string]int{}
	var errMu sync.Mutex
	sem := make(chan struct{}, cfg.connectConcurrency)
	var wg sync.WaitGroup
	for i := range cfg.n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			s, err := connectSub(ctx, b, api, i, toks[i])
			b.subs[i] = s // closeAll reads it after wg.Wait
			if err != nil {
				failed.Add(1)
				errMu.Lock()
				errCounts[err.Error()]++
				errMu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.ConnectS = round(time.Since(t0).Seconds(), 3)
	res.ConnectFailed = int(failed.Load())
	res.ConnectErrors = errCounts
	if res.ConnectFailed == cfg.n {
		for e := range errCounts {
			return nil, fmt.Errorf("no subscriber connected: %s", e)
		}
	}

	// Every connected subscriber should be receiving before the window opens: wait (bounded) for each
	// one's first video packet, then let the start settle.
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		waiting := 0
		for _, s := range b.subs {
			if s != nil && s.err == nil && s.firstVideoNs.Load() == 0 {
				waiting++
			}
		}
		if waiting == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := sleepCtx(ctx, time.Second); err != nil {
		return nil, err
	}

	start := time.Now().Add(200 * time.Millisecond)
	end := start.Add(cfg.duration)
	b.win.start.Store(start.UnixNano())
	b.win.end.Store(end.UnixNano())
	if err := sleepCtx(ctx, time.Until(start)); err != nil {
		return nil, err
	}
	cpu0 := readCPUs(cfg.serverPID)
	profiled := make(chan error, 1)
	if cfg.serverProfile != "" {
		go func() { profiled <- b.serverProfile(ctx, cfg.duration) }()
	} else {
		profiled <- nil
	}
	if err := sleepCtx(ctx, time.Until(end)); err != nil {
		return nil, err
	}
	cpu1 := readCPUs(cfg.serverPID)
	res.setCPU(cpu0, cpu1, cfg.serverPID, warn)
	if cfg.serverPID > 0 {
		if kb, err := readRSS(fmt.Sprint(cfg.serverPID)); err == nil {
			mb := round(float64(kb)/1024, 1)
			res.ServerRSSMB = &mb
		}
	}
	if cfg.memProfile != "" {
		if err := writeHeapProfile(cfg.memProfile); err != nil {
			fmt.Fprintf(warn, "warning: no heap profile: %v\n", err)
		}
	}
	if err := <-profiled; err != nil {
		fmt.Fprintf(warn, "warning: no server CPU profile: %v\n", err)
	}
	// Packets sent near the end of the window may still be on their way.
	if err := sleepCtx(ctx, 2*time.Second); err != nil {
		return nil, err
	}

	b.closeSubs()
	b.pub.stopSending()
	res.collect(b, end.Sub(start))
	b.closeAll()
	return res, nil
}

// token mints a token of this run for the room.
func (b *mediaBench) token(who string, role auth.Role) (string, error) {
	now := time.Now()
	run := hex.EncodeToString(b.run[:])
	return b.cfg.keys.Sign(auth.Claims{Room: b.cfg.room, Identity: "bench-" + run + "-" + who, Name: "bench " + who,
		Role: role, Expires: now.Add(b.cfg.duration + time.Hour), IssuedAt: now})
}

// closeSubs ends every subscriber (DELETE, then its peer connection), a few at a time, and waits for
// their readers.
func (b *mediaBench) closeSubs() {
	if b.nackStop != nil {
		b.nackOnce.Do(func() { close(b.nackStop) })
		<-b.nackDone
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, b.cfg.connectConcurrency)
	for _, s := range b.subs {
		if s == nil {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s.close(b)
		})
	}
	wg.Wait()
}

// retryNacks asks again, for every lean subscriber, for the packets still missing (tap.nackRetry),
// until the subscribers close.
func (b *mediaBench) retryNacks() {
	defer close(b.nackDone)
	tick := time.NewTicker(nackEvery / 2)
	defer tick.Stop()
	for {
		select {
		case <-b.nackStop:
			return
		case now := <-tick.C:
			b.tapMu.Lock()
			taps := slices.Clone(b.taps)
			b.tapMu.Unlock()
			for _, t := range taps {
				t.nackRetry(now)
			}
		}
	}
}

// closeAll ends everything the run started; it may run twice.
func (b *mediaBench) closeAll() {
	b.closeSubs()
	if b.pub != nil {
		b.pub.close(b)
	}
	b.warnDeletes()
}

// endSession DELETEs a WHIP or WHEP resource. A failure only warns, once per kind of failure at the
// end of the run (a session the server already ended answers 404, and after an overload there can be
// hundreds).
func (b *mediaBench) endSession(location, token string) {
	if location == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, location, nil)
	if err != nil {
		return
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := b.hc.Do(req)
	if err != nil {
		b.deleteFailed(err.Error())
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b.deleteFailed(resp.Status)
	}
}

func (b *mediaBench) deleteFailed(why string) {
	b.delMu.Lock()
	defer b.delMu.Unlock()
	if b.delErrs == nil {
		b.delErrs = map[string]int{}
	}
	b.delErrs[why]++
}

// warnDeletes reports the failed DELETEs, once.
func (b *mediaBench) warnDeletes() {
	b.delMu.Lock()
	defer b.delMu.Unlock()
	for _, why := range slices.Sorted(maps.Keys(b.delErrs)) {
		fmt.Fprintf(b.warn, "warning: %d DELETEs of sessions failed: %s\n", b.delErrs[why], why)
	}
	b.delErrs = nil
}

// serverProfile fetches the server's CPU profile over d into -server-cpuprofile.
func (b *mediaBench) serverProfile(ctx context.Context, d time.Duration) error {
	secs := max(int(d.Round(time.Second)/time.Second), 1)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", b.cfg.base, secs), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+b.cfg.adminKey)
	hc := &http.Client{Timeout: d + 30*time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	f, err := os.Create(b.cfg.serverProfile)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// putMarks writes the run's marks into a payload.
func putMarks(p []byte, counter uint32, sentNs int64, run [4]byte) {
	binary.BigEndian.PutUint32(p[offCounter:], counter)
	binary.BigEndian.PutUint64(p[offSentNs:], uint64(sentNs))
	copy(p[offRun:markLen], run[:])
}

// procCPU is a process's CPU time (user + system) read from /proc/<pid>/stat, and when it was read.
type procCPU struct {
	cpu time.Duration
	at  time.Time
	err error
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every Linux architecture Go runs on.
const clockTicks = 100

func readProcCPU(pid string) procCPU {
	at := time.Now()
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return procCPU{err: err, at: at}
	}
	// The command name is in parentheses and may hold anything: fields are counted after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procCPU{err: fmt.Errorf("/proc/%s/stat: unexpected format", pid), at: at}
	}
	f := strings.Fields(s[i+1:])
	// After the name: state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15).
	if len(f) < 13 {
		return procCPU{err: fmt.Errorf("/proc/%s/stat: too few fields", pid), at: at}
	}
	var ticks int64
	for _, x := range f[11:13] {
		var v int64
		if _, err := fmt.Sscan(x, &v); err != nil {
			return procCPU{err: fmt.Errorf("/proc/%s/stat: %v", pid, err), at: at}
		}
		ticks += v
	}
	return procCPU{cpu: time.Duration(ticks) * time.Second / clockTicks, at: at}
}

// readRSS returns a process's resident memory (VmRSS), in KiB.
func readRSS(pid string) (int64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			_, err := fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), &kb)
			return kb, err
		}
	}
	return 0, fmt.Errorf("/proc/%s/status: no VmRSS", pid)
}

// cpus is the server's (when its pid is known), the bench's own and each core's CPU time at one moment,
// and the datagrams the kernel dropped so far because a UDP socket's receive buffer was full.
type cpus struct {
	server, self           procCPU
	cores                  []coreCPU // from /proc/stat; nil where unreadable
	serverDrops, selfDrops int64     // -1: unknown
}

func readCPUs(serverPID int) cpus {
	c := cpus{self: readProcCPU("self"), cores: readCoreCPU(), serverDrops: -1}
	drops := readUDPDrops()
	c.selfDrops = socketDrops("self", drops)
	if serverPID > 0 {
		c.server = readProcCPU(fmt.Sprint(serverPID))
		c.serverDrops = socketDrops(fmt.Sprint(serverPID), drops)
	}
	return c
}

// readUDPDrops returns each UDP socket's drop count by inode, from /proc/net/udp and udp6; nil if
// unreadable.
func readUDPDrops() map[string]int64 {
	out := map[string]int64{}
	for _, name := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		b, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			f := strings.Fields(line)
			// sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
			if len(f) < 13 || f[0] == "sl" {
				continue
			}
			var d int64
			if _, err := fmt.Sscan(f[12], &d); err == nil {
				out[f[9]] = d
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// socketDrops sums the drops of the UDP sockets process pid holds; -1 if unknown.
func socketDrops(pid string, drops map[string]int64) int64 {
	if drops == nil {
		return -1
	}
	dir := "/proc/" + pid + "/fd"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return -1
	}
	var sum int64
	for _, e := range ents {
		l, err := os.Readlink(dir + "/" + e.Name())
		if err != nil || !strings.HasPrefix(l, "socket:[") {
			continue
		}
		sum += drops[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")]
	}
	return sum
}

// coreCPU is one core's busy, softirq and total time from /proc/stat, in clock ticks. Busy counts user,
// nice, system, irq, softirq and steal. Softirq is kept apart: the kernel's loopback delivery of a packet
// runs there, on the sender's core, and is charged to no process.
type coreCPU struct{ busy, softirq, total int64 }

func readCoreCPU() []coreCPU {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil
	}
	var out []coreCPU
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 9 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		var v [8]int64 // user nice system idle iowait irq softirq steal
		for i := range v {
			if _, err := fmt.Sscan(f[i+1], &v[i]); err != nil {
				return nil
			}
		}
		busy := v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
		out = append(out, coreCPU{busy: busy, softirq: v[6], total: busy + v[3] + v[4]})
	}
	return out
}
