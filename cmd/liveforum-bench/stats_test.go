package main

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBuckets(t *testing.T) {
	prevLow := uint64(0)
	for i := range 40 * subN {
		low, width := bucketRange(i)
		if i > 0 && low <= prevLow {
			t.Fatalf("bucket %d starts at %d, not after %d", i, low, prevLow)
		}
		for _, v := range []uint64{low, low + width - 1} {
			if got := bucketOf(v); got != i {
				t.Fatalf("bucketOf(%d) = %d, want %d", v, got, i)
			}
		}
		if low >= subN && float64(width)/float64(low) > 1.0/subN {
			t.Fatalf("bucket %d is %d wide at %d", i, width, low)
		}
		prevLow = low
	}
}

func TestQuantiles(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var a, b histogram
	var all []time.Duration
	for i := range 20000 {
		d := time.Duration(r.ExpFloat64() * float64(5*time.Millisecond))
		all = append(all, d)
		if i%2 == 0 {
			a.record(d)
		} else {
			b.record(d)
		}
	}
	a.merge(&b)
	slices.Sort(all)
	for _, q := range []float64{0.5, 0.9, 0.99} {
		want := all[int(q*float64(len(all)))-1]
		got := a.quantile(q)
		if diff := float64(got-want) / float64(want); diff > 0.03 || diff < -0.03 {
			t.Errorf("p%v = %v, want %v", q*100, got, want)
		}
	}
	if a.maximum() != all[len(all)-1].Truncate(time.Microsecond) || a.quantile(1) > a.maximum() {
		t.Errorf("max %v, p100 %v, want %v", a.maximum(), a.quantile(1), all[len(all)-1])
	}
	var empty histogram
	if empty.quantile(0.5) != 0 || empty.mean() != 0 {
		t.Error("empty histogram is not zero")
	}
}
