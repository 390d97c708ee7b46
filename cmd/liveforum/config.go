package main

import (
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/pion/stun/v4"
	"github.com/pion/webrtc/v4"

	"github.com/liveforum/liveforum/auth"
	"github.com/liveforum/liveforum/protocol"
	"github.com/liveforum/liveforum/signaling"
)

// config is every setting of `liveforum serve`. Each flag has an environment twin: -max-conns is
// LIVEFORUM_MAX_CONNS; a flag given on the command line wins over its variable.
type config struct {
	Addr           string
	Secret         string
	AdminKey       string
	AllowedOrigins string
	PublicURL      string
	Dev            bool
	AutoCreate     bool
	DefaultRoom    string
	LogLevel       string

	// RedisURL selects the Redis broker (several nodes sharing rooms); empty: the in-memory broker.
	RedisURL string
	// RedisCluster says that RedisURL names nodes of a Redis Cluster (host:port and addr=host:port
	// entries in its query) rather than one Redis.
	RedisCluster bool
	RedisPrefix  string
	// NodeID names this node among the nodes sharing a Redis; empty: the host name and a random suffix.
	NodeID string
	// NodeTTL is how long a node's heartbeat lasts: a node silent for that long is dead.
	NodeTTL time.Duration

	HistorySize     int
	HistoryOnJoin   int
	RoomEmptyTTL    time.Duration
	LeaveGrace      time.Duration
	MaxMembers      int
	MaxChatChars    int
	MaxMessageBytes int
	MaxQueueBytes   int
	MaxConns        int
	MaxRoomsPerConn int
	ChatRate        float64
	ChatBurst       int
	MsgRate         float64
	MsgBurst        int
	FanoutDelay     time.Duration
	PingInterval    time.Duration
	WriteTimeout    time.Duration
	ShutdownTimeout time.Duration

	// Media turns the SFU (audio and video, WHIP and WHEP) on.
	Media              bool
	ICEUDPAddr         string // the one UDP address of all media
	ICETCPAddr         string // ICE over TCP as well, for clients whose UDP is blocked; empty: off
	ICEInterfaces      string // comma-separated interface names candidates may use; empty: all
	ICEIPs             string // comma-separated networks (CIDR) candidates may use; empty: any
	ICEPublicIPs       string // comma-separated public addresses announced instead of the host's (1:1 NAT)
	STUNServers        string // comma-separated stun: URLs handed to clients
	TURNServers        string // comma-separated turn: or turns: URLs handed to clients, with the credentials below
	TURNUsername       string
	TURNCredential     string
	MediaMaxBitrate    int // bits per second each publisher is asked to stay under
	MediaMaxPublishers int // simultaneous publishers in a room
	// MediaLeaseTTL is how long a room's media lease lasts without renewal: after its media node dies, a
	// room's media moves to another node within about this long.
	MediaLeaseTTL time.Duration

	// derived by validate
	keys     *auth.Keyring
	admin    auth.AdminKey
	origins  []string
	devMode  bool
	logLevel slog.Level
	ice      signaling.ICEConfig
}

