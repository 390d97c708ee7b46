package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

var _ Broker = (*Redis)(nil)

// RedisOptions configure a Redis broker. Only URL is required; every other zero value means its default.
type RedisOptions struct {
	// URL is redis://[[user]:password@]host:port[/db] or rediss://… for TLS, as redis.ParseURL reads it.
	// With Cluster it names one or more nodes of the cluster, as redis.ParseClusterURL reads it:
	// redis://[[user]:password@]host:port?addr=host:port&addr=host:port (rediss:// for TLS, no db); the
	// client learns the other nodes from the cluster.
	URL string
	// Cluster selects Redis Cluster (Redis 7.0 or later, for sharded pub/sub). See Redis.
	Cluster bool
	// HistorySize is about how many events each room's stream keeps (XADD MAXLEN ~: Redis trims whole
	// stream nodes, so it may keep somewhat more); 0 means 10000. It also caps History's Limit.
	HistorySize int
	// KeyTTL is how long a room's log keys live after its last Append, so abandoned rooms disappear;
	// 0 means 24h. Room records (SaveRoom) never expire.
	KeyTTL time.Duration
	// Prefix starts every key and channel name; "" means "lf:". It must not contain '{' or '}'.
	Prefix string
	// Logger receives what the broker cannot return to a caller (a subscriber's failed catch-up);
	// nil means slog.Default(). (go-redis's own lines go to slog.Default() at debug level.)
	Logger *slog.Logger
	// AppendHold is how long an append waits for Redis to come back when it cannot reach it (the append
	// certainly did not run, so trying again cannot log it twice): a short outage, such as a restart,
	// delays messages instead of failing them. 0 means 2 s; negative means no waiting.
	AppendHold time.Duration

	// dial, when set, opens the client's connections (tests break them with it).
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Redis is the broker for several nodes sharing one Redis. A room's log is a Redis Stream whose entry IDs
// are "<offset>-0", beside a hash holding the log's epoch and top offset; one Lua script appends and
// publishes, so every node sees the events in offset order. Each node holds one pub/sub connection; one
// dispatcher goroutine reads it, notices gaps by offset (pub/sub is at-most-once, and a reconnect loses
// what was published meanwhile) and fills them from the stream before delivering further.
//
// Keys of a room share the hash tag {room}: <prefix>{room}:log (stream), <prefix>{room}:meta (hash: epoch,
// top), <prefix>{room}:state (hash); the room's channel is <prefix>{room}:ch. Room records live in the hash
// <prefix>rooms, node heartbeats in the keys <prefix>node:<node> (on a cluster <prefix>node:{nodes}:<node>,
// all in one slot: see nodeKey).
//
// On a Redis Cluster (RedisOptions.Cluster) a room's keys and channel are in one hash slot, so the script
// runs on the slot's master, and it publishes with SPUBLISH: sharded pub/sub, which only the slot's shard
// carries. Sharded subscriptions of different slots cannot share a connection, so each subscribed room has
// its own pub/sub connection to its slot's master: a node holds one connection per room it serves, besides
// its command connections. The same dispatcher reads them all. When Redis drops a room's subscription (its
// slot moved to another master) or does not confirm it within a few seconds, the broker reloads the
// cluster's slot map and opens the room's connection again, on the slot's new master, and fills what it
// missed from the stream.
//
// Handlers are called from the dispatcher goroutine only, one call at a time across all rooms, so a slow
// handler delays every room of the node. A handler must not call Subscribe (it waits for a confirmation
// that only the dispatcher can process) nor Unsubscribe its own room.
type Redis struct {
	size   int
	hold   time.Duration // RedisOptions.AppendHold
	ttlMS  int64
	prefix string
	log    *slog.Logger

	client  redis.UniversalClient // a *redis.Client, or the *redis.ClusterClient below
	cluster *redis.ClusterClient  // nil unless on a Redis Cluster
	inboxes []*redis.PubSub       // this node's inbox subscriptions (Inbox); guarded by mu
	publish string                // the command the append script publishes with: PUBLISH or SPUBLISH
	ps      *redis.PubSub         // not on a cluster: the node's one pub/sub connection
	in      chan shardMsg         // on a cluster: what the rooms' pub/sub connections receive

	ctx    context.Context // cancelled by Close; bounds the dispatcher's Redis calls
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	subs   map[string]*redisSub // by channel name
}

// appendScript appends one event and publishes it, when the condition on the room's state holds.
// KEYS: meta, log, state. ARGV: epoch for a new log, data, MAXLEN, TTL in ms, channel, state key ("" = no
// update), condition ("" | "eq" | "ne" | "present"), expected value, new value, "1" to delete the key,
// "PUBLISH" | "SPUBLISH" (on a cluster). Returns {epoch, offset, "1"} or, when the condition failed,
// {epoch, top, "0"}. It is never sent twice (see evalOnce).
const appendScriptSrc = `
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2], KEYS[3])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'top', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
local key = ARGV[6]
if key ~= '' then
  local cur = redis.call('HGET', KEYS[3], key)
  local cond = ARGV[7]
  if (cond == 'eq' and cur ~= ARGV[8]) or (cond == 'ne' and cur == ARGV[8]) or (cond == 'present' and not cur) then
    return {epoch, redis.call('HGET', KEYS[1], 'top'), '0'}
  end
  if ARGV[10] == '1' then
    redis.call('HDEL', KEYS[3], key)
  else
    redis.call('HSET', KEYS[3], key, ARGV[9])
  end
end
local top = string.format('%d', redis.call('HINCRBY', KEYS[1], 'top', 1))
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], top .. '-0', 'd', ARGV[2])
redis.call(ARGV[11], ARGV[5], epoch .. '|' .. top .. '|' .. ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return {epoch, top, '1'}
`

var appendScript = redis.NewScript(appendScriptSrc)

// readScript reads a log's position and, atomically with it, a range of its stream or its state.
// KEYS: meta, log, state. ARGV: epoch to create when the log has none ("" = do not create, answer epoch
// ""), TTL in ms, "XRANGE" | "XREVRANGE" | "STATE" | "" (position only), start, end, count.
// Returns {epoch, top, entries} where entries are stream entries or, for STATE, the state's HGETALL.
var readScript = redis.NewScript(`
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  if ARGV[1] == '' then return {'', '0', {}} end
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2], KEYS[3])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'top', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
local top = redis.call('HGET', KEYS[1], 'top') or '0'
local entries = {}
if ARGV[3] == 'STATE' then
  entries = redis.call('HGETALL', KEYS[3])
elseif ARGV[3] ~= '' then
  entries = redis.call(ARGV[3], KEYS[2], ARGV[4], ARGV[5], 'COUNT', ARGV[6])
end
return {epoch, top, entries}
`)

// NewRedis connects to Redis (checked with a PING bounded by ctx) and starts the broker's dispatcher.
// Close stops it.
func NewRedis(ctx context.Context, opts RedisOptions) (*Redis, error) {
	if opts.HistorySize <= 0 {
		opts.HistorySize = 10000
	}
	if opts.KeyTTL <= 0 {
		opts.KeyTTL = 24 * time.Hour
	}
	if opts.Prefix == "" {
		opts.Prefix = "lf:"
	}
	if strings.ContainsAny(opts.Prefix, "{}") {
		return nil, fmt.Errorf("broker: redis: prefix %q contains '{' or '}'", opts.Prefix)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	routeRedisLogs()
	if opts.AppendHold == 0 {
		opts.AppendHold = 2 * time.Second
	}
	b := &Redis{
		hold:    max(opts.AppendHold, 0),
		size:    opts.HistorySize,
		ttlMS:   max(opts.KeyTTL.Milliseconds(), 1),
		prefix:  opts.Prefix,
		log:     opts.Logger,
		publish: "PUBLISH",
		subs:    map[string]*redisSub{},
	}
	ro, co, err := clientOptions(opts)
	if err != nil {
		return nil, err
	}
	if co != nil {
		b.cluster = redis.NewClusterClient(co)
		b.client, b.publish = b.cluster, "SPUBLISH"
		err = b.cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			if err := c.Ping(ctx).Err(); err != nil {
				return fmt.Errorf("%s: %w", c.Options().Addr, err)
			}
			return nil
		})
		if err != nil {
			_ = b.cluster.Close()
			return nil, fmt.Errorf("broker: redis: cluster %s: ping every master: %w", strings.Join(co.Addrs, ","), err)
		}
	} else {
		client := redis.NewClient(ro)
		if err := client.Ping(ctx).Err(); err != nil {
			_ = client.Close()
			return nil, fmt.Errorf("broker: redis: ping %s: %w", ro.Addr, err)
		}
		b.client = client
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	var msgs <-chan any
	if b.cluster == nil {
		b.ps = b.client.Subscribe(b.ctx)
		msgs = b.ps.ChannelWithSubscriptions(redis.WithChannelSize(1024))
	} else {
		b.in = make(chan shardMsg, 1024)
	}
	b.wg.Add(1)
	go b.dispatch(msgs)
	return b, nil
}

// clientOptions reads opts.URL: the options of a client of one Redis, or (with opts.Cluster) of a
// cluster client.
func clientOptions(opts RedisOptions) (*redis.Options, *redis.ClusterOptions, error) {
	if !opts.Cluster {
		ro, err := redis.ParseURL(opts.URL)
		if err != nil {
			return nil, nil, fmt.Errorf("broker: redis: %w", err)
		}
		// A command whose reply was lost may have run: retrying an Append could log the event twice.
		// Callers get the error instead.
		ro.MaxRetries = -1
		if opts.dial != nil {
			ro.Dialer = opts.dial
		}
		return ro, nil, nil
	}
	co, err := redis.ParseClusterURL(opts.URL)
	if err != nil {
		return nil, nil, fmt.Errorf("broker: redis: cluster: %w", err)
	}
	if p := urlPath(opts.URL); p != "" && p != "/" && p != "/0" {
		return nil, nil, fmt.Errorf("broker: redis: cluster: a cluster has no database %q", strings.TrimPrefix(p, "/"))
	}
	// As above, for the nodes' clients. The cluster client itself retries a command after a network error
	// (up to MaxRedirects times, which also bounds MOVED and ASK redirects): harmless for every command
	// but the append script, which it follows through redirects (it did not run) but never retries
	// (see evalOnce).
	co.MaxRetries = -1
	if opts.dial != nil {
		co.Dialer = opts.dial
	}
	return nil, co, nil
}

// urlPath returns the path of a URL, "" if it does not parse.
func urlPath(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	return u.Path
}

// noRetryCmd is a command that go-redis must not send again after a network error: its reply was lost,
// but it may have run.
type noRetryCmd struct{ *redis.Cmd }

func (noRetryCmd) NoRetry() bool { return true }

// evalOnce runs a script that must run at most once per call: EVALSHA, or EVAL when Redis does not have the
// script cached (NOSCRIPT: it did not run). Neither is retried after a network error, on one node or on a
// cluster (where MaxRetries does not cover it: the cluster client retries up to MaxRedirects times, unless
// the command says NoRetry); MOVED and ASK are still followed.
func (b *Redis) evalOnce(ctx context.Context, s *redis.Script, src string, keys []string, args ...any) *redis.Cmd {
	run := func(name, script string) *redis.Cmd {
		a := make([]any, 0, 3+len(keys)+len(args))
		a = append(a, name, script, len(keys))
		for _, k := range keys {
			a = append(a, k)
		}
		a = append(a, args...)
		cmd := redis.NewCmd(ctx, a...)
		_ = b.client.Process(ctx, noRetryCmd{cmd})
		return cmd
	}
	cmd := run("evalsha", s.Hash())
	if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
		cmd = run("eval", src)
	}
	return cmd
}

