package signaling

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// upTrack is a publisher's track: one goroutine reads its packets and hands each to the downTracks that
// follow it, without waiting for any of them.
type upTrack struct {
	pub    *Publisher
	src    *source
	remote *webrtc.TrackRemote
	recv   *webrtc.RTPReceiver
	muted  atomic.Bool

	downs atomic.Pointer[[]*downTrack] // copy on write: the read loop never locks
	mu    sync.Mutex                   // serialises changes to downs
	ended chan struct{}

	lastKey atomic.Int64 // unix nanoseconds of the last keyframe request sent upstream

	packets atomic.Uint64 // received
	bytes   atomic.Uint64 // payload bytes received

	// guarded by src.mu: the bitrate as last measured
	lastBytes uint64
	at        time.Time
	rate      float64 // bits per second
}

func (u *upTrack) isEnded() bool {
	select {
	case <-u.ended:
		return true
	default:
		return false
	}
}

func newUpTrack(p *Publisher, remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) *upTrack {
	u := &upTrack{pub: p, remote: remote, recv: recv, ended: make(chan struct{})}
	u.downs.Store(&[]*downTrack{})
	return u
}

func (u *upTrack) kind() webrtc.RTPCodecType { return u.remote.Kind() }

func (u *upTrack) codec() webrtc.RTPCodecCapability { return u.remote.Codec().RTPCodecCapability }

// run forwards the track's packets until it ends.
func (u *upTrack) run() {
	for {
		pkt, _, err := u.remote.ReadRTP()
		if err != nil {
			u.pub.room.e.log.Debug("track ended", "room", u.pub.room.name, "member", u.pub.identity, "kind", u.kind(), "err", err)
			u.end()
			return
		}
		u.packets.Add(1)
		u.bytes.Add(uint64(len(pkt.Payload)))
		if u.muted.Load() {
			continue
		}
		for _, d := range *u.downs.Load() {
			d.push(pkt, u)
		}
	}
}

// drainRTCP reads the publisher's RTCP (sender reports), which the interceptors need read.
func (u *upTrack) drainRTCP() {
	rid := u.remote.RID()
	for {
		var err error
		if rid != "" {
			_, _, err = u.recv.ReadSimulcastRTCP(rid)
		} else {
			_, _, err = u.recv.ReadRTCP()
		}
		if err != nil {
			return
		}
	}
}

func (u *upTrack) attach(d *downTrack) {
	u.mu.Lock()
	defer u.mu.Unlock()
	old := *u.downs.Load()
	next := make([]*downTrack, 0, len(old)+1)
	next = append(append(next, old...), d)
	u.downs.Store(&next)
}

func (u *upTrack) detach(d *downTrack) {
	u.mu.Lock()
	defer u.mu.Unlock()
	old := *u.downs.Load()
	next := make([]*downTrack, 0, len(old))
	for _, x := range old {
		if x != d {
			next = append(next, x)
		}
	}
	u.downs.Store(&next)
}

// end marks the track ended (its publisher closed).
func (u *upTrack) end() {
	select {
	case <-u.ended:
	default:
		close(u.ended)
	}
}

// keyframeEvery bounds how often a keyframe is asked of a publisher, whatever the number of subscribers
// asking.
const keyframeEvery = 300 * time.Millisecond

// requestKeyframe asks the publisher for a keyframe (PLI), at most once per keyframeEvery.
func (u *upTrack) requestKeyframe() {
	if u.kind() != webrtc.RTPCodecTypeVideo {
		return
	}
	now := time.Now().UnixNano()
	last := u.lastKey.Load()
	if now-last < int64(keyframeEvery) || !u.lastKey.CompareAndSwap(last, now) {
		return
	}
	_ = u.pub.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(u.remote.SSRC())}})
}

// writeFunc writes a packet to the subscriber.
type writeFunc func(*rtp.Packet) error

// queued is a packet waiting in a downTrack's queue, with the upTrack it came from.
type queued struct {
	pkt  *rtp.Packet
	from *upTrack
}

// downTrack sends one upTrack (or, for the stage, whichever upTrack is current) to one subscriber. It owns
// a bounded queue and a writer goroutine: a subscriber whose writes stall fills its own queue and loses its
// own packets.
type downTrack struct {
	sub    *Subscriber
	local  *webrtc.TrackLocalStaticRTP
	sender *webrtc.RTPSender
	src    atomic.Pointer[upTrack] // the upTrack (layer) followed now
	next   atomic.Pointer[upTrack] // a layer to switch to at its next keyframe
	source *source                 // what the downTrack shows (nil for the stage, which switches sources)
	q      chan queued
	stop   chan struct{}
	once   sync.Once
	write  atomic.Pointer[writeFunc] // local.WriteRTP; tests slow it down

	// Owned by the writer goroutine: sequence numbers and timestamps continue across source switches.
	last               *upTrack
	seqOff             uint16
	tsOff              uint32
	lastSeq            uint16
	lastTS             uint32
	sent               bool
	waitKey            bool
	out                rtp.Packet // the packet being written
	dropped, forwarded atomic.Uint64

	// Layer choice (simulcast): the subscriber's wish, and a cap lowered when it reports loss.
	maxQ      atomic.Int32 // Quality
	lossCap   atomic.Int32 // Quality
	lost      atomic.Int32 // the worst fraction lost the subscriber reported since the selector looked, in 1/256
	calmTicks int          // selector only: ticks without loss since the cap last moved
}

