package signaling

import (
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// Quality is how much of a simulcast source a subscriber wants: its lowest, middle or highest layer.
type Quality int

// The qualities, lowest first.
const (
	QualityLow Quality = iota
	QualityMedium
	QualityHigh
)

// ParseQuality reads "low", "medium" or "high".
func ParseQuality(s string) (Quality, bool) {
	switch s {
	case "low":
		return QualityLow, true
	case "medium":
		return QualityMedium, true
	case "high":
		return QualityHigh, true
	}
	return 0, false
}

// source is one published track as subscribers see it: a single layer, or the simulcast layers (rids) of
// one track. Each subscriber's downTrack follows one layer of it.
type source struct {
	pub  *Publisher
	id   string // the subscribers' track id: publisher identity and the publisher's track id
	kind webrtc.RTPCodecType

	mu       sync.Mutex
	layers   []*upTrack // lowest first (sortLocked)
	measured time.Time
	ended    chan struct{}
}

func newSource(p *Publisher, remote *webrtc.TrackRemote) *source {
	return &source{pub: p, id: p.identity + ":" + remote.ID(), kind: remote.Kind(), ended: make(chan struct{})}
}

func (s *source) codec() webrtc.RTPCodecCapability {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.layers) == 0 {
		return webrtc.RTPCodecCapability{}
	}
	return s.layers[0].codec()
}

func (s *source) add(u *upTrack) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.layers = append(s.layers, u)
	s.sortLocked()
}

func (s *source) done() bool {
	select {
	case <-s.ended:
		return true
	default:
		return false
	}
}

func (s *source) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.done() {
		close(s.ended)
	}
	for _, u := range s.layers {
		u.end()
	}
}

// measureEvery is how often layers' bitrates are measured (they can correct the order of the rids).
const measureEvery = time.Second

// rateMargin is how many times what a layer's rid places above it a layer must send for the two to be
// taken the other way round.
const rateMargin = 1.5

// sortLocked orders the layers lowest first: by rid, in the order the common naming schemes mean
// ("q" < "h" < "f", "l" < "m" < "h", "low" < "mid" < "high"; else lexical, "0" < "1" < "2"), except where
// the measured bitrates clearly say otherwise: two neighbours are swapped when the lower one sends over
// rateMargin times what the higher one sends (a publisher whose rids run the other way).
//
// Bitrates over a second are noisy: a keyframe on the lowest layer, or an encoder moving bits between
// layers, brings the lowest layer near the middle one (a browser's 320×180 layer at 256–268 kbit/s
// against 317–343 for its 640×360 one), and an order by rate alone swapped them for a second now and
// then: every viewer of the middle layer switched to the lowest and back, a keyframe each way.
func (s *source) sortLocked() {
	ls := s.layers
	rids := make([]string, len(ls))
	for i, u := range ls {
		rids[i] = u.rid
	}
	sort.SliceStable(ls, func(i, j int) bool { return ridRank(ls[i].rid, rids) < ridRank(ls[j].rid, rids) })
	for swapped := true; swapped; { // ends: each swap undoes one pair that is clearly the wrong way round
		swapped = false
		for i := 0; i+1 < len(ls); i++ {
			if a, b := ls[i].rate, ls[i+1].rate; a > 0 && b > 0 && a > rateMargin*b {
				ls[i], ls[i+1] = ls[i+1], ls[i]
				swapped = true
			}
		}
	}
}

// ridRank places a rid among its track's rids: its rank in the naming scheme they follow, else its
// position in lexical order.
func ridRank(rid string, all []string) int {
	has := func(r string) bool { return slices.Contains(all, r) }
	var scheme []string
	switch {
	case has("q") || has("f"):
		scheme = []string{"q", "h", "f"}
	case has("l") || has("m"):
		scheme = []string{"l", "m", "h"}
	case has("low") || has("mid") || has("high"):
		scheme = []string{"low", "mid", "high"}
	}
	if i := slices.Index(scheme, rid); i >= 0 {
		return i
	}
	sorted := slices.Sorted(slices.Values(all))
	return len(scheme) + slices.Index(sorted, rid)
}

// measure updates the layers' bitrates at most once per measureEvery.
func (s *source) measure(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.measured) < measureEvery {
		return
	}
	for _, u := range s.layers {
		bytes := u.bytes.Load()
		if !u.at.IsZero() {
			if dt := now.Sub(u.at).Seconds(); dt > 0 {
				u.rate = float64(bytes-u.lastBytes) * 8 / dt
			}
		}
		u.lastBytes, u.at = bytes, now
	}
	s.measured = now
	s.sortLocked()
}

// rateNow is the layer's bitrate as last measured, in bits per second.
func (u *upTrack) rateNow() float64 {
	u.src.mu.Lock()
	defer u.src.mu.Unlock()
	return u.rate
}

// layer returns the layer for a quality: of n layers, the lowest, the middle one or the highest; layers
// that stopped sending (no bytes in the last measurement, when others sent) are skipped.
func (s *source) layer(q Quality) *upTrack {
	s.mu.Lock()
	defer s.mu.Unlock()
	var live []*upTrack
	sending := false
	for _, u := range s.layers {
		sending = sending || u.rate > 0
	}
	for _, u := range s.layers {
		if u.isEnded() || sending && u.rate == 0 && !u.at.IsZero() {
			continue // ended, or paused by the publisher (a browser drops its top layer when short of bandwidth)
		}
		live = append(live, u)
	}
	if len(live) == 0 {
		return nil
	}
	i := int(q) * (len(live) - 1) / int(QualityHigh)
	return live[i]
}