func (c *config) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "addr", ":8080", "listen address")
	fs.StringVar(&c.Secret, "secret", "", `token signing keys: "secret" or "kid1:secret1,kid2:secret2" (first signs; all verify); empty: development mode with a generated key`)
	fs.StringVar(&c.AdminKey, "admin-key", "", "bearer key of the admin API and /metrics (at least 16 bytes); generated in development mode")
	fs.StringVar(&c.AllowedOrigins, "allowed-origins", "", `comma-separated browser origins allowed to open /ws ("*": any); empty: the same host only`)
	fs.StringVar(&c.PublicURL, "public-url", "", "base URL of invite links (default: from each request's Host)")
	fs.BoolVar(&c.Dev, "dev", false, "development mode even with a secret: anyone may create a room by joining it as a guest")
	fs.BoolVar(&c.AutoCreate, "auto-create", true, "create a room on the first join of a token that names it")
	fs.StringVar(&c.DefaultRoom, "default-room", "lobby", "room created at start in development mode, with a moderator link printed")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.RedisURL, "redis-url", "", `Redis shared by several nodes: redis://[user:password@]host:port[/db] or rediss://… (TLS); with -redis-cluster, nodes of a Redis Cluster; empty: in-memory broker, one node`)
	fs.BoolVar(&c.RedisCluster, "redis-cluster", false, `-redis-url names nodes of a Redis Cluster (7.0 or later): redis://[user:]password@host1:port?addr=host2:port&addr=host3:port`)
	fs.StringVar(&c.RedisPrefix, "redis-prefix", "lf:", "prefix of every Redis key and channel, so several deployments can share one Redis")
	fs.StringVar(&c.NodeID, "node-id", "", "this node's name among the nodes sharing a Redis (letters, digits, '.', '_', '-'); empty: host name and a random suffix")
	fs.DurationVar(&c.NodeTTL, "node-ttl", 10*time.Second, "heartbeat lifetime: the members of a node not heard from for this long are logged as left by another node")
	fs.IntVar(&c.HistorySize, "history-size", 10000, "events kept in each room's log (recovery window)")
	fs.IntVar(&c.HistoryOnJoin, "history-on-join", 100, "recent chat messages sent to a new joiner")
	fs.DurationVar(&c.RoomEmptyTTL, "room-empty-ttl", 10*time.Minute, "how long an empty room lives (rooms may set their own)")
	fs.DurationVar(&c.LeaveGrace, "leave-grace", 5*time.Second, "how long a dropped member stays in the room, for a quiet reconnect")
	fs.IntVar(&c.MaxMembers, "max-members", 10000, "default member limit of a room")
	fs.IntVar(&c.MaxChatChars, "max-chat-chars", 2000, "longest chat message, in characters")
	fs.IntVar(&c.MaxMessageBytes, "max-message-bytes", 64<<10, "largest client websocket message; bigger ones close the connection (1009)")
	fs.IntVar(&c.MaxQueueBytes, "max-queue-bytes", 1<<20, "per-connection send queue; a client that lets it fill is disconnected as a slow consumer (4002)")
	fs.IntVar(&c.MaxConns, "max-conns", 50000, "websocket connections on this node")
	fs.IntVar(&c.MaxRoomsPerConn, "max-rooms-per-conn", 4, "rooms one connection may be in")
	fs.Float64Var(&c.ChatRate, "chat-rate", 1, "chat messages per second per person (bots are exempt)")
	fs.IntVar(&c.ChatBurst, "chat-burst", 5, "chat messages a person may send at once")
	fs.Float64Var(&c.MsgRate, "msg-rate", 20, "client messages per second before a connection is closed as a flood (4003)")
	fs.IntVar(&c.MsgBurst, "msg-burst", 60, "client messages allowed at once before the flood limit applies")
	fs.DurationVar(&c.FanoutDelay, "fanout-delay", 10*time.Millisecond, "in a busy room, send the events of this long together, one frame per member (0: every event at once)")
	fs.DurationVar(&c.PingInterval, "ping-interval", 25*time.Second, "time between server pings")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", 10*time.Second, "how long a closing connection may take to flush its last messages")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long a graceful shutdown waits for connections to close")
	fs.BoolVar(&c.Media, "media", true, "audio and video: the SFU, WHIP and WHEP (false: chat only)")
	fs.StringVar(&c.ICEUDPAddr, "ice-udp-addr", ":7881", "the one UDP address all media flows through (open it in the firewall)")
	fs.StringVar(&c.ICETCPAddr, "ice-tcp-addr", "", `also accept media over TCP here, for clients whose UDP is blocked (e.g. ":7881"); empty: off`)
	fs.StringVar(&c.ICEInterfaces, "ice-interfaces", "", `comma-separated network interfaces media candidates may use (e.g. "eth0" or "lo"; a loopback interface adds loopback candidates); empty: all`)
	fs.StringVar(&c.ICEIPs, "ice-ips", "", `comma-separated networks media candidates may use (e.g. "10.0.0.0/8,127.0.0.1/32"); empty: any`)
	fs.StringVar(&c.ICEPublicIPs, "ice-public-ips", "", "comma-separated public IPs announced to clients instead of the host's own (a host behind 1:1 NAT)")
	fs.StringVar(&c.STUNServers, "stun-servers", "", `comma-separated STUN servers handed to clients (e.g. "stun:stun.example.org:3478")`)
	fs.StringVar(&c.TURNServers, "turn-servers", "", `comma-separated TURN servers handed to clients (e.g. "turn:turn.example.org:3478?transport=udp,turns:turn.example.org:5349"); needs -turn-username and -turn-credential`)
	fs.StringVar(&c.TURNUsername, "turn-username", "", "username of the TURN servers")
	fs.StringVar(&c.TURNCredential, "turn-credential", "", "password of the TURN servers")
	fs.IntVar(&c.MediaMaxBitrate, "media-max-bitrate", 3_000_000, "bits per second each publisher is asked to stay under")
	fs.IntVar(&c.MediaMaxPublishers, "media-max-publishers", 16, "publishers at once in a room")
	fs.DurationVar(&c.MediaLeaseTTL, "media-lease-ttl", 10*time.Second, "with several nodes: lifetime of a room's media lease (renewed every third of it); after a media node dies, its rooms' media moves to another node within about this long")
}

