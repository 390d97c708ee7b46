package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/liveforum/liveforum/auth"
	"github.com/liveforum/liveforum/client"
	"github.com/liveforum/liveforum/protocol"
)

// chatConfig is every setting of `liveforum-bench chat`.
type chatConfig struct {
	urls               []string
	room               string
	n                  int // subscribers
	m                  int // messages in all
	publishers         int
	size               int // bytes of each message's text
	rate               float64
	secret             string
	adminKey           string
	connectConcurrency int
	timeout            time.Duration
	cpuProfile         string

	keys *auth.Keyring // from secret; nil: guests
}

// parseChat reads the flags of `chat`. Only the secrets have environment twins.
func parseChat(args []string, stderr io.Writer, getenv func(string) string) (chatConfig, error) {
	var c chatConfig
	var urls string
	fs := flag.NewFlagSet("liveforum-bench chat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&urls, "url", "ws://127.0.0.1:8080/ws", "websocket URL of the server; several, comma-separated, share the members round-robin")
	fs.StringVar(&c.room, "room", "bench", "room to run in")
	fs.IntVar(&c.n, "n", 1000, "subscribers")
	fs.IntVar(&c.m, "m", 1000, "messages to send in all, split evenly between the publishers")
	fs.IntVar(&c.publishers, "publishers", 4, "publishing clients")
	fs.IntVar(&c.size, "size", 64, "bytes of each message's text (at least its header of ~40 bytes)")
	fs.Float64Var(&c.rate, "rate", 0, "messages per second across all publishers; 0: each publisher sends as soon as the server answered its last message")
	fs.StringVar(&c.secret, "secret", "", "the server's token signing keys, to mint tokens (LIVEFORUM_SECRET); empty: join as guests")
	fs.StringVar(&c.adminKey, "admin-key", "", "the server's admin key, to read /metrics and report heap per connection (LIVEFORUM_ADMIN_KEY)")
	fs.IntVar(&c.connectConcurrency, "connect-concurrency", 64, "connections opened at once")
	fs.DurationVar(&c.timeout, "timeout", 60*time.Second, "how long to wait, from the first send, for every subscriber to get every message")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the bench itself to this file")
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
	for u := range strings.SplitSeq(urls, ",") {
		if u = strings.TrimSpace(u); u != "" {
			c.urls = append(c.urls, u)
		}
	}
	if err := c.validate(); err != nil {
		return c, fmt.Errorf("%w: %w", errUsage, err)
	}
	return c, nil
}

func (c *chatConfig) validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(len(c.urls) > 0, "-url is required")
	for _, u := range c.urls {
		_, err := httpBase(u)
		check(err == nil && (strings.HasPrefix(u, "ws://") || strings.HasPrefix(u, "wss://")), "-url: %q is not a ws:// or wss:// URL", u)
	}
	check(protocol.ValidRoomName(c.room) == nil, "-room: %q is not a valid room name", c.room)
	check(c.n > 0, "-n must be positive")
	check(c.m > 0, "-m must be positive")
	check(c.publishers > 0 && c.publishers <= c.m, "-publishers must be 1..m")
	check(c.size > 0, "-size must be positive")
	check(c.rate >= 0, "-rate must not be negative")
	check(c.connectConcurrency > 0, "-connect-concurrency must be positive")
	check(c.timeout > 0, "-timeout must be positive")
	if c.secret != "" {
		keys, err := auth.ParseKeys(c.secret)
		check(err == nil, "-secret: %v", err)
		c.keys = keys
	}
	return errors.Join(errs...)
}

// runChat is `liveforum-bench chat`: it prints the summary, and returns errChecksFailed if messages were
// lost, duplicated or reordered.
func runChat(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	cfg, err := parseChat(args, stderr, getenv)
	if err != nil {
		return err
	}
	stop, err := startProfile(cfg.cpuProfile)
	if err != nil {
		return err
	}
	res, err := benchChat(ctx, cfg, stderr)
	if perr := stop(); err == nil && perr != nil {
		err = fmt.Errorf("cpuprofile: %w", perr)
	}
	if err != nil {
		return err
	}
	res.print(stdout)
	if !res.ok() {
		return errChecksFailed
	}
	return nil
}

