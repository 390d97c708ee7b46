package main

import (
	"math"
	"math/bits"
	"time"
)

// histogram counts latencies in log-linear buckets of microseconds: exact below 32 µs, then 32 buckets per
// power of two, so a bucket is at most 1/32 (3 %) of its value wide. It grows only as far as the largest
// value seen, so a subscriber whose latencies stay under 100 ms holds about 400 counters whatever the number
// of messages. Not safe for concurrent use: each receiver keeps its own and they are merged at the end.
type histogram struct {
	counts []uint64
	n      uint64
	sum    uint64 // µs
	max    uint64 // µs, exact
}

const (
	subBits = 5
	subN    = 1 << subBits
)

// bucketOf returns the bucket index of v µs.
func bucketOf(v uint64) int {
	if v < subN {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1
	return shift*subN + int(v>>shift)
}

// bucketRange returns the lowest value of bucket i and its width.
func bucketRange(i int) (low, width uint64) {
	if i < subN {
		return uint64(i), 1
	}
	shift := i/subN - 1
	return uint64(subN+i%subN) << shift, 1 << shift
}

// record adds one latency; negative durations count as zero.
func (h *histogram) record(d time.Duration) {
	v := uint64(max(d, 0) / time.Microsecond)
	i := bucketOf(v)
	if i >= len(h.counts) {
		h.counts = append(h.counts, make([]uint64, i+1-len(h.counts))...)
	}
	h.counts[i]++
	h.n++
	h.sum += v
	h.max = max(h.max, v)
}

// merge adds o's counts to h.
func (h *histogram) merge(o *histogram) {
	if len(o.counts) > len(h.counts) {
		h.counts = append(h.counts, make([]uint64, len(o.counts)-len(h.counts))...)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// quantile returns the value below which a fraction q of the latencies fall: the middle of the bucket that
// holds it, never more than the exact maximum. Zero for an empty histogram.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			low, width := bucketRange(i)
			return time.Duration(min(low+width/2, h.max)) * time.Microsecond
		}
	}
	return time.Duration(h.max) * time.Microsecond
}

// mean returns the average latency.
func (h *histogram) mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum/h.n) * time.Microsecond
}

// maximum returns the largest latency recorded.
func (h *histogram) maximum() time.Duration { return time.Duration(h.max) * time.Microsecond }

// ms converts a duration to milliseconds with microsecond precision, for the JSON summary.
func ms(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 3) }

func round(v float64, digits int) float64 {
	p := math.Pow10(digits)
	return math.Round(v*p) / p
}