// envName is a flag's environment twin.
func envName(flagName string) string {
	return "LIVEFORUM_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parse reads flags, then fills every flag not given on the command line from its environment twin.
func parse(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", envName(f.Name), err))
			}
		}
	})
	return errors.Join(errs...)
}

// validate checks the settings and derives keys; with no secret it enters development mode.
func (c *config) validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	if err := c.logLevel.UnmarshalText([]byte(c.LogLevel)); err != nil {
		errs = append(errs, fmt.Errorf("log-level: %w", err))
	}
	if c.Secret == "" {
		c.devMode = true
		k := auth.GenerateKey()
		c.keys, _ = auth.NewKeyring(k)
	} else {
		keys, err := auth.ParseKeys(c.Secret)
		if err != nil {
			errs = append(errs, fmt.Errorf("secret: %w", err))
		}
		c.keys = keys
	}
	c.devMode = c.devMode || c.Dev
	if c.AdminKey == "" {
		check(c.Secret == "", "admin-key is required when a secret is set (LIVEFORUM_ADMIN_KEY)")
		c.AdminKey = auth.GenerateAdminKey()
	}
	if ak, err := auth.NewAdminKey(c.AdminKey); err != nil {
		errs = append(errs, fmt.Errorf("admin-key: %w", err))
	} else {
		c.admin = ak
	}
	for _, o := range strings.Split(c.AllowedOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			check(o == "*" || strings.HasPrefix(o, "http://") || strings.HasPrefix(o, "https://"),
				"allowed-origins: %q is not an origin like https://forum.example.org", o)
			c.origins = append(c.origins, strings.TrimRight(o, "/"))
		}
	}
	check(c.DefaultRoom == "" || protocol.ValidRoomName(c.DefaultRoom) == nil, "default-room: %q is not a valid room name", c.DefaultRoom)
	if err := checkRedisURL(c.RedisURL, c.RedisCluster); err != nil {
		errs = append(errs, err)
	}
	check(!c.RedisCluster || c.RedisURL != "", "redis-cluster needs a redis-url naming nodes of the cluster")
	check(c.RedisPrefix != "" && !strings.ContainsAny(c.RedisPrefix, "{} \t\r\n") && len(c.RedisPrefix) <= 64,
		"redis-prefix %q must be 1..64 characters without '{', '}' or spaces", c.RedisPrefix)
	if c.NodeID == "" {
		c.NodeID = randomNodeID()
	}
	check(validNodeID(c.NodeID), "node-id %q must be 1..64 letters, digits, '.', '_' or '-'", c.NodeID)
	check(c.NodeTTL >= time.Second && c.NodeTTL <= 10*time.Minute, "node-ttl must be 1s..10m")
	check(c.MediaLeaseTTL >= time.Second && c.MediaLeaseTTL <= 10*time.Minute, "media-lease-ttl must be 1s..10m")
	check(c.HistorySize >= 10 && c.HistorySize <= 1_000_000, "history-size must be 10..1000000")
	check(c.HistoryOnJoin >= 0 && c.HistoryOnJoin <= c.HistorySize, "history-on-join must be 0..history-size")
	check(c.RoomEmptyTTL >= time.Second, "room-empty-ttl must be at least 1s")
	check(c.LeaveGrace >= 0 && c.LeaveGrace <= time.Hour, "leave-grace must be 0..1h")
	check(c.MaxMembers > 0, "max-members must be positive")
	check(c.MaxChatChars > 0 && c.MaxChatChars <= 100_000, "max-chat-chars must be 1..100000")
	check(c.MaxMessageBytes >= 1024 && c.MaxMessageBytes <= 16<<20, "max-message-bytes must be 1 KiB..16 MiB")
	check(c.MaxQueueBytes >= 64<<10, "max-queue-bytes must be at least 64 KiB")
	check(c.MaxConns > 0, "max-conns must be positive")
	check(c.MaxRoomsPerConn > 0 && c.MaxRoomsPerConn <= 100, "max-rooms-per-conn must be 1..100")
	check(c.ChatRate > 0 && c.ChatBurst > 0 && c.MsgRate > 0 && c.MsgBurst > 0, "rates and bursts must be positive")
	check(c.FanoutDelay >= 0 && c.FanoutDelay <= time.Second, "fanout-delay must be 0..1s")
	check(c.PingInterval >= time.Second, "ping-interval must be at least 1s")
	check(c.WriteTimeout >= 3*time.Second, "write-timeout must be at least 3s (the close handshake takes up to 3s)")
	if c.Media {
		errs = append(errs, c.validateMedia()...)
	}
	return errors.Join(errs...)
}