// eventBuffer is the events channel of each bench client. The client's default (1024) would hold 80 KiB
// per connection; the receivers here never fall far behind.
const eventBuffer = 64

// chatBench is one run of the chat benchmark.
type chatBench struct {
	cfg  chatConfig
	warn io.Writer
	run  string // run id: in identities and in every message header, so other runs' messages are ignored
	hdr  []byte // "r<run>p": the start of this run's message headers

	subs []*subscriber
	pubs []*publisher

	consumers sync.WaitGroup // subscribers' and publishers' event readers
}

// benchChat connects, publishes, waits for delivery, measures and disconnects.
func benchChat(ctx context.Context, cfg chatConfig, warn io.Writer) (*chatResult, error) {
	id := make([]byte, 4)
	_, _ = rand.Read(id)
	b := &chatBench{cfg: cfg, warn: warn, run: hex.EncodeToString(id)}
	b.hdr = []byte("r" + b.run + "p")
	b.warnSettings()
	defer b.closeAll()

	res := &chatResult{N: cfg.n, M: cfg.m, Publishers: cfg.publishers, Size: cfg.size, Rate: cfg.rate,
		URLs: cfg.urls, Room: cfg.room, Run: b.run, Tokens: "guest"}
	if cfg.keys != nil {
		res.Tokens = "minted"
	}
	res.Expected = int64(cfg.n) * int64(cfg.m)

	var scr *metricsScraper
	var before map[string]float64
	if cfg.adminKey != "" {
		var err error
		if scr, err = newMetricsScraper(cfg.urls[0], cfg.adminKey); err == nil {
			before, err = scr.scrape(ctx, true)
		}
		if err != nil {
			fmt.Fprintf(warn, "warning: no server heap figures: %v\n", err)
			scr = nil
		}
	}

	// Tokens are minted before the clock starts: real members arrive holding theirs.
	subOpts := make([]client.Options, cfg.n)
	for i := range subOpts {
		o, err := b.options(b.url(i), i, auth.RoleParticipant)
		if err != nil {
			return nil, err
		}
		subOpts[i] = o
	}
	t0 := time.Now()
	if err := b.connectSubscribers(ctx, subOpts); err != nil {
		return nil, err
	}
	res.ConnectS = round(time.Since(t0).Seconds(), 3)
	if err := b.connectPublishers(ctx); err != nil {
		return nil, err
	}

	var afterJoin map[string]float64
	if scr != nil {
		after, err := scr.scrape(ctx, true)
		if err != nil {
			fmt.Fprintf(warn, "warning: no server heap figures: %v\n", err)
			scr = nil
		} else {
			afterJoin = after
			res.setHeap(before, after, b.connsOnFirstURL())
		}
	}

	b.publishAndWait(ctx, res)

	if scr != nil {
		if end, err := scr.scrape(ctx, false); err == nil {
			res.setServerCounters(afterJoin, end)
		}
	}
	b.closeAll()
	b.collect(res)
	return res, nil
}

// warnSettings says, before the run, what will throttle it.
func (b *chatBench) warnSettings() {
	if b.cfg.keys == nil {
		fmt.Fprintln(b.warn, "warning: no -secret: publishers join as guests, and the server's per-person chat rate limit "+
			"(-chat-rate, default 1 message/s, burst 5) will refuse most of their messages unless it runs with a high -chat-rate; "+
			"its flood limit (-msg-rate, default 20 messages/s, burst 60) closes a guest that sends faster")
	}
	if l := len(appendHeader(nil, b.hdr, b.cfg.publishers-1, b.cfg.m, time.Now().UnixNano())); b.cfg.size < l {
		fmt.Fprintf(b.warn, "note: -size %d is shorter than the message header; texts will be %d bytes\n", b.cfg.size, l)
	}
}

// url returns the URL of the i-th client of a kind: members are spread round-robin over the servers.
func (b *chatBench) url(i int) string { return b.cfg.urls[i%len(b.cfg.urls)] }