// keys returns the names of a room's stream, meta hash and channel.
func (b *Redis) keys(room string) (log, meta, channel string) {
	tag := b.prefix + "{" + room + "}"
	return tag + ":log", tag + ":meta", tag + ":ch"
}

// stateKey returns the name of a room's state hash.
func (b *Redis) stateKey(room string) string { return b.prefix + "{" + room + "}:state" }

// nodeKey returns the name of a node's heartbeat key. On a cluster every heartbeat is in one slot (hash
// tag {nodes}), so one master holds them all: a master that goes down stops every node's heartbeat or
// none, as the outage of one Redis does. Spread over the masters, the death of one would make the nodes
// whose heartbeats it held look dead to the others (package rooms trusts an expired heartbeat once its
// own have held for a whole TTL), and their members would be logged as leaving while still connected.
func (b *Redis) nodeKey(node string) string {
	if b.cluster != nil {
		return b.prefix + "node:{nodes}:" + node
	}
	return b.prefix + "node:" + node
}

func (b *Redis) roomsKey() string { return b.prefix + "rooms" }

func (b *Redis) checkOpen() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	return nil
}

// Append implements Broker.
func (b *Redis) Append(ctx context.Context, room string, data []byte) (Position, error) {
	pos, _, err := b.AppendIf(ctx, room, data, Update{})
	return pos, err
}

