package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// unavailable reports whether an error of a Redis call means that Redis could not be reached or could not
// serve it for now (down, loading its data, a cluster without a master for the slot), rather than that
// Redis refused the command.
func unavailable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var re redis.Error
	if errors.As(err, &re) { // a reply from Redis
		for _, p := range []string{"LOADING", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "BUSY"} {
			if redis.HasErrorPrefix(err, p) {
				return true
			}
		}
		return false
	}
	return true // the network, the connection pool, a deadline
}

// notRun reports whether an error means that the command certainly did not run: it was never sent (no
// connection could be made) or Redis refused it before running anything (loading its data set; on a
// cluster, CLUSTERDOWN: a master that was restarted refuses every command for about 2 s after it answers
// again).
func notRun(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" || redis.HasErrorPrefix(err, "LOADING") ||
		redis.HasErrorPrefix(err, "CLUSTERDOWN")
}

// redisErr wraps an error of a Redis call, marking it ErrUnavailable when it is one (see unavailable).
func redisErr(what string, err error) error {
	if unavailable(err) {
		return fmt.Errorf("broker: redis: %s: %w: %w", what, ErrUnavailable, err)
	}
	return fmt.Errorf("broker: redis: %s: %w", what, err)
}

// debugLogger takes go-redis's own log lines (a line per failed dial during an outage) down to debug
// level of slog's default logger: the broker logs what matters to an operator itself, once. go-redis's
// logger is process-wide, so it cannot be a broker's Logger.
type debugLogger struct{}

func (debugLogger) Printf(ctx context.Context, format string, v ...any) {
	slog.Default().Debug("go-redis: " + fmt.Sprintf(format, v...))
}

var setLoggerOnce sync.Once

func routeRedisLogs() { setLoggerOnce.Do(func() { redis.SetLogger(debugLogger{}) }) }

// holdRetry is how often a held append tries Redis again.
const holdRetry = 100 * time.Millisecond

// sleep waits d, or less if ctx is done or the broker closes (then it returns why).
func (b *Redis) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-b.ctx.Done():
		return ErrClosed
	}
}