func newDownTrack(s *Subscriber, local *webrtc.TrackLocalStaticRTP, queue int) *downTrack {
	d := &downTrack{sub: s, local: local, q: make(chan queued, queue), stop: make(chan struct{})}
	d.maxQ.Store(int32(QualityHigh))
	d.lossCap.Store(int32(QualityHigh))
	w := writeFunc(local.WriteRTP)
	d.write.Store(&w)
	return d
}

// push queues a packet without waiting; a full queue drops it.
func (d *downTrack) push(p *rtp.Packet, from *upTrack) {
	select {
	case d.q <- queued{p, from}:
	default:
		d.dropped.Add(1)
	}
}

// follow makes the downTrack forward u (nil: nothing).
func (d *downTrack) follow(u *upTrack) {
	if old := d.src.Swap(u); old == u {
		return
	} else if old != nil {
		old.detach(d)
	}
	if u != nil {
		u.attach(d)
		u.requestKeyframe()
	}
}

// switchTo makes the downTrack move to layer u at u's next keyframe, forwarding the current layer until
// then, so a switch shows no freeze.
func (d *downTrack) switchTo(u *upTrack) {
	cur := d.src.Load()
	if cur == nil || cur.kind() != webrtc.RTPCodecTypeVideo {
		d.follow(u)
		return
	}
	if old := d.next.Swap(u); old == u {
		return
	} else if old != nil && old != cur {
		old.detach(d)
	}
	if u != nil && u != cur {
		u.attach(d)
		u.requestKeyframe()
	}
}

// run writes the queued packets until the downTrack closes.
func (d *downTrack) run() {
	for {
		select {
		case <-d.stop:
			return
		case q := <-d.q:
			if next := d.next.Load(); next != nil && q.from == next {
				if !isKeyframe(next.codec().MimeType, q.pkt.Payload) {
					next.requestKeyframe()
					continue
				}
				// The new layer's keyframe: switch here, continuing the numbering.
				if old := d.src.Swap(next); old != nil && old != next {
					old.detach(d)
				}
				d.next.CompareAndSwap(next, nil)
				d.waitKey = false
				d.forward(q)
				continue
			}
			if q.from != d.src.Load() {
				continue // from a source the track no longer follows
			}
			d.forward(q)
		}
	}
}

// forward rewrites a packet's sequence number and timestamp so they continue across source switches,
// strips the publisher's header extensions (their ids are the publisher's), and writes it.
func (d *downTrack) forward(q queued) {
	p := q.pkt
	if q.from != d.last {
		if d.last != nil {
			// A new source: start it at a keyframe, continuing the numbering.
			d.waitKey = q.from.kind() == webrtc.RTPCodecTypeVideo
		}
		d.last = q.from
		if d.sent {
			d.seqOff = d.lastSeq + 1 - p.SequenceNumber
			step := uint32(960) // 20 ms of 48 kHz audio
			if q.from.kind() == webrtc.RTPCodecTypeVideo {
				step = 3000 // a frame of 90 kHz video at 30/s
			}
			d.tsOff = d.lastTS + step - p.Timestamp
		}
	}
	if d.waitKey {
		if !isKeyframe(q.from.codec().MimeType, p.Payload) {
			q.from.requestKeyframe()
			return
		}
		d.waitKey = false
	}
	out := &d.out // reused: no allocation per packet per subscriber
	*out = *p
	out.Header.Extension = false
	out.Header.Extensions = nil
	out.SequenceNumber = p.SequenceNumber + d.seqOff
	out.Timestamp = p.Timestamp + d.tsOff
	err := (*d.write.Load())(out)
	seq, ts := out.SequenceNumber, out.Timestamp
	*out = rtp.Packet{} // keep no reference to the shared payload
	if err != nil {
		return
	}
	d.lastSeq, d.lastTS, d.sent = seq, ts, true
	d.forwarded.Add(1)
}

// readRTCP handles the subscriber's RTCP for this track: keyframe requests go to the source. NACKs are
// answered by the NACK interceptor from its packet cache as this reads.
func (d *downTrack) readRTCP() {
	for {
		pkts, _, err := d.sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				if u := d.src.Load(); u != nil {
					u.requestKeyframe()
				}
			case *rtcp.ReceiverReport:
				for _, r := range p.Reports {
					// The worst loss reported since the selector last looked.
					for f := int32(r.FractionLost); ; {
						old := d.lost.Load()
						if f <= old || d.lost.CompareAndSwap(old, f) {
							break
						}
					}
				}
			}
		}
	}
}

// close stops the writer and detaches the downTrack from its source.
func (d *downTrack) close() {
	d.once.Do(func() {
		close(d.stop)
		if u := d.src.Swap(nil); u != nil {
			u.detach(d)
		}
		if u := d.next.Swap(nil); u != nil {
			u.detach(d)
		}
	})
}
