// Command liveforum runs the liveforum server (`liveforum` or `liveforum serve`), mints access tokens
// (`liveforum token`), and prints its version (`liveforum version`).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/liveforum/liveforum/auth"
	"github.com/liveforum/liveforum/broker"
	"github.com/liveforum/liveforum/protocol"
	"github.com/liveforum/liveforum/rooms"
	"github.com/liveforum/liveforum/server"
	"github.com/liveforum/liveforum/signaling"
	"github.com/liveforum/liveforum/web"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "liveforum:", err)
		}
		os.Exit(2)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return serve(ctx, args, stdout, stderr, nil)
	case "token":
		return token(args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "liveforum", version)
		return nil
	}
	return fmt.Errorf("unknown command %q (serve, token, version)", cmd)
}

// serve runs the server until ctx is done. ready, if not nil, receives the listening address.
func serve(ctx context.Context, args []string, stdout, stderr io.Writer, ready chan<- string) error {
	var cfg config
	fs := flag.NewFlagSet("liveforum serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.flags(fs)
	if err := parse(fs, args, getenv); err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.logLevel}))

	b, err := openBroker(ctx, &cfg, log)
	if err != nil {
		return err
	}
	defer b.Close()
	historyOnJoin := cfg.HistoryOnJoin
	if historyOnJoin == 0 {
		historyOnJoin = -1 // rooms.Config: 0 is "the default", negative is "none"
	}
	// The HTTP listener before the media sockets: an address in use fails before they are opened.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	media, err := openMedia(&cfg, log)
	if err != nil {
		_ = ln.Close()
		return err
	}
	if media != nil {
		defer func() { _ = media.Close() }() // after the server's shutdown has ended its sessions
	}
	reg := rooms.NewRegistry(b, rooms.Config{
		HistoryOnJoin: historyOnJoin, MaxRecover: cfg.HistorySize, EmptyTTL: cfg.RoomEmptyTTL, LeaveGrace: cfg.LeaveGrace,
		MaxMembers: cfg.MaxMembers, MaxChatRunes: cfg.MaxChatChars, FanoutDelay: cfg.FanoutDelay, Logger: log,
		Node: cfg.NodeID, NodeTTL: cfg.NodeTTL,
	})
	srv, err := server.New(server.Config{
		Keys: cfg.keys, AdminKey: cfg.admin, AllowedOrigins: cfg.origins, DevMode: cfg.devMode,
		AutoCreate: cfg.AutoCreate, PublicURL: cfg.PublicURL, Media: media,
		MaxMessageBytes: int64(cfg.MaxMessageBytes), MaxQueueBytes: cfg.MaxQueueBytes, MaxConns: cfg.MaxConns,
		MaxRoomsPerConn: cfg.MaxRoomsPerConn, ChatRate: cfg.ChatRate, ChatBurst: cfg.ChatBurst,
		MsgRate: cfg.MsgRate, MsgBurst: cfg.MsgBurst, PingInterval: cfg.PingInterval,
		PongWait: cfg.PingInterval / 2, WriteTimeout: cfg.WriteTimeout, MediaLeaseTTL: cfg.MediaLeaseTTL,
		Version: version, Logger: log,
	}, reg, b)
	if err != nil {
		_ = ln.Close()
		reg.Close(1001, "")
		return err
	}
	app := web.Routes(web.Options{DevMode: cfg.devMode, Version: version, PublicRooms: server.PublicRooms(reg)})
	hs := &http.Server{Handler: srv.Handler(app), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()

	base := cfg.PublicURL
	if base == "" {
		base = "http://" + displayAddr(ln.Addr())
	}
	log.Info("liveforum listening", "addr", ln.Addr().String(), "version", version, "dev", cfg.devMode,
		"broker", brokerKind(&cfg), "node", cfg.NodeID)
	if cfg.devMode {
		devBanner(ctx, stdout, srv, reg, &cfg, base, media)
	}
	if ready != nil {
		ready <- ln.Addr().String()
	}

	select {
	case <-ctx.Done():
	case err := <-errc:
		_ = srv.Shutdown(context.Background())
		reg.Close(1001, "")
		return err
	}
	log.Info("shutting down: telling clients to reconnect")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	_ = hs.Shutdown(sctx)
	err = srv.Shutdown(sctx)
	reg.Close(1012, "server shutting down")
	if err != nil {
		log.Warn("connections still open at shutdown timeout", "err", err)
	}
	return nil
}

