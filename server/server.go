// Package server is liveforum's HTTP surface: the chi router, the /ws websocket endpoint with its
// per-connection read and write loops and send queue, the admin REST API under /api, health and metrics.
// Room rules live in package rooms; the server only maps connections and requests onto them.
//
// Concurrency: a Server is safe for concurrent use. Each websocket connection has one reader (the HTTP
// handler goroutine) and one writer goroutine; rooms hand it frames through a byte-bounded queue whose
// enqueue never blocks.
package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/liveforum/liveforum/auth"
	"github.com/liveforum/liveforum/broker"
	"github.com/liveforum/liveforum/protocol"
	"github.com/liveforum/liveforum/rooms"
	"github.com/liveforum/liveforum/signaling"
)

// Config configures a Server. Zero values take the documented defaults, except Keys and AdminKey, which
// are required.
type Config struct {
	Keys     *auth.Keyring
	AdminKey auth.AdminKey
	// Media is the SFU (audio and video); nil turns media off: no WHIP/WHEP, no media signalling.
	Media *signaling.Engine
	// AllowedOrigins lists the browser origins ("https://forum.example.org") allowed to open /ws; "*"
	// allows any. Empty: only pages served from the same host.
	AllowedOrigins []string
	// DevMode lets anyone create a room by joining it as a guest (development and demos).
	DevMode bool
	// AutoCreate creates a room on the first join of a valid (non-guest) token that names it, as LiveKit
	// does. Off when false; the liveforum command turns it on by default.
	AutoCreate bool
	// PublicURL is the base URL of invite links (default: from the request's Host).
	PublicURL string

	MaxMessageBytes int64         // read limit of one client frame (default 64 KiB)
	MaxQueueBytes   int           // per-connection send queue before "slow consumer" (default 1 MiB)
	MaxConns        int           // connections on this node (default 50000)
	MaxRoomsPerConn int           // rooms one connection may join (default 4)
	WriteTimeout    time.Duration // how long a closing connection may take to flush before its socket is closed (default 10 s)
	PingInterval    time.Duration // between server pings (default 25 s)
	PongWait        time.Duration // extra time for the client's answer (default 10 s)
	AuthTimeout     time.Duration // for the first message (default 10 s)
	RequestTimeout  time.Duration // for one request's broker work (default 5 s)
	MsgRate         float64       // client messages per second before the connection is closed (default 20)
	MsgBurst        int           // (default 60)
	ChatRate        float64       // chat messages per second per person (default 1), bots exempt
	ChatBurst       int           // (default 5)
	SessionTTL      time.Duration // lifetime of guest and invitee session tokens (default 12 h)
	// MediaLeaseTTL is how long a room's media lease lasts without renewal (default 10 s; renewed every
	// third of it): after its media node dies, a room's media moves to another node within about this long.
	MediaLeaseTTL time.Duration

	Version string
	Logger  *slog.Logger
	Now     func() time.Time
}

func (c *Config) defaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 64 << 10
	}
	def(&c.MaxQueueBytes, 1<<20)
	def(&c.MaxConns, 50000)
	def(&c.MaxRoomsPerConn, 4)
	def(&c.MsgBurst, 60)
	def(&c.ChatBurst, 5)
	defDur(&c.WriteTimeout, 10*time.Second)
	defDur(&c.PingInterval, 25*time.Second)
	defDur(&c.PongWait, 10*time.Second)
	defDur(&c.AuthTimeout, 10*time.Second)
	defDur(&c.RequestTimeout, 5*time.Second)
	defDur(&c.SessionTTL, 12*time.Hour)
	defDur(&c.MediaLeaseTTL, 10*time.Second)
	if c.MsgRate <= 0 {
		c.MsgRate = 20
	}
	if c.ChatRate <= 0 {
		c.ChatRate = 1
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Version == "" {
		c.Version = "dev"
	}
}

// Server serves liveforum over HTTP.
type Server struct {
	cfg     Config
	reg     *rooms.Registry
	b       broker.Broker
	log     *slog.Logger
	up      websocket.Upgrader
	metrics metrics

	ctx    context.Context // canceled at shutdown
	cancel context.CancelFunc

	mu       sync.Mutex
	conns    map[*conn]struct{}
	stopping bool
	wg       sync.WaitGroup // connections
	nconns   atomic.Int64
	pinger   sync.WaitGroup

	whip    httpMedia // WHIP and WHEP sessions (whip.go)
	relay   *relay    // media across nodes (relay.go); nil when media is off
	connIDs atomic.Uint64
}

