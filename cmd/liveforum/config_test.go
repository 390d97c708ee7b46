package main

import (
	"errors"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/liveforum/liveforum/auth"
)

const (
	testSecret   = "0123456789abcdef0123456789abcdef-secret"
	testAdminKey = "admin-key-0123456789abcdef"
)

// parseConfig parses args with env as the environment and validates the result.
func parseConfig(args []string, env map[string]string) (*config, error) {
	var cfg config
	fs := flag.NewFlagSet("liveforum serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.flags(fs)
	if err := parse(fs, args, func(k string) string { return env[k] }); err != nil {
		return &cfg, err
	}
	return &cfg, cfg.validate()
}

func TestEnvNames(t *testing.T) {
	for flagName, want := range map[string]string{
		"max-conns": "LIVEFORUM_MAX_CONNS", "addr": "LIVEFORUM_ADDR", "max-rooms-per-conn": "LIVEFORUM_MAX_ROOMS_PER_CONN",
	} {
		if got := envName(flagName); got != want {
			t.Errorf("envName(%q) = %q, want %q", flagName, got, want)
		}
	}
}

// Every flag not given on the command line is taken from its environment twin.
func TestEnvTwinsFillFlagsNotGiven(t *testing.T) {
	cfg, err := parseConfig(nil, map[string]string{
		"LIVEFORUM_SECRET":          testSecret,
		"LIVEFORUM_ADMIN_KEY":       testAdminKey,
		"LIVEFORUM_MAX_CONNS":       "123",
		"LIVEFORUM_LEAVE_GRACE":     "7s",
		"LIVEFORUM_AUTO_CREATE":     "false",
		"LIVEFORUM_CHAT_RATE":       "2.5",
		"LIVEFORUM_ALLOWED_ORIGINS": "https://a.example, https://b.example/",
		"LIVEFORUM_LOG_LEVEL":       "debug",
		"LIVEFORUM_ADDR":            "127.0.0.1:9999",
		"UNRELATED_MAX_CONNS":       "1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxConns != 123 || cfg.LeaveGrace != 7*time.Second || cfg.AutoCreate || cfg.ChatRate != 2.5 ||
		cfg.Addr != "127.0.0.1:9999" || cfg.logLevel != slog.LevelDebug {
		t.Fatalf("config from the environment: %+v", cfg)
	}
	if strings.Join(cfg.origins, " ") != "https://a.example https://b.example" {
		t.Fatalf("origins %q", cfg.origins)
	}
	if cfg.devMode || !cfg.admin.Check(testAdminKey) {
		t.Fatalf("dev %v, admin key not taken", cfg.devMode)
	}
	// The keys are the secret's: a token signed with it verifies.
	keys, err := auth.ParseKeys(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := keys.Sign(auth.Claims{Room: "r", Identity: "i", Name: "N", Role: auth.RoleParticipant, Expires: time.Now().Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.keys.Verify(tok, time.Now()); err != nil {
		t.Fatalf("token of the configured secret: %v", err)
	}
}

func TestFlagsWinOverEnv(t *testing.T) {
	cfg, err := parseConfig([]string{"-max-conns", "5", "-dev=false", "-leave-grace", "0s", "-secret", testSecret},
		map[string]string{
			"LIVEFORUM_MAX_CONNS":   "123",
			"LIVEFORUM_DEV":         "true",
			"LIVEFORUM_LEAVE_GRACE": "1m",
			"LIVEFORUM_SECRET":      "this is not even a valid secret",
			"LIVEFORUM_ADMIN_KEY":   testAdminKey,
			"LIVEFORUM_MAX_MEMBERS": "77",
		})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxConns != 5 || cfg.Dev || cfg.devMode || cfg.LeaveGrace != 0 || cfg.Secret != testSecret || cfg.MaxMembers != 77 {
		t.Fatalf("config: %+v", cfg)
	}
}

// With no secret the node runs in development mode, with keys and an admin key made up for the run.
func TestNoSecretIsDevMode(t *testing.T) {
	cfg, err := parseConfig(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.devMode || cfg.keys == nil || len(cfg.AdminKey) < 16 || !cfg.admin.Check(cfg.AdminKey) {
		t.Fatalf("dev config: dev %v keys %v admin key %q", cfg.devMode, cfg.keys, cfg.AdminKey)
	}
	if cfg.Addr != ":8080" || cfg.logLevel != slog.LevelInfo || !cfg.AutoCreate || cfg.DefaultRoom != "lobby" {
		t.Fatalf("defaults: %+v", cfg)
	}
	// -dev turns development mode on even with a secret.
	cfg, err = parseConfig([]string{"-dev", "-secret", testSecret, "-admin-key", testAdminKey}, nil)
	if err != nil || !cfg.devMode {
		t.Fatalf("-dev with a secret: dev %v, %v", cfg.devMode, err)
	}
}

func TestInvalidConfigIsExplained(t *testing.T) {
	prod := []string{"-secret", testSecret, "-admin-key", testAdminKey}
	for _, c := range []struct {
		name string
		args []string
		env  map[string]string
		want []string // substrings of the error
	}{
		{"origin without scheme", []string{"-allowed-origins", "forum.example.org"}, nil, []string{"allowed-origins", "forum.example.org"}},
		{"tiny history", []string{"-history-size", "5"}, nil, []string{"history-size"}},
		{"history on join beyond the log", []string{"-history-size", "100", "-history-on-join", "101"}, nil, []string{"history-on-join"}},
		{"bad log level", []string{"-log-level", "loud"}, nil, []string{"log-level"}},
		{"secret without admin key", []string{"-secret", testSecret}, nil, []string{"admin-key is required"}},
		{"secret from env without admin key", nil, map[string]string{"LIVEFORUM_SECRET": testSecret}, []string{"admin-key is required"}},
		{"short secret", []string{"-secret", "short", "-admin-key", testAdminKey}, nil, []string{"secret"}},
		{"short admin key", append([]string{"-admin-key", "short"}, "-secret", testSecret), nil, []string{"admin-key"}},
		{"bad default room", append([]string{"-default-room", "the lobby"}, prod...), nil, []string{"default-room"}},
		{"ping too often", append([]string{"-ping-interval", "10ms"}, prod...), nil, []string{"ping-interval"}},
		{"no rooms per connection", append([]string{"-max-rooms-per-conn", "0"}, prod...), nil, []string{"max-rooms-per-conn"}},
		{"zero rate", append([]string{"-chat-rate", "0"}, prod...), nil, []string{"rates"}},
		{"tiny queue", append([]string{"-max-queue-bytes", "1000"}, prod...), nil, []string{"max-queue-bytes"}},
		{"negative grace", append([]string{"-leave-grace", "-1s"}, prod...), nil, []string{"leave-grace"}},
		{"bad env value", nil, map[string]string{"LIVEFORUM_MAX_CONNS": "lots"}, []string{"LIVEFORUM_MAX_CONNS"}},
		{"bad env duration", nil, map[string]string{"LIVEFORUM_LEAVE_GRACE": "soon"}, []string{"LIVEFORUM_LEAVE_GRACE"}},
		{"unknown flag", []string{"-colour", "red"}, nil, []string{"colour"}},
		{"redis url with another scheme", append([]string{"-redis-url", "http://127.0.0.1:6379"}, prod...), nil, []string{"redis-url", `"http"`, "redis://"}},
		{"redis url without scheme", append([]string{"-redis-url", "127.0.0.1:6379"}, prod...), nil, []string{"redis-url"}},
		{"redis url without host", append([]string{"-redis-url", "redis:///0"}, prod...), nil, []string{"redis-url", "no host"}},
		{"redis url with a bad port", append([]string{"-redis-url", "redis://h:99999"}, prod...), nil, []string{"redis-url", "port"}},
		{"redis url with a bad database", append([]string{"-redis-url", "redis://h:6379/cache"}, prod...), nil, []string{"redis-url", "database"}},
		{"redis url from env", prod, map[string]string{"LIVEFORUM_REDIS_URL": "tcp://h:6379"}, []string{"redis-url", `"tcp"`}},
		{"redis cluster without a url", append([]string{"-redis-cluster"}, prod...), nil, []string{"redis-cluster", "redis-url"}},
		{"redis cluster url with a database", append([]string{"-redis-cluster", "-redis-url", "redis://:pw@h1:7000/0?addr=h2:7001"}, prod...), nil,
			[]string{"redis-url", "no database", `"0"`}},
		{"redis cluster addr without a port", append([]string{"-redis-cluster", "-redis-url", "redis://h1:7000?addr=h2"}, prod...), nil,
			[]string{"redis-url", `addr="h2"`, "host:port"}},
		{"redis cluster addr without a host", append([]string{"-redis-cluster", "-redis-url", "redis://h1:7000?addr=:7001"}, prod...), nil,
			[]string{"redis-url", `addr=":7001"`}},
		{"redis cluster addr with a bad port", append([]string{"-redis-cluster", "-redis-url", "redis://h1:7000?addr=h2:7001&addr=h3:70000"}, prod...), nil,
			[]string{"redis-url", "addr=h3:70000", "port"}},
		{"redis cluster url with a bad port", append([]string{"-redis-cluster", "-redis-url", "redis://h1:0?addr=h2:7001"}, prod...), nil,
			[]string{"redis-url", "port"}},
		{"redis cluster url with another scheme", append([]string{"-redis-cluster", "-redis-url", "http://h1:7000?addr=h2:7001"}, prod...), nil,
			[]string{"redis-url", `"http"`, "addr=host2"}},
		{"redis cluster url with a bad query", append([]string{"-redis-cluster", "-redis-url", "redis://h1:7000?addr=h2:7001;x"}, prod...), nil,
			[]string{"redis-url", "query"}},
		{"redis cluster from env, not a bool", prod, map[string]string{"LIVEFORUM_REDIS_URL": "redis://h1:7000", "LIVEFORUM_REDIS_CLUSTER": "maybe"},
			[]string{"LIVEFORUM_REDIS_CLUSTER"}},
		{"cluster url without redis-cluster", append([]string{"-redis-url", "redis://h1:7000?addr=h2:7001"}, prod...), nil,
			[]string{"redis-url", "addr=", "redis-cluster"}},
		{"redis prefix with a hash tag", append([]string{"-redis-prefix", "lf:{x}:"}, prod...), nil, []string{"redis-prefix"}},
		{"empty redis prefix", append([]string{"-redis-prefix", ""}, prod...), nil, []string{"redis-prefix"}},
		{"node id with a space", append([]string{"-node-id", "node a"}, prod...), nil, []string{"node-id"}},
		{"node id too long", append([]string{"-node-id", strings.Repeat("n", 65)}, prod...), nil, []string{"node-id"}},
		{"media udp address without a port", append([]string{"-ice-udp-addr", "7881"}, prod...), nil, []string{"ice-udp-addr", "7881"}},
		{"media tcp address with a bad port", append([]string{"-ice-tcp-addr", ":99999"}, prod...), nil, []string{"ice-tcp-addr", "99999"}},
		{"bad cidr", append([]string{"-ice-ips", "10.0.0.0/33"}, prod...), nil, []string{"ice-ips", "10.0.0.0/33", "10.0.0.0/8"}},
		{"bad cidr from env", prod, map[string]string{"LIVEFORUM_ICE_IPS": "127.0.0.1/8, lan"}, []string{"ice-ips", `"lan"`}},
		{"unknown interface", append([]string{"-ice-interfaces", "lo,eth-nowhere"}, prod...), nil, []string{"ice-interfaces", "eth-nowhere", "lo"}},
		{"bad public ip", append([]string{"-ice-public-ips", "203.0.113.7,forum.example.org"}, prod...), nil, []string{"ice-public-ips", "forum.example.org"}},
		{"unspecified public ip", append([]string{"-ice-public-ips", "0.0.0.0"}, prod...), nil, []string{"ice-public-ips"}},
		{"turn url as stun server", append([]string{"-stun-servers", "turn:turn.example.org"}, prod...), nil, []string{"stun-servers", "turn:turn.example.org"}},
		{"stun server without scheme", append([]string{"-stun-servers", "stun.example.org:3478"}, prod...), nil, []string{"stun-servers"}},
		{"turn server with a bad transport", append([]string{"-turn-servers", "turn:t.example.org?transport=sctp", "-turn-username", "u", "-turn-credential", "p"}, prod...), nil,
			[]string{"turn-servers", "transport=sctp"}},
		{"turn server with a quote", append([]string{"-turn-servers", `turn:t.example.org">`, "-turn-username", "u", "-turn-credential", "p"}, prod...), nil,
			[]string{"turn-servers"}},
		{"turn without credentials", append([]string{"-turn-servers", "turn:t.example.org:3478"}, prod...), nil, []string{"turn-username", "turn-credential"}},
		{"turn credentials without servers", append([]string{"-turn-username", "u", "-turn-credential", "p"}, prod...), nil, []string{"turn-servers is empty"}},
		{"tiny bitrate", append([]string{"-media-max-bitrate", "1000"}, prod...), nil, []string{"media-max-bitrate"}},
		{"no publishers", append([]string{"-media-max-publishers", "0"}, prod...), nil, []string{"media-max-publishers"}},
		{"media not a bool", prod, map[string]string{"LIVEFORUM_MEDIA": "sometimes"}, []string{"LIVEFORUM_MEDIA"}},
		{"every error at once", []string{"-history-size", "5", "-log-level", "loud", "-max-conns", "0"}, nil,
			[]string{"history-size", "log-level", "max-conns"}},
	} {
		_, err := parseConfig(c.args, c.env)
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", c.name, err, w)
			}
		}
	}
	if _, err := parseConfig([]string{"-h"}, nil); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

// Without a Redis URL the node uses the in-memory broker; the Redis settings come from flags or their
// environment twins, and a node without a configured id gets one of its own.
func TestRedisAndNodeSettings(t *testing.T) {
	cfg, err := parseConfig(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RedisURL != "" || brokerKind(cfg) != "memory" || cfg.RedisPrefix != "lf:" {
		t.Fatalf("defaults: url %q kind %q prefix %q", cfg.RedisURL, brokerKind(cfg), cfg.RedisPrefix)
	}
	if !validNodeID(cfg.NodeID) {
		t.Fatalf("generated node id %q is not valid", cfg.NodeID)
	}
	other, _ := parseConfig(nil, nil)
	if other.NodeID == cfg.NodeID {
		t.Fatalf("two nodes made up the same id %q", cfg.NodeID)
	}

	cfg, err = parseConfig([]string{"-node-id", "node-b.eu_1"}, map[string]string{
		"LIVEFORUM_REDIS_URL":    "rediss://user:pw@redis.example.org:6380/2",
		"LIVEFORUM_REDIS_PREFIX": "forum-a:",
		"LIVEFORUM_NODE_ID":      "from-env",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RedisURL != "rediss://user:pw@redis.example.org:6380/2" || cfg.RedisPrefix != "forum-a:" ||
		cfg.NodeID != "node-b.eu_1" || brokerKind(cfg) != "redis" {
		t.Fatalf("config: url %q prefix %q node %q", cfg.RedisURL, cfg.RedisPrefix, cfg.NodeID)
	}
	for _, ok := range []string{"redis://127.0.0.1:6379", "redis://h", "redis://:pw@h:1/0", "redis://[::1]:6379/15", "rediss://h:6380",
		"redis://h:6379?dial_timeout=3s"} {
		if err := checkRedisURL(ok, false); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	// A refused URL's error does not carry the password.
	_, err = parseConfig([]string{"-redis-url", "redis://u:hunter2@:6379"}, nil)
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error %v", err)
	}
	if got := redactedRedisURL("redis://u:hunter2@h:6379/1"); strings.Contains(got, "hunter2") || !strings.Contains(got, "h:6379/1") {
		t.Fatalf("redacted %q", got)
	}
}

// With -redis-cluster (or LIVEFORUM_REDIS_CLUSTER) the Redis URL names one or more nodes of a Redis Cluster:
// the host of the URL and addr=host:port entries of its query, with no database; the broker is
// "redis-cluster".
func TestRedisClusterSettings(t *testing.T) {
	cfg, err := parseConfig(nil, map[string]string{
		"LIVEFORUM_REDIS_URL":     "rediss://user:pw@10.0.0.1:7000?addr=10.0.0.2:7001&addr=redis-3.internal:7002",
		"LIVEFORUM_REDIS_CLUSTER": "true",
	})
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.RedisCluster || brokerKind(cfg) != "redis-cluster" {
		t.Fatalf("cluster from the environment: cluster %v kind %q", cfg.RedisCluster, brokerKind(cfg))
	}
	cfg, err = parseConfig([]string{"-redis-cluster", "-redis-url", "redis://:pw@h1:7000"}, nil)
	if err != nil || !cfg.RedisCluster || brokerKind(cfg) != "redis-cluster" {
		t.Fatalf("cluster from flags: cluster %v kind %q, %v", cfg.RedisCluster, brokerKind(cfg), err)
	}
	// A flag wins over its variable, for a bool too.
	cfg, err = parseConfig([]string{"-redis-cluster=false", "-redis-url", "redis://h:6379/2"}, map[string]string{"LIVEFORUM_REDIS_CLUSTER": "1"})
	if err != nil || cfg.RedisCluster || brokerKind(cfg) != "redis" {
		t.Fatalf("-redis-cluster=false: cluster %v kind %q, %v", cfg.RedisCluster, brokerKind(cfg), err)
	}
	for _, ok := range []string{
		"redis://127.0.0.1:7000",
		"redis://h1",
		"redis://h1:7000/",
		"redis://:pw@h1:7000?addr=h2:7001&addr=h3:7002",
		"redis://user:pw@h1:7000?addr=h2:7001&dial_timeout=3s&max_redirects=5",
		"rediss://:pw@[::1]:7000?addr=[::1]:7001",
	} {
		if err := checkRedisURL(ok, true); err != nil {
			t.Errorf("cluster URL %s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{
		"redis://h1:7000/0", "redis://h1:7000/3", "redis://h1:7000?addr=h2", "redis://h1:7000?addr=h2:x",
		"redis://h1:7000?addr=", "redis:///?addr=h2:7001", "tcp://h1:7000",
	} {
		if err := checkRedisURL(bad, true); err == nil {
			t.Errorf("cluster URL %s accepted", bad)
		}
	}
	// A database number is fine for one Redis, not for a cluster; addr= only for a cluster.
	if err := checkRedisURL("redis://h:6379/3", false); err != nil {
		t.Errorf("one Redis with a database: %v", err)
	}
	if err := checkRedisURL("redis://h:6379?addr=h2:6379", false); err == nil {
		t.Error("one Redis with addr= accepted")
	}
	// A refused cluster URL's error does not carry the password.
	_, err = parseConfig([]string{"-redis-cluster", "-redis-url", "redis://u:hunter2@h1:7000/1?addr=h2:7001"}, nil)
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error %v", err)
	}
	if got := redactedRedisURL("redis://u:hunter2@h1:7000?addr=h2:7001"); strings.Contains(got, "hunter2") || !strings.Contains(got, "addr=h2:7001") {
		t.Fatalf("redacted %q", got)
	}
}

// Media is on by default, on UDP :7881 with no candidate filter; every media setting has its environment
// twin, and the settings become the SFU's ICE configuration.
func TestMediaSettings(t *testing.T) {
	prod := []string{"-secret", testSecret, "-admin-key", testAdminKey}
	cfg, err := parseConfig(prod, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Media || cfg.ice.UDPAddr != ":7881" || cfg.ice.TCPAddr != "" || len(cfg.ice.Interfaces) != 0 || len(cfg.ice.IPs) != 0 ||
		len(cfg.ice.Servers) != 0 || cfg.MediaMaxBitrate != 3_000_000 || cfg.MediaMaxPublishers != 16 {
		t.Fatalf("media defaults: %+v", cfg)
	}
	cfg, err = parseConfig(prod, map[string]string{
		"LIVEFORUM_ICE_UDP_ADDR":         "127.0.0.1:0",
		"LIVEFORUM_ICE_TCP_ADDR":         ":7882",
		"LIVEFORUM_ICE_INTERFACES":       "lo",
		"LIVEFORUM_ICE_IPS":              "10.0.0.0/8, 127.0.0.1,::1",
		"LIVEFORUM_ICE_PUBLIC_IPS":       "203.0.113.7",
		"LIVEFORUM_STUN_SERVERS":         "stun:stun.example.org:3478,stun:stun2.example.org",
		"LIVEFORUM_TURN_SERVERS":         "turn:turn.example.org:3478?transport=udp, turns:turn.example.org:5349?transport=tcp",
		"LIVEFORUM_TURN_USERNAME":        "forum",
		"LIVEFORUM_TURN_CREDENTIAL":      "s3cret",
		"LIVEFORUM_MEDIA_MAX_BITRATE":    "2500000",
		"LIVEFORUM_MEDIA_MAX_PUBLISHERS": "4",
	})
	if err != nil {
		t.Fatal(err)
	}
	ice := cfg.ice
	var nets []string
	for _, n := range ice.IPs {
		nets = append(nets, n.String())
	}
	if ice.UDPAddr != "127.0.0.1:0" || ice.TCPAddr != ":7882" || strings.Join(ice.Interfaces, ",") != "lo" ||
		strings.Join(nets, ",") != "10.0.0.0/8,127.0.0.1/32,::1/128" || strings.Join(ice.NAT1To1IPs, ",") != "203.0.113.7" ||
		cfg.MediaMaxBitrate != 2_500_000 || cfg.MediaMaxPublishers != 4 {
		t.Fatalf("media from the environment: %+v", ice)
	}
	if len(ice.Servers) != 3 || ice.Servers[0].URLs[0] != "stun:stun.example.org:3478" || ice.Servers[1].URLs[0] != "stun:stun2.example.org" ||
		strings.Join(ice.Servers[2].URLs, " ") != "turn:turn.example.org:3478?transport=udp turns:turn.example.org:5349?transport=tcp" ||
		ice.Servers[2].Username != "forum" || ice.Servers[2].Credential != "s3cret" || ice.Servers[0].Username != "" {
		t.Fatalf("ICE servers: %+v", ice.Servers)
	}
	// With media off its settings are not looked at.
	cfg, err = parseConfig(append([]string{"-media=false", "-ice-ips", "nonsense"}, prod...), nil)
	if err != nil || cfg.Media {
		t.Fatalf("-media=false: media %v, %v", cfg.Media, err)
	}
	// Development mode with no filter offers every interface, loopback included, so one machine just works.
	cfg, err = parseConfig(nil, nil)
	if err != nil || !cfg.devMode || !slices.Contains(cfg.ice.Interfaces, "lo") {
		t.Fatalf("dev mode interfaces %v, %v", cfg.ice.Interfaces, err)
	}
	cfg, err = parseConfig([]string{"-ice-ips", "192.0.2.0/24"}, nil)
	if err != nil || len(cfg.ice.Interfaces) != 0 {
		t.Fatalf("dev mode with -ice-ips: interfaces %v, %v", cfg.ice.Interfaces, err)
	}
}

// serve builds the SFU and serves WHIP and WHEP with it; with -media=false they are not found.
func TestServeMedia(t *testing.T) {
	post := func(r *running, path string) int {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+r.addr+path, strings.NewReader("v=0"))
		req.Header.Set("Content-Type", "application/sdp")
		resp, err := r.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	on := startServe(t, "-secret", testSecret, "-admin-key", testAdminKey)
	if code := post(on, "/whip/lobby"); code != http.StatusUnauthorized {
		t.Fatalf("WHIP without a token: %d, want 401", code)
	}
	off := startServe(t, "-secret", testSecret, "-admin-key", testAdminKey, "-media=false")
	if code := post(off, "/whip/lobby"); code != http.StatusNotFound {
		t.Fatalf("WHIP with media off: %d, want 404", code)
	}
	for _, r := range []*running{on, off} {
		if err := r.stop(t); err != nil {
			t.Fatal(err)
		}
	}
}
