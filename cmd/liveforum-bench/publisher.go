package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/liveforum/liveforum/client"
	"github.com/liveforum/liveforum/protocol"
)

// publisher is one sending member. Its goroutine (run) owns first and err until it returns; sent is polled.
type publisher struct {
	idx     int
	c       *client.Client
	count   int           // messages to send
	drained chan struct{} // closed when the client's events channel is

	sent  atomic.Int64
	first time.Time // of the first send
	last  time.Time // when the last answer came
	acks  histogram // time from send to the server's answer
	err   error     // why it stopped early
}

// drain discards the events a publisher receives (its own messages among them): a client whose events
// are not read stops reading its socket, and the server then drops it as a slow consumer.
func (p *publisher) drain() {
	for range p.c.Events() {
	}
	close(p.drained)
}

// run sends the publisher's messages, each one after the server answered the previous one. With a rate,
// the i-th message of publisher p is due at start + (i·publishers + p)/rate: computed from the start rather
// than from the last send, so that a late send does not shift every later one and the publishers
// interleave evenly.
func (p *publisher) run(ctx context.Context, b *chatBench, start time.Time) {
	pad := make([]byte, b.cfg.size)
	for i := range pad {
		pad[i] = 'x'
	}
	buf := make([]byte, 0, max(b.cfg.size, 64))
	var timer *time.Timer
	if b.cfg.rate > 0 {
		timer = time.NewTimer(time.Hour)
		timer.Stop() // armed by Reset before each wait
		defer timer.Stop()
	}
	n := len(b.pubs)
	for i := range p.count {
		if b.cfg.rate > 0 {
			due := start.Add(time.Duration(float64(i*n+p.idx) / b.cfg.rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				timer.Reset(d)
				select {
				case <-ctx.Done():
					return
				case <-timer.C:
				}
			}
		}
		now := time.Now()
		if i == 0 {
			p.first = now
		}
		buf = appendHeader(buf[:0], b.hdr, p.idx, i, now.UnixNano())
		if len(buf) < len(pad) {
			buf = append(buf, pad[len(buf):]...)
		}
		if _, err := p.c.Chat(ctx, b.cfg.room, string(buf), ""); err != nil {
			if ctx.Err() == nil {
				p.err = p.why(err)
			}
			return
		}
		p.last = time.Now()
		p.acks.record(p.last.Sub(now))
		p.sent.Add(1)
	}
}

// why adds to a send error the reason the server gave for closing the connection, if it did.
func (p *publisher) why(err error) error {
	if !errors.Is(err, client.ErrDisconnected) {
		return err
	}
	select {
	case <-p.drained:
	case <-time.After(2 * time.Second):
		return err
	}
	var ce *client.CloseError
	if cerr := p.c.Err(); errors.As(cerr, &ce) && ce.Code == protocol.CloseRateLimited {
		return fmt.Errorf("%w (the server's flood limit: run it with a higher -msg-rate, or use more publishers)", cerr)
	} else if cerr != nil {
		return cerr
	}
	return err
}
