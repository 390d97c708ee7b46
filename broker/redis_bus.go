package broker

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Leases and node inboxes: what nodes need to share a room's media (one node holds a room's SFU; the
// others relay their members' signalling to it).

// leaseScript takes or renews a lease. KEYS: the lease. ARGV: holder, TTL in ms. Returns the holder.
var leaseScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return cur
`)

func (b *Redis) leaseKey(name string) string { return b.prefix + "lease:" + name }

// inboxChannel is a node's inbox. On a cluster it is a sharded channel in a slot of its own.
func (b *Redis) inboxChannel(node string) string { return b.prefix + "{inbox:" + node + "}" }

// Lease implements Broker with SET NX PX (or PEXPIRE by the holder) in one script.
func (b *Redis) Lease(ctx context.Context, name, holder string, ttl time.Duration) (string, error) {
	if err := b.checkOpen(); err != nil {
		return "", err
	}
	h, err := leaseScript.Run(ctx, b.client, []string{b.leaseKey(name)}, holder, max(ttl.Milliseconds(), 1)).Text()
	if err != nil {
		return "", redisErr(fmt.Sprintf("lease %q", name), err)
	}
	return h, nil
}

// Tell implements Broker: PUBLISH (SPUBLISH on a cluster) to the node's inbox channel.
func (b *Redis) Tell(ctx context.Context, node string, msg []byte) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	var err error
	if b.cluster != nil {
		err = b.cluster.SPublish(ctx, b.inboxChannel(node), msg).Err()
	} else {
		err = b.client.Publish(ctx, b.inboxChannel(node), msg).Err()
	}
	if err != nil {
		return redisErr("tell "+node, err)
	}
	return nil
}

// Inbox implements Broker: a pub/sub connection of its own, read by a goroutine of its own (go-redis
// subscribes it again after a lost connection; what was sent meanwhile is lost, as volatile messages are).
func (b *Redis) Inbox(ctx context.Context, node string, h func(msg []byte)) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	var ps *redis.PubSub
	if b.cluster != nil {
		ps = b.cluster.SSubscribe(b.ctx, b.inboxChannel(node))
	} else {
		ps = b.client.Subscribe(b.ctx, b.inboxChannel(node))
	}
	if _, err := ps.Receive(ctx); err != nil { // the subscription's confirmation
		_ = ps.Close()
		return redisErr("inbox", err)
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		_ = ps.Close()
		return ErrClosed
	}
	b.inboxes = append(b.inboxes, ps)
	b.wg.Add(1)
	b.mu.Unlock()
	go func() {
		defer b.wg.Done()
		for m := range ps.Channel() {
			h([]byte(m.Payload))
		}
	}()
	return nil
}