// connsOnFirstURL is how many connections the first server holds, whose metrics the bench reads.
func (b *chatBench) connsOnFirstURL() int {
	on := func(count int) (n int) {
		for i := range count {
			if b.url(i) == b.cfg.urls[0] { // a URL given twice is the same server
				n++
			}
		}
		return n
	}
	return on(b.cfg.n) + on(b.cfg.publishers)
}

// options returns the client options of a member: a minted token (subscribers participant, publishers
// bot, so that publishers are exempt from the per-person chat rate limit), or a guest name.
func (b *chatBench) options(url string, i int, role auth.Role) (client.Options, error) {
	kind := "s"
	if role == auth.RoleBot {
		kind = "p"
	}
	name := fmt.Sprintf("bench %s%d", kind, i)
	o := client.Options{URL: url, EventBuffer: eventBuffer}
	if b.cfg.keys == nil {
		o.Name = name
		return o, nil
	}
	now := time.Now()
	tok, err := b.cfg.keys.Sign(auth.Claims{Room: b.cfg.room, Identity: fmt.Sprintf("bench-%s-%s%d", b.run, kind, i),
		Name: name, Role: role, Expires: now.Add(b.cfg.timeout + time.Hour), IssuedAt: now})
	o.Token = tok
	return o, err
}

// dial connects one client, retrying a failed connection a couple of times: with thousands of dials a
// refused or reset one says more about the listen backlog than about the server.
func dial(ctx context.Context, opts client.Options) (*client.Client, error) {
	var err error
	for try := range 3 {
		if try > 0 {
			select {
			case <-ctx.Done():
				return nil, err
			case <-time.After(time.Duration(try) * 250 * time.Millisecond):
			}
		}
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		var c *client.Client
		c, err = client.Dial(dctx, opts)
		cancel()
		if err == nil {
			return c, nil
		}
		var re *client.RequestError
		var ce *client.CloseError
		if errors.As(err, &re) || errors.As(err, &ce) || ctx.Err() != nil {
			return nil, err
		}
	}
	return nil, err
}

// join joins the bench room without presence, so that thousands of joins and leaves do not flood
// everyone.
func (b *chatBench) join(ctx context.Context, c *client.Client) error {
	presence := false
	jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err := c.Join(jctx, b.cfg.room, client.JoinOptions{Presence: &presence})
	return err
}

func (b *chatBench) connectSubscribers(ctx context.Context, all []client.Options) error {
	b.subs = make([]*subscriber, b.cfg.n)
	per := perPublisher(b.cfg.m, b.cfg.publishers)
	return forEach(ctx, b.cfg.n, b.cfg.connectConcurrency, func(ctx context.Context, i int) error {
		opts := all[i]
		s := newSubscriber(nil, b.hdr, per)
		opts.OnEvent = s.handle // on the client's read goroutine: no channel hand-off per event
		c, err := dial(ctx, opts)
		if err != nil {
			return fmt.Errorf("subscriber %d: %w", i, err)
		}
		s.c = c
		b.subs[i] = s // closeAll reads it after forEach returned
		b.consumers.Go(s.consume)
		if err := b.join(ctx, c); err != nil {
			return fmt.Errorf("subscriber %d: join %s: %w", i, b.cfg.room, err)
		}
		return nil
	})
}

func (b *chatBench) connectPublishers(ctx context.Context) error {
	b.pubs = make([]*publisher, b.cfg.publishers)
	per := perPublisher(b.cfg.m, b.cfg.publishers)
	return forEach(ctx, b.cfg.publishers, b.cfg.connectConcurrency, func(ctx context.Context, i int) error {
		opts, err := b.options(b.url(i), i, auth.RoleBot)
		if err != nil {
			return err
		}
		c, err := dial(ctx, opts)
		if err != nil {
			return fmt.Errorf("publisher %d: %w", i, err)
		}
		p := &publisher{idx: i, c: c, count: per[i], drained: make(chan struct{})}
		b.pubs[i] = p
		b.consumers.Go(p.drain)
		if err := b.join(ctx, c); err != nil {
			return fmt.Errorf("publisher %d: join %s: %w", i, b.cfg.room, err)
		}
		return nil
	})
}

// perPublisher splits m messages between publishers as evenly as possible.
func perPublisher(m, publishers int) []int {
	per := make([]int, publishers)
	for i := range per {
		per[i] = m / publishers
		if i < m%publishers {
			per[i]++
		}
	}
	return per
}