// condArg is how appendScript names a condition.
var condArg = map[Cond]string{Always: "", IfEqual: "eq", IfNotEqual: "ne", IfPresent: "present"}

// AppendIf implements Broker.
func (b *Redis) AppendIf(ctx context.Context, room string, data []byte, u Update) (Position, bool, error) {
	if err := b.checkOpen(); err != nil {
		return Position{}, false, err
	}
	cond, ok := condArg[u.Cond]
	if !ok {
		return Position{}, false, fmt.Errorf("broker: redis: append to %q: unknown condition %d", room, u.Cond)
	}
	del := "0"
	if u.Value == nil {
		del = "1"
	}
	logKey, metaKey, channel := b.keys(room)
	var res []string
	var err error
	for start := time.Now(); ; {
		res, err = b.evalOnce(ctx, appendScript, appendScriptSrc, []string{metaKey, logKey, b.stateKey(room)},
			newEpoch(), data, b.size, b.ttlMS, channel, u.Key, cond, u.Expect, u.Value, del, b.publish).StringSlice()
		if err == nil || !notRun(err) || time.Since(start) >= b.hold || b.sleep(ctx, holdRetry) != nil {
			break
		}
	}
	if err != nil {
		return Position{}, false, redisErr(fmt.Sprintf("append to %q", room), err)
	}
	if len(res) != 3 {
		return Position{}, false, fmt.Errorf("broker: redis: append to %q: unexpected reply %q", room, res)
	}
	off, err := strconv.ParseUint(res[1], 10, 64)
	if err != nil {
		return Position{}, false, fmt.Errorf("broker: redis: append to %q: offset: %w", room, err)
	}
	return Position{Epoch: res[0], Offset: off}, res[2] == "1", nil
}

