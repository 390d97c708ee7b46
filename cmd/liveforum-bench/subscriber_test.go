package main

import (
	"math"
	"testing"
	"time"

	"github.com/liveforum/liveforum/client"
)

func TestSeqTrack(t *testing.T) {
	for _, tc := range []struct {
		name             string
		seqs             []uint32
		dups, late, lost int
	}{
		{name: "in order", seqs: []uint32{0, 1, 2, 3}},
		{name: "duplicate", seqs: []uint32{0, 1, 1, 2, 0}, dups: 2},
		{name: "swapped", seqs: []uint32{0, 2, 1, 3}, late: 1},
		{name: "gap filled from the middle", seqs: []uint32{0, 5, 3, 1, 2, 4, 3}, late: 4, dups: 1},
		{name: "lost", seqs: []uint32{0, 3}, lost: 2},
		{name: "lost at the start", seqs: []uint32{2, 3}, lost: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var st seqTrack
			var dups, late int
			for _, s := range tc.seqs {
				fresh, l := st.see(s)
				if !fresh {
					dups++
				}
				if l {
					late++
				}
			}
			lost := 0
			for _, g := range st.gaps {
				lost += int(g.hi - g.lo)
			}
			if dups != tc.dups || late != tc.late || lost != tc.lost {
				t.Errorf("dups %d late %d lost %d, want %d %d %d", dups, late, lost, tc.dups, tc.late, tc.lost)
			}
		})
	}
}

func TestHandle(t *testing.T) {
	hdr := []byte("r0badcafep")
	s := newSubscriber(nil, hdr, []int{2, 2})
	sent := time.Unix(100, 0)
	ev := func(off uint64, text string) *client.Event {
		return &client.Event{Offset: off, Received: sent.Add(3 * time.Millisecond),
			Data: []byte(`{"kind":"chat","time":1,"from":{"identity":"x","name":"\"text\":\"r0badcafep0:1:1:","role":"bot"},"text":"` + text + `"}`)}
	}
	ts := sent.UnixNano()
	h := func(pub, seq int) string { return string(appendHeader(nil, hdr, pub, seq, ts)) + "xxxx" }
	for _, e := range []*client.Event{
		ev(1, h(0, 0)), ev(2, h(1, 0)), ev(3, h(1, 1)), ev(4, h(0, 1)),
		ev(5, h(0, 1)),            // duplicate
		ev(5, h(9, 0)),            // no such publisher, and an offset that did not increase
		ev(6, "r0badcafep0:1:x"),  // bad header
		ev(7, "rdeadbeefp0:0:1:"), // another run
		{Offset: 8, Data: []byte(`{"kind":"member.joined","time":1}`)},
	} {
		s.handle(*e)
	}
	if s.count.Load() != 4 || s.dups != 1 || s.late != 0 || s.foreign != 3 || s.offsetErrors != 1 {
		t.Errorf("count %d dups %d late %d foreign %d offset errors %d", s.count.Load(), s.dups, s.late, s.foreign, s.offsetErrors)
	}
	if got := s.hist.quantile(0.5); got < 2900*time.Microsecond || got > 3100*time.Microsecond {
		t.Errorf("latency %v, want 3ms", got)
	}
}

func FuzzParseHeader(f *testing.F) {
	hdr := []byte("r0badcafep")
	f.Add(appendHeader(nil, hdr, 3, 1234, time.Now().UnixNano()))
	f.Add([]byte("r0badcafep1:2:"))
	f.Add([]byte("r0badcafep99999999999999999999:1:1:"))
	f.Fuzz(func(t *testing.T, b []byte) {
		pub, seq, ts, ok := parseHeader(b, hdr)
		if !ok || pub > math.MaxInt32 || seq > math.MaxInt32 || ts > math.MaxInt64 {
			return
		}
		p2, s2, t2, ok := parseHeader(appendHeader(nil, hdr, int(pub), int(seq), int64(ts)), hdr)
		if !ok || p2 != pub || s2 != seq || t2 != ts {
			t.Errorf("%q parsed as %d %d %d, which does not survive a round trip", b, pub, seq, ts)
		}
	})
}
