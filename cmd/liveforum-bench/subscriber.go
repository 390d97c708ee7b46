package main

import (
	"bytes"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/liveforum/liveforum/client"
)

// subscriber is one receiving member. Its reader goroutine (consume) owns every field but count and ended,
// which the waiting loop polls; the rest is read after the reader has returned.
type subscriber struct {
	c   *client.Client
	hdr []byte // "r<run>p" of this run's messages
	per []int  // messages each publisher sends

	count atomic.Int64 // distinct messages of this run received
	ended atomic.Bool  // the events channel closed

	pubs         []seqTrack
	lastOffset   uint64
	hist         histogram
	lastRecv     int64 // unix nanoseconds of the last message of this run
	dups         int64
	late         int64 // messages that arrived after a later one of the same publisher
	offsetErrors int64 // events whose offset did not increase
	resets       int64
	foreign      int64 // chat messages not from this run, or with a header that does not parse
	err          error // why the client ended on its own, if it did
}

func newSubscriber(c *client.Client, hdr []byte, per []int) *subscriber {
	return &subscriber{c: c, hdr: hdr, per: per, pubs: make([]seqTrack, len(per))}
}

// consume waits until the client ends (its events go to handle, on the client's read goroutine).
func (s *subscriber) consume() {
	for ev := range s.c.Events() {
		s.handle(ev)
	}
	s.err = s.c.Err() // nil after our own Close
	s.ended.Store(true)
}

var (
	chatPrefix = []byte(`{"kind":"chat",`)
	textKey    = []byte(`"text":"`)
)

// handle checks one event. It avoids decoding JSON: a chat event's payload starts with its kind (the
// server encodes Kind first) and the message header is at the start of the "text" value, where no escape
// can occur since the bench writes only letters, digits and ':'. A "text" key cannot appear earlier by
// accident, as quotes inside string values are escaped.
func (s *subscriber) handle(ev client.Event) {
	if ev.Reset != nil {
		s.resets++
		return
	}
	if ev.Offset <= s.lastOffset {
		s.offsetErrors++
	}
	s.lastOffset = max(s.lastOffset, ev.Offset)
	if !bytes.HasPrefix(ev.Data, chatPrefix) {
		return
	}
	i := bytes.Index(ev.Data, textKey)
	if i < 0 {
		s.foreign++
		return
	}
	pub, seq, ts, ok := parseHeader(ev.Data[i+len(textKey):], s.hdr)
	if !ok || pub >= uint64(len(s.per)) || seq >= uint64(s.per[pub]) {
		s.foreign++
		return
	}
	fresh, late := s.pubs[pub].see(uint32(seq))
	if !fresh {
		s.dups++
		return
	}
	if late {
		s.late++
	}
	recv := ev.Received.UnixNano()
	s.hist.record(time.Duration(recv - int64(ts)))
	s.lastRecv = max(s.lastRecv, recv)
	s.count.Add(1)
}

// appendHeader appends a message header: hdr ("r<run>p"), then "<pub>:<seq>:<unixnano>:".
func appendHeader(buf, hdr []byte, pub, seq int, ts int64) []byte {
	buf = append(buf, hdr...)
	buf = strconv.AppendInt(buf, int64(pub), 10)
	buf = append(buf, ':')
	buf = strconv.AppendInt(buf, int64(seq), 10)
	buf = append(buf, ':')
	buf = strconv.AppendInt(buf, ts, 10)
	return append(buf, ':')
}

// parseHeader reads a header written by appendHeader from the start of b; ok is false if b does not start
// with hdr or the numbers do not parse.
func parseHeader(b, hdr []byte) (pub, seq, ts uint64, ok bool) {
	if !bytes.HasPrefix(b, hdr) {
		return 0, 0, 0, false
	}
	b = b[len(hdr):]
	if pub, b, ok = parseField(b); !ok {
		return
	}
	if seq, b, ok = parseField(b); !ok {
		return
	}
	ts, _, ok = parseField(b)
	return
}

// parseField reads decimal digits ended by ':' and returns the value and what follows the ':'.
func parseField(b []byte) (v uint64, rest []byte, ok bool) {
	n := 0
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		if n == 19 {
			return 0, nil, false
		}
		v = v*10 + uint64(b[n]-'0')
		n++
	}
	if n == 0 || n == len(b) || b[n] != ':' {
		return 0, nil, false
	}
	return v, b[n+1:], true
}

// seqTrack follows one publisher's sequence numbers as one subscriber sees them. It keeps the next
// expected number and the ranges skipped so far, which are few (none when all goes well), so it tells a
// late arrival from a duplicate without a bit per message.
type seqTrack struct {
	next uint32
	gaps []seqRange
}

// seqRange is the numbers lo..hi-1.
type seqRange struct{ lo, hi uint32 }

// see records seq: fresh is false for a duplicate; late is true for a message that arrived after a later one.
func (t *seqTrack) see(seq uint32) (fresh, late bool) {
	switch {
	case seq == t.next:
		t.next++
		return true, false
	case seq > t.next:
		t.gaps = append(t.gaps, seqRange{t.next, seq})
		t.next = seq + 1
		return true, false
	}
	for i, g := range t.gaps {
		if seq < g.lo || seq >= g.hi {
			continue
		}
		switch {
		case g.hi-g.lo == 1:
			t.gaps = slices.Delete(t.gaps, i, i+1)
		case seq == g.lo:
			t.gaps[i].lo++
		case seq == g.hi-1:
			t.gaps[i].hi--
		default:
			t.gaps = slices.Insert(t.gaps, i+1, seqRange{seq + 1, g.hi})
			t.gaps[i].hi = seq
		}
		return true, true
	}
	return false, false
}