// State implements Broker.
func (b *Redis) State(ctx context.Context, room string) (Position, map[string][]byte, error) {
	if err := b.checkOpen(); err != nil {
		return Position{}, nil, err
	}
	logKey, metaKey, _ := b.keys(room)
	v, err := readScript.Run(ctx, b.client, []string{metaKey, logKey, b.stateKey(room)},
		newEpoch(), b.ttlMS, "STATE", "", "", 0).Slice()
	if err != nil {
		return Position{}, nil, redisErr(fmt.Sprintf("state of %q", room), err)
	}
	pos, err := readPosition(v)
	if err != nil {
		return Position{}, nil, fmt.Errorf("broker: redis: state of %q: %w", room, err)
	}
	kv, _ := v[2].([]any)
	st := make(map[string][]byte, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		k, _ := kv[i].(string)
		val, _ := kv[i+1].(string)
		st[k] = []byte(val)
	}
	return pos, st, nil
}

// readPosition reads the {epoch, top, …} head of readScript's reply.
func readPosition(v []any) (Position, error) {
	if len(v) != 3 {
		return Position{}, fmt.Errorf("unexpected reply of %d elements", len(v))
	}
	e, _ := v[0].(string)
	topS, _ := v[1].(string)
	top, err := strconv.ParseUint(topS, 10, 64)
	if err != nil {
		return Position{}, fmt.Errorf("top: %w", err)
	}
	return Position{Epoch: e, Offset: top}, nil
}

// Heartbeat implements Broker: a key that expires after ttl.
func (b *Redis) Heartbeat(ctx context.Context, node string, ttl time.Duration) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	if err := b.client.Set(ctx, b.nodeKey(node), "1", ttl).Err(); err != nil {
		return redisErr("heartbeat", err)
	}
	return nil
}

// Alive implements Broker.
func (b *Redis) Alive(ctx context.Context, nodes []string) (map[string]bool, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	cmds := make([]*redis.IntCmd, len(nodes))
	_, err := b.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, n := range nodes {
			cmds[i] = p.Exists(ctx, b.nodeKey(n))
		}
		return nil
	})
	if err != nil {
		return nil, redisErr("alive", err)
	}
	out := make(map[string]bool, len(nodes))
	for i, n := range nodes {
		out[n] = cmds[i].Val() == 1
	}
	return out, nil
}

