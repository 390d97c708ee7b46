package signaling

import (
	"math"
	"time"

	"github.com/pion/webrtc/v4"
)

// Bandwidth: each subscriber has a controller that chooses, every selectEvery, the simulcast layer of each
// video track it receives: the highest its member asked for (SetQuality: a small tile needs the lowest)
// within a cap per track that the controller moves.
//
// The controller steps a cap down when the subscriber's path is congested: its receiver reports more than
// ~10 % loss, or its bandwidth estimate (REMB, which a browser sends when transport-wide congestion control
// is not negotiated, as on subscribers' connections, timing arrivals by the abs-send-time extension that
// localTrack writes) is below what it is being sent and falling, or stuck there for three ticks. A
// browser's estimate starts low and only climbs toward what it receives (at most 1.5× that), so it cannot
// say that a higher layer would fit: caps step up again one layer at a time after a calm period without
// loss, which doubles each time an upgrade is followed at once by congestion (up to a minute) and returns
// to its floor after a quiet spell.
// Audio is never touched.

// audioRate is what an audio track is taken to use when comparing the estimate with what is sent.
const audioRate = 40_000

// controller is a subscriber's bandwidth state; the selector goroutine owns it.
type controller struct {
	tick, calm, backoff int
	lastUp, lastCongest int
	prevEst             float64 // the estimate at the last tick (0: none)
	flat                int     // ticks the estimate has not grown
}

// Thresholds of the controller, in selector ticks and in 1/256 of packets lost.
const (
	calmFloor   = 5  // ticks without congestion before a cap steps up
	calmCeiling = 60 // the longest the calm period grows to
	lossHigh    = 25 // ~10 %: congested
	lossLow     = 5  // ~2 %: calm
)

// noteEstimate records the subscriber's latest bandwidth estimate (REMB), in bits per second.
func (s *Subscriber) noteEstimate(bps float32) {
	if bps < 0 || math.IsNaN(float64(bps)) || math.IsInf(float64(bps), 0) {
		return
	}
	s.estimate.Store(uint64(min(float64(bps), 1e12))) // a float32 can say 3e38: beyond any link, and beyond uint64
	s.estimateAt.Store(time.Now().UnixNano())
}

// selectLayers runs the subscriber's controller until the subscriber ends.
func (s *Subscriber) selectLayers() {
	cfg := s.room.e.cfg
	t := time.NewTicker(cfg.selectEvery)
	defer t.Stop()
	c := controller{backoff: calmFloor}
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		now := time.Now()
		s.selMu.Lock()
		s.selectOnce(&c, now)
		s.selMu.Unlock()
		s.sendReports(now)
	}
}

// pick is one downTrack and the source it shows.
type pick struct {
	d   *downTrack
	src *source
}

// selectOnce is one round of the controller. The caller holds selMu.
func (s *Subscriber) selectOnce(c *controller, now time.Time) {
	cfg := s.room.e.cfg
	c.tick++
	var video []pick
	audio := 0
	worst := int32(0)
	s.mu.Lock()
	all := make([]pick, 0, len(s.downs)+len(s.stageD))
	for src, d := range s.downs {
		all = append(all, pick{d, src})
	}
	for _, d := range s.stageD {
		all = append(all, pick{d, d.source})
	}
	s.mu.Unlock()
	for _, p := range all {
		worst = max(worst, p.d.lost.Swap(0))
		if p.src == nil {
			continue
		}
		if p.src.kind == webrtc.RTPCodecTypeVideo {
			p.src.measure(now)
			video = append(video, p)
		} else {
			audio++
		}
	}

	// What is sent now, against the estimate (ignored while the receiver's estimator warms up, when it
	// reports its start value rather than a measurement).
	sending := float64(audio * audioRate)
	for _, p := range video {
		if u := p.d.src.Load(); u != nil {
			sending += u.rateNow()
		}
	}
	// A browser's estimate starts low and climbs (~8 % a second) toward what it receives; it says
	// "congested" by falling, or by staying put below what it is sent. Below what is sent but climbing, it
	// is still converging, not a limit.
	est, fresh := s.currentEstimate(now, cfg.estimateWarmup)
	switch {
	case !fresh:
		c.flat = 0
	case est <= c.prevEst*1.01:
		c.flat++
	default:
		c.flat = 0
	}
	falling := fresh && c.prevEst > 0 && est < 0.95*c.prevEst
	overEstimate := fresh && sending > 0 && est < 0.9*sending && (falling || c.flat >= 3)
	if fresh {
		c.prevEst = est
	} else {
		c.prevEst = 0
	}

	switch {
	case worst > lossHigh || overEstimate:
		if c.tick-c.lastUp <= 3 {
			c.backoff = min(c.backoff*2, calmCeiling) // the last step up did not fit
		}
		c.calm, c.lastCongest = 0, c.tick
		if d := lowerHeaviest(video); d != nil {
			s.room.e.log.Debug("bandwidth: layer down", "room", s.room.name, "member", s.identity, "track", d.local.ID(),
				"estimate", int(est), "sending", int(sending), "lost256", worst)
		}
	case worst < lossLow:
		c.calm++
		if c.calm >= c.backoff {
			if d := raiseLowest(video); d != nil {
				s.room.e.log.Debug("bandwidth: layer up", "room", s.room.name, "member", s.identity, "track", d.local.ID(),
					"estimate", int(est), "sending", int(sending), "calm", c.calm)
				c.calm, c.lastUp = 0, c.tick
				if c.tick-c.lastCongest > 30 {
					c.backoff = calmFloor
				}
			}
		}
	default:
		c.calm = 0
	}

	for _, p := range video {
		if target := p.src.layer(p.d.quality()); target != nil {
			p.d.switchTo(target) // the current layer: drops a pending switch; the pending one: nothing to do
		}
	}
}

// currentEstimate returns the subscriber's bandwidth estimate if one arrived in the last 5 s and the
// subscriber has been connected longer than warmup.
func (s *Subscriber) currentEstimate(now time.Time, warmup time.Duration) (float64, bool) {
	at := s.estimateAt.Load()
	if at == 0 || now.Sub(time.Unix(0, at)) > 5*time.Second || now.Sub(s.started) < warmup {
		return 0, false
	}
	return float64(s.estimate.Load()), true
}

// lowerHeaviest steps down the cap of the video track that sends the most and has a lower layer, and
// returns it.
func lowerHeaviest(video []pick) *downTrack {
	var best *downTrack
	bestRate := -1.0
	for _, p := range video {
		q := p.d.quality()
		if q == QualityLow || p.src.layer(q-1) == p.src.layer(q) {
			continue // nothing lower to go to
		}
		if u := p.d.src.Load(); u != nil && u.rateNow() > bestRate {
			best, bestRate = p.d, u.rateNow()
		}
	}
	if best != nil {
		best.bwCap.Store(int32(best.quality() - 1))
	}
	return best
}

// raiseLowest steps up the cap of the video track whose cap is lowest and below what its member asked for,
// and returns it.
func raiseLowest(video []pick) *downTrack {
	var best *downTrack
	for _, p := range video {
		c := Quality(p.d.bwCap.Load())
		if c < Quality(p.d.maxQ.Load()) && (best == nil || c < Quality(best.bwCap.Load())) {
			best = p.d
		}
	}
	if best != nil {
		best.bwCap.Add(1)
	}
	return best
}