// checkRedisURL accepts "" (no Redis) or a redis:// or rediss:// URL with a host, so that a typo fails at
// startup with a message rather than as an unreachable Redis. For one Redis the URL may name a database
// number (redis://host:6379/0); for a Redis Cluster (cluster) it names no database, and its query may name
// more nodes (redis://host1:6379?addr=host2:6379&addr=host3:6379). Other query options are go-redis's to
// read (and refuse).
func checkRedisURL(raw string, cluster bool) error {
	if raw == "" {
		return nil
	}
	example := "redis://host:6379/0"
	if cluster {
		example = "redis://host1:6379?addr=host2:6379&addr=host3:6379"
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse quotes the whole URL, password included: say what is wrong without it.
		return fmt.Errorf("redis-url: not a URL like %s", example)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return fmt.Errorf("redis-url: scheme %q, want redis:// or rediss:// (TLS), as in %s", u.Scheme, example)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("redis-url: no host in %q, want %s", u.Redacted(), example)
	}
	if err := checkPort(u.Port()); err != nil {
		return fmt.Errorf("redis-url: %w", err)
	}
	query, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return fmt.Errorf("redis-url: query %q: %w", u.RawQuery, err)
	}
	db := strings.Trim(u.Path, "/")
	if !cluster {
		if db != "" {
			if n, err := strconv.Atoi(db); err != nil || n < 0 {
				return fmt.Errorf("redis-url: database %q is not a number (%s)", db, example)
			}
		}
		if query.Has("addr") {
			return errors.New("redis-url: addr= names more nodes of a Redis Cluster: set redis-cluster too, or remove them")
		}
		return nil
	}
	if db != "" {
		return fmt.Errorf("redis-url: a Redis Cluster has no database number (%q): remove it from the URL, as in %s", db, example)
	}
	for _, addr := range query["addr"] {
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "" || port == "" {
			return fmt.Errorf("redis-url: addr=%q is not host:port, as in %s", addr, example)
		}
		if err := checkPort(port); err != nil {
			return fmt.Errorf("redis-url: addr=%s: %w", addr, err)
		}
	}
	return nil
}

// checkPort accepts "" (the default port) or 1..65535.
func checkPort(p string) error {
	if p == "" {
		return nil
	}
	if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not 1..65535", p)
	}
	return nil
}

// redactedRedisURL is the Redis URL without its password, for logs.
func redactedRedisURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid)"
	}
	return u.Redacted()
}

func validNodeID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !nodeIDRune(r) {
			return false
		}
	}
	return true
}

func nodeIDRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
}

// randomNodeID is the host name (what a node id may not hold dropped, at most 40 bytes) and 8 random hex
// digits, so that two processes on one host, or a restarted one, never share an id.
func randomNodeID() string {
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if nodeIDRune(r) {
			return r
		}
		return -1
	}, host)
	if len(host) > 40 {
		host = host[:40]
	}
	if host == "" {
		host = "node"
	}
	id := uuid.New()
	return host + "-" + hex.EncodeToString(id[:4])
}

func getenv(k string) string { return os.Getenv(k) }