// read runs readScript: the log's position and, when cmd is set, up to count entries from start to end.
// With create, a log without an epoch gets one (the epoch its first Append will use).
func (b *Redis) read(ctx context.Context, room string, create bool, cmd, start, end string, count int) (Position, []Event, error) {
	logKey, metaKey, _ := b.keys(room)
	epoch := ""
	if create {
		epoch = newEpoch()
	}
	v, err := readScript.Run(ctx, b.client, []string{metaKey, logKey, b.stateKey(room)},
		epoch, b.ttlMS, cmd, start, end, count).Slice()
	if err != nil {
		return Position{}, nil, redisErr(fmt.Sprintf("read %q", room), err)
	}
	pos, err := readPosition(v)
	if err != nil {
		return Position{}, nil, fmt.Errorf("broker: redis: read %q: %w", room, err)
	}
	evs, err := parseEntries(v[2])
	if err != nil {
		return Position{}, nil, fmt.Errorf("broker: redis: read %q: %w", room, err)
	}
	return pos, evs, nil
}

// parseEntries reads XRANGE entries [[id, [field, value, …]], …] whose IDs are "<offset>-0" and whose
// field d holds the event.
func parseEntries(v any) ([]Event, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("stream entries: unexpected %T", v)
	}
	evs := make([]Event, 0, len(list))
	for _, item := range list {
		entry, ok := item.([]any)
		if !ok || len(entry) != 2 {
			return nil, fmt.Errorf("stream entry: unexpected %v", item)
		}
		id, _ := entry[0].(string)
		ms, _, _ := strings.Cut(id, "-")
		off, err := strconv.ParseUint(ms, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("stream entry id %q: %w", id, err)
		}
		fields, _ := entry[1].([]any)
		ev := Event{Offset: off}
		for i := 0; i+1 < len(fields); i += 2 {
			if f, _ := fields[i].(string); f == "d" {
				d, _ := fields[i+1].(string)
				ev.Data = []byte(d)
			}
		}
		evs = append(evs, ev)
	}
	return evs, nil
}

func streamID(off uint64) string { return strconv.FormatUint(off, 10) + "-0" }

// History implements Broker. A room without a log gets its epoch here, so its first Append continues
// from the position History reported.
func (b *Redis) History(ctx context.Context, room string, opts HistoryOptions) (History, error) {
	if err := b.checkOpen(); err != nil {
		return History{}, err
	}
	limit := opts.Limit
	if limit <= 0 || limit > b.size {
		limit = b.size
	}
	if opts.Since != nil {
		return b.historySince(ctx, room, *opts.Since, limit)
	}
	return b.historyTail(ctx, room, limit, opts.Match)
}

func (b *Redis) historySince(ctx context.Context, room string, since Position, limit int) (History, error) {
	cmd, start := "XRANGE", ""
	if since.Offset == math.MaxUint64 {
		cmd = "" // beyond any top; only the position is needed
	} else {
		start = streamID(since.Offset + 1)
	}
	top, evs, err := b.read(ctx, room, true, cmd, start, "+", limit+1)
	if err != nil {
		return History{}, err
	}
	h := History{Top: top}
	if since.Epoch != top.Epoch || since.Offset > top.Offset {
		return h, fmt.Errorf("%w: epoch %q offset %d, log is at epoch %q offset %d", ErrHistoryGone, since.Epoch, since.Offset, top.Epoch, top.Offset)
	}
	missed := top.Offset - since.Offset
	if missed > uint64(limit) {
		return h, fmt.Errorf("%w: %d events missed, more than %d", ErrHistoryGone, missed, limit)
	}
	// The stream holds consecutive offsets up to top, minus what MAXLEN trimmed from the front.
	if missed > 0 && (uint64(len(evs)) != missed || evs[0].Offset != since.Offset+1) {
		return h, fmt.Errorf("%w: offset %d trimmed", ErrHistoryGone, since.Offset+1)
	}
	if missed > 0 {
		h.Events = evs
	}
	return h, nil
}

// tailPage is how many entries historyTail reads per round trip when events are filtered.
const tailPage = 256

func (b *Redis) historyTail(ctx context.Context, room string, limit int, match func([]byte) bool) (History, error) {
	page := limit
	if match != nil {
		page = min(limit, tailPage)
	}
	// Pages after the first are read in other round trips; if the log was replaced meanwhile (another
	// epoch) the whole read starts again.
	for range 3 {
		var (
			h       History
			picked  []Event
			start   = "+"
			changed bool
		)
		for first := true; ; first = false {
			top, evs, err := b.read(ctx, room, true, "XREVRANGE", start, "-", page)
			if err != nil {
				return History{}, err
			}
			if first {
				h.Top = top
			} else if top.Epoch != h.Top.Epoch {
				changed = true
				break
			}
			for _, ev := range evs {
				if match == nil || match(ev.Data) {
					picked = append(picked, ev)
					if len(picked) == limit {
						break
					}
				}
			}
			if len(picked) == limit || len(evs) < page {
				break
			}
			start = "(" + streamID(evs[len(evs)-1].Offset)
		}
		if changed {
			continue
		}
		if len(picked) > 0 {
			h.Events = make([]Event, len(picked))
			for i, ev := range picked {
				h.Events[len(picked)-1-i] = ev
			}
		}
		return h, nil
	}
	return History{}, fmt.Errorf("broker: redis: history of %q: the log kept being replaced while read", room)
}