// New returns a server over the registry and broker. The caller closes the registry after Shutdown.
func New(cfg Config, reg *rooms.Registry, b broker.Broker) (*Server, error) {
	if cfg.Keys == nil {
		return nil, errors.New("server: no token keys configured")
	}
	cfg.defaults()
	s := &Server{cfg: cfg, reg: reg, b: b, log: cfg.Logger, conns: map[*conn]struct{}{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.up = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   1024,
		WriteBufferPool:  &sync.Pool{},
		CheckOrigin:      s.checkOrigin,
	}
	if cfg.Media != nil {
		s.relay = newRelay(s, reg.Node())
		if err := s.relay.start(); err != nil {
			s.cancel()
			return nil, err
		}
	}
	s.pinger.Add(1)
	go s.pingLoop()
	return s, nil
}

// pingLoop queues a ping to every connection each PingInterval: one timer for the node rather than one
// per connection. Clients answer with pong; a connection that sends nothing for PingInterval + PongWait
// times out in its read loop.
func (s *Server) pingLoop() {
	defer s.pinger.Done()
	t := time.NewTicker(s.cfg.PingInterval)
	defer t.Stop()
	var conns []*conn
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		for _, c := range conns {
			c.Send(pingFrame)
		}
		clear(conns)
		conns = conns[:0]
	}
}

func (s *Server) now() time.Time { return s.cfg.Now() }

// Handler returns the HTTP handler with every route. extra, if not nil, mounts more routes (the web app).
func (s *Server) Handler(extra func(chi.Router)) http.Handler {
	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	r.Use(middleware.GetHead) // HEAD answered like GET (uptime checks, curl -I)
	r.Get("/ws", s.serveWS)   // outside any timeout middleware: it lives as long as the connection
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	r.Get("/readyz", s.serveReady)
	s.mediaHTTPRoutes(r) // WHIP and WHEP, outside any timeout middleware (whip.go)
	r.Group(func(r chi.Router) {
		r.Use(s.requireAdmin)
		r.Get("/metrics", s.serveMetrics)
		r.Mount("/debug", middleware.Profiler()) // pprof, for operators holding the admin key
	})
	r.Route("/api", func(r chi.Router) {
		r.Use(middleware.Timeout(15 * time.Second))
		r.Use(s.requireAdmin)
		s.apiRoutes(r)
	})
	if extra != nil {
		extra(r)
	}
	return r
}

// checkOrigin allows requests without an Origin (non-browser clients), the configured origins, and by
// default pages of the same host.
func (s *Server) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	for _, o := range s.cfg.AllowedOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	if len(s.cfg.AllowedOrigins) > 0 {
		return false
	}
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	stopping := s.stopping
	s.mu.Unlock()
	if stopping {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	if s.nconns.Load() >= int64(s.cfg.MaxConns) {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "too many connections", http.StatusServiceUnavailable)
		return
	}
	if !s.checkOrigin(r) {
		s.log.Info("websocket from a foreign origin refused", "origin", r.Header.Get("Origin"))
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	ws, err := s.up.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered with an HTTP error
	}
	c := &conn{s: s, id: s.connIDs.Add(1), ws: ws, log: s.log.With("conn", remoteAddr(r)),
		wake: make(chan struct{}, 1), readDone: make(chan struct{}), writeDone: make(chan struct{}),
		sessions: map[string]*rooms.Session{},
		msgRate:  rate.NewLimiter(rate.Limit(s.cfg.MsgRate), s.cfg.MsgBurst),
		chatRate: rate.NewLimiter(rate.Limit(s.cfg.ChatRate), s.cfg.ChatBurst)}
	if !s.track(c) {
		c.Close(protocol.CloseShutdown, "server shutting down")
		close(c.readDone)
		c.writeLoop()
		return
	}
	s.metrics.connsTotal.Add(1)
	// The connection gets goroutines of its own and this handler returns, so that net/http releases
	// what it holds for the request (its buffered reader and response writer, a grown stack).
	go c.writeLoop()
	go c.serve()
}

// serve runs the read loop, then cleans up: leaves the rooms and waits for the writer.
func (c *conn) serve() {
	defer c.s.untrack(c)
	code, reason, left := c.readLoop(c.s.ctx)
	close(c.readDone)
	c.Close(code, reason)
	for room := range c.media {
		c.closeMedia(room)
	}
	if c.s.relay != nil {
		c.s.relay.forget(c)
	}
	for _, sess := range c.sessions {
		sess.Leave(context.Background(), left)
	}
	<-c.writeDone
}

func remoteAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.nconns.Add(1)
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.nconns.Add(-1)
	s.wg.Done()
}

// Shutdown tells every connected client to reconnect (close code 1012) and waits, until ctx is done, for
// the connections to end. Stop the HTTP server's listener first (http.Server.Shutdown), which does not
// wait for hijacked websocket connections.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.stopping = true
	for c := range s.conns {
		c.Close(protocol.CloseShutdown, "server shutting down")
	}
	s.mu.Unlock()
	s.whip.closeAll()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	defer func() {
		s.cancel()
		s.pinger.Wait()
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	stopping := s.stopping
	s.mu.Unlock()
	if stopping {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := s.b.ListRooms(ctx); err != nil {
		http.Error(w, "broker unavailable: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

func (s *Server) requireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, ok := auth.BearerToken(r.Header.Get("Authorization"))
		if !ok || !s.cfg.AdminKey.Check(key) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="liveforum admin"`)
			writeJSONError(w, http.StatusUnauthorized, "admin key required")
			return
		}
		next.ServeHTTP(w, r)
	})
}