// forEach runs fn for 0..count-1 with at most conc at once; the first error stops it and is returned.
func forEach(ctx context.Context, count, conc int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
loop:
	for i := range count {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break loop
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(ctx, i); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}

// publishAndWait starts the publishers together and waits until they have returned (all sent and
// answered, or failed) and every subscriber has what they sent, or the timeout.
func (b *chatBench) publishAndWait(ctx context.Context, res *chatResult) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.timeout)
	defer cancel()
	pctx, stopPubs := context.WithCancel(ctx)
	defer stopPubs()
	var pubs sync.WaitGroup
	var running atomic.Int32
	running.Store(int32(len(b.pubs)))
	start := time.Now()
	for _, p := range b.pubs {
		pubs.Go(func() {
			defer running.Add(-1)
			p.run(pctx, b, start)
		})
	}

	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			res.TimedOut = true
			done = true
		case <-tick.C:
			// Done once the publishers have returned (each after its last answer: cancelling them earlier
			// loses an answer in flight, and the count of messages sent with it) and every subscriber has
			// what they sent.
			if running.Load() != 0 {
				continue
			}
			var target int64
			for _, p := range b.pubs {
				target += p.sent.Load()
			}
			done = true
			for _, s := range b.subs {
				if s.count.Load() < target && !s.ended.Load() {
					done = false
					break
				}
			}
		}
	}
	stopPubs()
	pubs.Wait()
	res.firstSend = start
	var acks histogram
	var last time.Time
	for _, p := range b.pubs {
		res.Sent += p.sent.Load()
		acks.merge(&p.acks)
		if !p.first.IsZero() && p.first.Before(res.firstSend) {
			res.firstSend = p.first
		}
		if p.last.After(last) {
			last = p.last
		}
		if p.err != nil {
			res.PublishErrors = append(res.PublishErrors, fmt.Sprintf("publisher %d after %d messages: %v", p.idx, p.sent.Load(), p.err))
		}
	}
	if !last.IsZero() {
		d := last.Sub(res.firstSend)
		res.PublishS = round(d.Seconds(), 3)
		if d > 0 {
			res.SendRate = round(float64(res.Sent)/d.Seconds(), 1)
		}
	}
	res.AckP50ms, res.AckP99ms = ms(acks.quantile(0.5)), ms(acks.quantile(0.99))
}

// closeAll closes every client, a few at a time, and waits for their event readers. It may run twice.
func (b *chatBench) closeAll() {
	var cs []*client.Client
	for _, s := range b.subs {
		if s != nil {
			cs = append(cs, s.c)
		}
	}
	for _, p := range b.pubs {
		if p != nil {
			cs = append(cs, p.c)
		}
	}
	_ = forEach(context.Background(), len(cs), b.cfg.connectConcurrency, func(_ context.Context, i int) error {
		return cs[i].Close()
	})
	b.consumers.Wait()
}

// collect merges what the subscribers saw; every reader has stopped.
func (b *chatBench) collect(res *chatResult) {
	var h histogram
	disc := map[string]int{}
	var last int64
	for _, s := range b.subs {
		res.Delivered += s.count.Load()
		res.Dups += s.dups
		res.OutOfOrder += s.late
		res.OffsetErrors += s.offsetErrors
		res.Resets += s.resets
		res.Foreign += s.foreign
		last = max(last, s.lastRecv)
		h.merge(&s.hist)
		if s.err != nil {
			res.Disconnects++
			disc[s.err.Error()]++
		}
	}
	res.Lost = res.Expected - res.Delivered
	res.DisconnectReasons = disc
	if last > 0 {
		res.lastRecv = time.Unix(0, last)
		if d := res.lastRecv.Sub(res.firstSend); d > 0 {
			res.DurationS = round(d.Seconds(), 3)
			res.MsgsPerSec = round(float64(res.Delivered)/d.Seconds(), 1)
		}
	}
	res.P50ms, res.P99ms, res.MaxMs, res.MeanMs = ms(h.quantile(0.50)), ms(h.quantile(0.99)), ms(h.maximum()), ms(h.mean())
}