// RemoveLog implements Broker. Subscriptions stay; their handlers see the next epoch from offset 1.
func (b *Redis) RemoveLog(ctx context.Context, room string) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	logKey, metaKey, _ := b.keys(room)
	if err := b.client.Del(ctx, logKey, metaKey, b.stateKey(room)).Err(); err != nil {
		return redisErr(fmt.Sprintf("remove log of %q", room), err)
	}
	return nil
}

// removeIfScript deletes a room's log when nothing was appended since a position and its state is empty,
// or when it holds no event. KEYS: meta, log, state. ARGV: epoch, offset. Returns 1 if the log is gone.
var removeIfScript = redis.NewScript(`
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local top = redis.call('HGET', KEYS[1], 'top')
if redis.call('EXISTS', KEYS[3]) == 1 or (epoch and top ~= '0' and (epoch ~= ARGV[1] or top ~= ARGV[2])) then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return 1
`)

// RemoveLogIf implements Broker.
func (b *Redis) RemoveLogIf(ctx context.Context, room string, at Position) (bool, error) {
	if err := b.checkOpen(); err != nil {
		return false, err
	}
	logKey, metaKey, _ := b.keys(room)
	n, err := removeIfScript.Run(ctx, b.client, []string{metaKey, logKey, b.stateKey(room)},
		at.Epoch, strconv.FormatUint(at.Offset, 10)).Int()
	if err != nil {
		return false, redisErr(fmt.Sprintf("remove log of %q", room), err)
	}
	return n == 1, nil
}

// SaveRoom implements Broker.
func (b *Redis) SaveRoom(ctx context.Context, name string, record []byte) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	if err := b.client.HSet(ctx, b.roomsKey(), name, record).Err(); err != nil {
		return redisErr(fmt.Sprintf("save room %q", name), err)
	}
	return nil
}

// LoadRoom implements Broker.
func (b *Redis) LoadRoom(ctx context.Context, name string) ([]byte, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	r, err := b.client.HGet(ctx, b.roomsKey(), name).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%w: room %q", ErrNotFound, name)
	}
	if err != nil {
		return nil, redisErr(fmt.Sprintf("load room %q", name), err)
	}
	return r, nil
}

// ListRooms implements Broker.
func (b *Redis) ListRooms(ctx context.Context) (map[string][]byte, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	all, err := b.client.HGetAll(ctx, b.roomsKey()).Result()
	if err != nil {
		return nil, redisErr("list rooms", err)
	}
	out := make(map[string][]byte, len(all))
	for k, v := range all {
		out[k] = []byte(v)
	}
	return out, nil
}

// DeleteRoom implements Broker.
func (b *Redis) DeleteRoom(ctx context.Context, name string) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	if err := b.client.HDel(ctx, b.roomsKey(), name).Err(); err != nil {
		return redisErr(fmt.Sprintf("delete room %q", name), err)
	}
	return nil
}

// Close implements Broker: it stops the dispatcher (waiting for a handler call in progress) and closes
// the connections. Closing again does nothing.
func (b *Redis) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	subs := b.subs
	b.subs = nil
	inboxes := b.inboxes
	b.inboxes = nil
	var roomPS []*redis.PubSub
	for _, st := range subs {
		if st.ps != nil {
			roomPS = append(roomPS, st.ps)
		}
	}
	b.mu.Unlock()

	b.cancel()
	for _, st := range subs {
		st.finish(ErrClosed)
	}
	var psErr error
	if b.ps != nil {
		// Closing the PubSub closes the channel the dispatcher ranges over.
		psErr = b.ps.Close()
	}
	for _, ps := range roomPS {
		_ = ps.Close() // closes the channel its forwarder ranges over
	}
	for _, ps := range inboxes {
		_ = ps.Close() // closes the channel its reader ranges over
	}
	b.wg.Wait()
	if err := errors.Join(psErr, b.client.Close()); err != nil {
		return fmt.Errorf("broker: redis: close: %w", err)
	}
	return nil
}