// validateMedia checks the media settings and derives the SFU's ICE configuration (c.ice). It runs after
// the development mode is known.
func (c *config) validateMedia() []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	ice := signaling.ICEConfig{UDPAddr: c.ICEUDPAddr, TCPAddr: c.ICETCPAddr}
	if err := checkListenAddr(c.ICEUDPAddr); err != nil {
		fail("ice-udp-addr: %v", err)
	}
	if c.ICETCPAddr != "" {
		if err := checkListenAddr(c.ICETCPAddr); err != nil {
			fail("ice-tcp-addr: %v", err)
		}
	}
	for _, name := range splitList(c.ICEInterfaces) {
		if _, err := net.InterfaceByName(name); err != nil {
			fail("ice-interfaces: this host has no network interface %q (it has %s)", name, interfaceNames())
		}
		ice.Interfaces = append(ice.Interfaces, name)
	}
	for _, s := range splitList(c.ICEIPs) {
		n, err := parseNetwork(s)
		if err != nil {
			fail("ice-ips: %q is not a network like 10.0.0.0/8 or an address like 192.0.2.7", s)
			continue
		}
		ice.IPs = append(ice.IPs, n)
	}
	for _, s := range splitList(c.ICEPublicIPs) {
		if ip := net.ParseIP(s); ip == nil || ip.IsUnspecified() {
			fail("ice-public-ips: %q is not an IP address like 203.0.113.7", s)
			continue
		}
		ice.NAT1To1IPs = append(ice.NAT1To1IPs, s)
	}
	for _, u := range splitList(c.STUNServers) {
		if err := checkICEURL(u, stun.SchemeTypeSTUN, stun.SchemeTypeSTUNS); err != nil {
			fail("stun-servers: %q is not a STUN URL like stun:stun.example.org:3478 (%v)", u, err)
			continue
		}
		ice.Servers = append(ice.Servers, webrtc.ICEServer{URLs: []string{u}})
	}
	var turn []string
	for _, u := range splitList(c.TURNServers) {
		if err := checkICEURL(u, stun.SchemeTypeTURN, stun.SchemeTypeTURNS); err != nil {
			fail("turn-servers: %q is not a TURN URL like turn:turn.example.org:3478?transport=udp or turns:turn.example.org:5349 (%v)", u, err)
			continue
		}
		turn = append(turn, u)
	}
	switch {
	case len(turn) > 0 && (c.TURNUsername == "" || c.TURNCredential == ""):
		fail("turn-servers need turn-username and turn-credential (LIVEFORUM_TURN_USERNAME, LIVEFORUM_TURN_CREDENTIAL)")
	case len(turn) > 0:
		ice.Servers = append(ice.Servers, webrtc.ICEServer{URLs: turn, Username: c.TURNUsername, Credential: c.TURNCredential})
	case c.TURNServers == "" && (c.TURNUsername != "" || c.TURNCredential != ""):
		fail("turn-username and turn-credential are set but turn-servers is empty")
	}
	if strings.ContainsAny(c.TURNUsername+c.TURNCredential, "\r\n") {
		fail("turn-username and turn-credential may not contain line breaks")
	}
	if c.MediaMaxBitrate < 100_000 || c.MediaMaxBitrate > 100_000_000 {
		fail("media-max-bitrate must be 100000..100000000 (bits per second)")
	}
	if c.MediaMaxPublishers < 1 || c.MediaMaxPublishers > 1000 {
		fail("media-max-publishers must be 1..1000")
	}
	// In development mode without filters, candidates come from every interface and loopback too, so a
	// browser or tool on the same machine connects even with no network at all.
	if c.devMode && len(ice.Interfaces) == 0 && len(ice.IPs) == 0 {
		if ifs, err := net.Interfaces(); err == nil {
			for _, ifc := range ifs {
				if ifc.Flags&net.FlagUp != 0 {
					ice.Interfaces = append(ice.Interfaces, ifc.Name)
				}
			}
		}
	}
	c.ice = ice
	return errs
}

// splitList splits a comma-separated setting, dropping blanks.
func splitList(s string) []string {
	var out []string
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// checkListenAddr accepts host:port or :port with a port of 0..65535 (0: any free port).
func checkListenAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port or :port (such as :7881)", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not 0..65535", port)
	}
	return nil
}

// parseNetwork reads a CIDR network, or a single address as the network of just that address.
func parseNetwork(s string) (*net.IPNet, error) {
	if strings.Contains(s, "/") {
		_, n, err := net.ParseCIDR(s)
		return n, err
	}
	ip := net.ParseIP(s)
	if ip == nil {
		return nil, fmt.Errorf("bad address %q", s)
	}
	bits := 128
	if ip4 := ip.To4(); ip4 != nil {
		ip, bits = ip4, 32
	}
	return &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)}, nil
}

// checkICEURL parses a STUN or TURN URL and checks that it has one of the schemes. The URL also goes into
// HTTP Link headers (WHIP), so it may not hold what would end one.
func checkICEURL(u string, schemes ...stun.SchemeType) error {
	if strings.ContainsAny(u, "<>\" \t\r\n") {
		return errors.New("no spaces, quotes or angle brackets")
	}
	uri, err := stun.ParseURI(u)
	if err != nil {
		return err
	}
	if !slices.Contains(schemes, uri.Scheme) {
		return fmt.Errorf("scheme %s", uri.Scheme)
	}
	return nil
}

// interfaceNames lists the host's network interfaces, for error messages.
func interfaceNames() string {
	ifs, err := net.Interfaces()
	if err != nil || len(ifs) == 0 {
		return "none that can be listed"
	}
	names := make([]string, len(ifs))
	for i, ifc := range ifs {
		names[i] = ifc.Name
	}
	return strings.Join(names, ", ")
}