// openMedia opens the SFU's sockets, or returns nil with -media=false.
func openMedia(cfg *config, log *slog.Logger) (*signaling.Engine, error) {
	if !cfg.Media {
		log.Info("media off: no audio or video, no WHIP or WHEP")
		return nil, nil
	}
	e, err := signaling.New(signaling.Config{ICE: cfg.ice, MaxBitrate: cfg.MediaMaxBitrate,
		MaxPublishersPerRoom: cfg.MediaMaxPublishers, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("media: %w (set -ice-udp-addr, or -media=false for chat only)", err)
	}
	attrs := []any{"udp", e.UDPAddr().String()}
	if a := e.TCPAddr(); a != nil {
		attrs = append(attrs, "tcp", a.String())
	}
	if len(cfg.ice.NAT1To1IPs) > 0 {
		attrs = append(attrs, "public_ips", strings.Join(cfg.ice.NAT1To1IPs, ","))
	}
	if len(cfg.ice.Interfaces) > 0 {
		attrs = append(attrs, "interfaces", strings.Join(cfg.ice.Interfaces, ","))
	}
	attrs = append(attrs, "ice_servers", len(cfg.ice.Servers))
	log.Info("media listening", attrs...)
	return e, nil
}

// redisConnectTimeout bounds the first connection to Redis at startup.
const redisConnectTimeout = 10 * time.Second

// openBroker returns the in-memory broker, or with a Redis URL the Redis broker (on a Redis Cluster with
// -redis-cluster), connected: an unreachable Redis, or a cluster master that does not answer, fails startup
// rather than leaving a node that cannot serve.
func openBroker(ctx context.Context, cfg *config, log *slog.Logger) (broker.Broker, error) {
	if cfg.RedisURL == "" {
		return broker.NewMemory(broker.MemoryOptions{HistorySize: cfg.HistorySize}), nil
	}
	rctx, cancel := context.WithTimeout(ctx, redisConnectTimeout)
	defer cancel()
	b, err := broker.NewRedis(rctx, broker.RedisOptions{URL: cfg.RedisURL, Cluster: cfg.RedisCluster,
		HistorySize: cfg.HistorySize, Prefix: cfg.RedisPrefix, Logger: log})
	if err != nil {
		hint := "cannot use Redis (is it running and reachable from here?)"
		if cfg.RedisCluster {
			hint = "cannot use the Redis Cluster (does every master run and answer from here?)"
		}
		return nil, fmt.Errorf("redis-url %s: %s: %w", redactedRedisURL(cfg.RedisURL), hint, err)
	}
	log.Info("connected to Redis", "redis", redactedRedisURL(cfg.RedisURL), "cluster", cfg.RedisCluster,
		"prefix", cfg.RedisPrefix, "node", cfg.NodeID)
	return b, nil
}

func brokerKind(cfg *config) string {
	switch {
	case cfg.RedisURL == "":
		return "memory"
	case cfg.RedisCluster:
		return "redis-cluster"
	}
	return "redis"
}

// devBanner creates the default room and prints what a first-time user needs.
func devBanner(ctx context.Context, w io.Writer, srv *server.Server, reg *rooms.Registry, cfg *config, base string, media *signaling.Engine) {
	fmt.Fprintf(w, "\nliveforum is running in development mode (no LIVEFORUM_SECRET): keys are made up for this run.\n")
	fmt.Fprintf(w, "  websocket: %s/ws   admin key: %s\n", strings.Replace(base, "http", "ws", 1), cfg.AdminKey)
	if media != nil {
		fmt.Fprintf(w, "  media: UDP %s   WHIP: %s/whip/<room>   WHEP: %s/whep/<room>\n", media.UDPAddr(), base, base)
	}
	if cfg.DefaultRoom != "" {
		_, err := reg.Create(ctx, rooms.Settings{Name: cfg.DefaultRoom, Title: "Lobby", Guests: true, Listed: true, EmptyTTL: 24 * time.Hour})
		if err != nil && !errors.Is(err, rooms.ErrExists) {
			fmt.Fprintf(w, "  could not create room %q: %v\n", cfg.DefaultRoom, err)
			return
		}
		inv, err := srv.MintInvite(cfg.DefaultRoom, string(auth.RoleModerator), 24*time.Hour, base)
		if err == nil {
			fmt.Fprintf(w, "  moderator link for room %q: %s\n", cfg.DefaultRoom, inv.URL)
		}
	}
	fmt.Fprintln(w)
}

func displayAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// token prints an access token.
func token(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("liveforum token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	secret := fs.String("secret", "", "signing keys, as for serve (LIVEFORUM_SECRET)")
	room := fs.String("room", "", `room the token is for ("*": any)`)
	identity := fs.String("identity", "", "stable member identity")
	name := fs.String("name", "", "display name")
	role := fs.String("role", "participant", "participant, speaker, interpreter, moderator or bot")
	lang := fs.String("lang", "", `reading language, such as "pt-BR"`)
	ttl := fs.Duration("ttl", 2*time.Hour, "lifetime")
	if err := parse(fs, args, getenv); err != nil {
		return err
	}
	if *secret == "" {
		return errors.New("token: -secret or LIVEFORUM_SECRET is required (the server's signing key)")
	}
	keys, err := auth.ParseKeys(*secret)
	if err != nil {
		return err
	}
	r, err := auth.ParseRole(*role)
	if err != nil {
		return err
	}
	if *ttl <= 0 {
		return errors.New("token: -ttl must be positive")
	}
	if *room != "*" && protocol.ValidRoomName(*room) != nil {
		return fmt.Errorf("token: -room %q is not a room name (letters, digits, '-', '_', '.'; or \"*\")", *room)
	}
	now := time.Now()
	tok, err := keys.Sign(auth.Claims{Room: *room, Identity: *identity, Name: *name, Role: r, Lang: *lang,
		Expires: now.Add(*ttl), IssuedAt: now})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
