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

// run sends the publisher's messages. Without a rate, each message is sent after the server answered
// the previous one (closed loop). With a rate the load is open-loop, as a crowd of people is: the i-th
// message of publisher p is due at start + (i·publishers + p)/rate, computed from the start so that a
// late send does not shift every later one, and it is sent at that time whether or not earlier answers
// have come back (at most maxInFlight unanswered). Its header carries the due time, so that a late send
// counts in the latency instead of hiding it (no coordinated omission).
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
	type inFlight struct {
		pend *client.Pending
		due  time.Time
	}
	const maxInFlight = 256
	acks := make(chan inFlight, maxInFlight)
	acked := make(chan struct{})
	var ackErr error // the collector's, read after acked is closed
	go func() {      // collects the answers of an open-loop run, in order
		defer close(acked)
		for f := range acks {
			if _, err := f.pend.Offset(ctx); err != nil {
				if ctx.Err() == nil && ackErr == nil {
					ackErr = p.why(err)
				}
				continue
			}
			p.last = time.Now()
			p.acks.record(p.last.Sub(f.due))
			p.sent.Add(1)
		}
	}()
	defer func() {
		close(acks)
		<-acked
		if p.err == nil {
			p.err = ackErr
		}
	}()
	n := len(b.pubs)
	for i := range p.count {
		now := time.Now()
		due := now
		if b.cfg.rate > 0 {
			due = start.Add(time.Duration(float64(i*n+p.idx) / b.cfg.rate * float64(time.Second)))
			if d := due.Sub(now); d > 0 {
				timer.Reset(d)
				select {
				case <-ctx.Done():
					return
				case <-timer.C:
				}
			}
		}
		if i == 0 {
			p.first = due
		}
		buf = appendHeader(buf[:0], b.hdr, p.idx, i, due.UnixNano())
		if len(buf) < len(pad) {
			buf = append(buf, pad[len(buf):]...)
		}
		pend, err := p.c.ChatAsync(b.cfg.room, string(buf), "")
		if err != nil {
			if ctx.Err() == nil {
				p.err = p.why(err)
			}
			return
		}
		if b.cfg.rate > 0 {
			acks <- inFlight{pend, due}
			continue
		}
		if _, err := pend.Offset(ctx); err != nil { // closed loop: wait for this answer
			if ctx.Err() == nil {
				p.err = p.why(err)
			}
			return
		}
		p.last = time.Now()
		p.acks.record(p.last.Sub(due))
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
