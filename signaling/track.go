package signaling

import (
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// upTrack is a publisher's track (or one simulcast layer of it). One goroutine reads its packets, keeps
// the recent ones for retransmissions and hands each to the downTracks that follow it. A downTrack writes
// at once on the reader's goroutine unless it has been isolated (slow or over TCP), when it queues; a
// large fan-out is split among a few workers so one track's viewers can use several cores.
type upTrack struct {
	pub    *Publisher
	src    *source
	remote *webrtc.TrackRemote
	recv   *webrtc.RTPReceiver
	muted  atomic.Bool

	downs atomic.Pointer[[]*downTrack] // copy on write: the read loop never locks
	mu    sync.Mutex                   // serialises changes to downs
	ended chan struct{}

	// cache holds the packets read most recently, by sequence number modulo cacheSize: every subscriber's
	// retransmissions come from this one copy.
	cache [cacheSize]atomic.Pointer[rtp.Packet]

	// Owned by the reader goroutine: the fan-out workers (chunks of downTracks after the first), and the
	// batch of the packets it sends directly.
	batch      *sendBatch
	workers    []chan fanJob
	fanWG      sync.WaitGroup
	fanWorkers atomic.Int32 // len(workers), for others to read

	lastKey atomic.Int64 // unix nanoseconds of the last keyframe request sent upstream

	// sendAt is when the packet being fanned out is sent, unix nanoseconds (its abs-send-time): the clock
	// is read once per packet, not per subscriber (set by the reader before the writes; the workers read
	// it after their job arrives).
	sendAt atomic.Int64

	packets atomic.Uint64 // received
	bytes   atomic.Uint64 // payload bytes received

	// guarded by src.mu: the bitrate as last measured
	lastBytes uint64
	at        time.Time
	rate      float64 // bits per second

	rid     string    // the simulcast layer's rid ("" without simulcast)
	endOnce sync.Once // end is called by the read loop and by the source's end, maybe at once
}

// cacheSize is how many of a track's recent packets are kept for retransmission: about 3 s of 1.5 Mbit/s
// video. A power of two, so sequence numbers map to the same slot across their wrap.
const cacheSize = 512

// fanChunk is how many downTracks one goroutine writes a packet to; a track with more viewers hands the
// further chunks to workers, each packet going out in parallel when there are cores for it. (A variable
// for the tests.)
var fanChunk = 128

// fanJob is one packet for one chunk of downTracks.
type fanJob struct {
	pkt   *rtp.Packet
	downs []*downTrack
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
	u := &upTrack{pub: p, remote: remote, rid: remote.RID(), recv: recv, ended: make(chan struct{}),
		batch: newSendBatch(p.room.e.udp)}
	u.downs.Store(&[]*downTrack{})
	return u
}

func (u *upTrack) kind() webrtc.RTPCodecType { return u.remote.Kind() }

func (u *upTrack) codec() webrtc.RTPCodecCapability { return u.remote.Codec().RTPCodecCapability }

// cached returns the packet with this sequence number if it is still kept.
func (u *upTrack) cached(seq uint16) *rtp.Packet {
	if p := u.cache[seq%cacheSize].Load(); p != nil && p.SequenceNumber == seq {
		return p
	}
	return nil
}

// run forwards the track's packets until it ends.
func (u *upTrack) run() {
	defer u.stopWorkers()
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
		// Packets are not changed after this: downTracks copy what they rewrite.
		u.cache[pkt.SequenceNumber%cacheSize].Store(pkt)
		u.fanOut(pkt)
	}
}

// fanOut hands a packet to every downTrack: the first chunk on this goroutine, the others to workers,
// and returns when all have it (so packets leave in order).
func (u *upTrack) fanOut(p *rtp.Packet) {
	downs := *u.downs.Load()
	u.sendAt.Store(time.Now().UnixNano())
	if len(downs) <= fanChunk {
		pushAll(p, u, downs, u.batch)
		return
	}
	chunks := (len(downs) + fanChunk - 1) / fanChunk
	for len(u.workers) < chunks-1 {
		ch := make(chan fanJob, 1)
		u.workers = append(u.workers, ch)
		u.fanWorkers.Add(1)
		go u.work(ch)
	}
	u.fanWG.Add(chunks - 1)
	for i := 1; i < chunks; i++ {
		u.workers[i-1] <- fanJob{p, downs[i*fanChunk : min((i+1)*fanChunk, len(downs))]}
	}
	pushAll(p, u, downs[:fanChunk], u.batch)
	u.fanWG.Wait()
}

func (u *upTrack) work(jobs <-chan fanJob) {
	batch := newSendBatch(u.pub.room.e.udp)
	for j := range jobs {
		pushAll(j.pkt, u, j.downs, batch)
		u.fanWG.Done()
	}
}

// pushAll hands a packet to a chunk of downTracks. The chunk is timed as a whole (not each write: that
// would cost two clock reads per packet per subscriber); when it was slow, its downTracks time their next
// writes, to find the one that stalls.
func pushAll(p *rtp.Packet, u *upTrack, downs []*downTrack, batch *sendBatch) {
	start := time.Now()
	for i, d := range downs {
		if i+3 < len(downs) {
			downs[i+3].prefetchSelf()
		}
		if i+2 < len(downs) {
			downs[i+2].prefetchLinked(p)
		}
		if i+1 < len(downs) {
			downs[i+1].prefetchFar()
		}
		d.push(p, u, batch)
		if batch.n >= batchMax {
			batch.flush()
		}
	}
	batch.flush()
	if time.Since(start) > slowWrite {
		for _, d := range downs {
			d.timed.Store(true)
		}
	}
}

// The fan-out prefetches: each downTrack's state has left the cache since the previous packet, and what a
// write reads is a chain of pointers (downTrack, then its subscriber and local track, then their stream
// and address), each a trip to memory when waited for. pushAll asks for each link a few subscribers
// ahead, once the pointer to it is in the cache: the trips overlap the work of the writes before.

// prefetchSelf asks for the downTrack's per-packet fields (up to the end of out: four lines; a downTrack,
// with its history, is a large object, which starts on a page).
func (d *downTrack) prefetchSelf() {
	p := unsafe.Pointer(d)
	prefetch(p)
	prefetch(unsafe.Add(p, 64))
	prefetch(unsafe.Add(p, 128))
	prefetch(unsafe.Add(p, 192))
}

// prefetchLinked asks for the per-packet fields of the downTrack's subscriber and local track, and for
// the history entry pkt will take.
func (d *downTrack) prefetchLinked(pkt *rtp.Packet) {
	prefetch(unsafe.Pointer(&d.hist[(pkt.SequenceNumber+uint16(d.seqOff.Load()))%histSize]))
	prefetch(unsafe.Pointer(d.sub))
	p := unsafe.Pointer(d.local) // its first 128 bytes, on up to three lines (its size class is not 64-aligned)
	prefetch(p)
	prefetch(unsafe.Add(p, 64))
	prefetch(unsafe.Add(p, 127))
}

// prefetchFar asks for the local track's SRTP stream and the subscriber's address.
func (d *downTrack) prefetchFar() {
	if s := d.local.stream.Load(); s != nil {
		prefetch(unsafe.Pointer(s))
	}
	if a := d.sub.remote.Load(); a != nil {
		prefetch(unsafe.Pointer(a))
	}
}

func (u *upTrack) stopWorkers() {
	for _, ch := range u.workers {
		close(ch)
	}
	u.workers = nil
}

// drainRTCP reads the publisher's RTCP (sender reports), which the interceptors need read.
func (u *upTrack) drainRTCP() {
	rid := u.rid
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

// end marks the track ended (its publisher closed, or its reads failed).
func (u *upTrack) end() { u.endOnce.Do(func() { close(u.ended) }) }

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

// writeFunc writes a packet to the subscriber, or adds it to a batch of the fan-out's (nil: none).
type writeFunc func(*rtp.Packet, *sendBatch) error

// queued is a packet waiting in an isolated downTrack's queue, with the upTrack it came from.
type queued struct {
	pkt  *rtp.Packet
	from *upTrack
}

// slowWrite is how long a write may take; after slowWrites of them in a row its downTrack is isolated: it
// then gets a bounded queue and a writer goroutine of its own, so it loses its own packets and delays
// nobody. (One slow write alone may be the scheduler's doing on a busy node, not the subscriber's.)
const (
	slowWrite  = 30 * time.Millisecond
	slowWrites = 3
)

// histSize is how many sent packets a downTrack remembers for answering NACKs (a power of two).
const histSize = 1024

// sentPacket maps one sequence number a subscriber saw back to the packet in its upTrack's cache.
type sentPacket struct {
	pkt    *rtp.Packet // the packet sent (its number is the upTrack's): a retransmission is of this one
	from   *upTrack
	outSeq uint16 // the subscriber's
	tsOff  uint32 // the timestamp offset it was sent with
	at     int64  // when it was sent (its abs-send-time): a retransmission is the same packet, byte for byte
}

// downTrack sends one upTrack (or, for the stage, whichever upTrack is current) to one subscriber. Its
// packets are written on the upTrack's reader goroutine; a downTrack whose write stalls (or whose
// subscriber is connected over TCP, where a write can block) is isolated: it gets a bounded queue and a
// writer goroutine, so a stalled subscriber fills its own queue and loses its own packets.
//
// The fields every packet reads or writes come first, together: with hundreds of subscribers, each
// downTrack's state has left the processor's cache by the next packet, and each cache line it spans costs
// a trip to memory per packet per subscriber (the media bench's profile showed the fan-out's time in those
// loads). The packet history, of which a packet touches one entry, is last.
type downTrack struct {
	sub      *Subscriber // never nil, nor local: pushAll's prefetch reads through both
	local    *localTrack
	src      atomic.Pointer[upTrack] // the upTrack (layer) followed now
	next     atomic.Pointer[upTrack] // a layer to switch to at its next keyframe
	closed   atomic.Bool
	isolated atomic.Bool               // writes go through q and the writer goroutine
	timed    atomic.Bool               // writes are timed (its chunk was slow, see pushAll)
	seqOff   atomic.Uint32             // sequence number offset (16 bits): written under mu, read unlocked by pushAll's prefetch
	hook     atomic.Pointer[writeFunc] // nil: local.send; tests slow the writes down

	// Guarded by mu (packets from two layers during a switch, retransmissions from the RTCP reader):
	// sequence numbers and timestamps continue across source switches.
	mu        sync.Mutex
	lastSeq   uint16
	tsOff     uint32
	lastTS    uint32
	sent      bool
	waitKey   bool
	rebase    bool // the next packet forwarded sets the offsets (a new source)
	wrapped   bool // the subscriber's numbering has passed 65535 since its first packet
	rtxTokens int  // retransmissions allowed: a quarter of one per packet forwarded, up to rtxBurst
	last      *upTrack
	slow      int        // writes in a row that took over slowWrite
	out       rtp.Packet // the packet being written

	sender *webrtc.RTPSender
	source *source // what the downTrack shows (nil for the stage, which switches sources)
	q      chan queued
	stop   chan struct{}
	once   sync.Once

	dropped, resent atomic.Uint64

	// Layer choice (simulcast): the subscriber's wish, and a cap the bandwidth controller moves.
	maxQ  atomic.Int32 // Quality
	bwCap atomic.Int32 // Quality
	lost  atomic.Int32 // the worst fraction lost the subscriber reported since the controller looked, in 1/256

	hist [histSize]sentPacket // guarded by mu
}

// quality is the layer the downTrack should follow now: the subscriber's wish within the bandwidth cap.
func (d *downTrack) quality() Quality { return min(Quality(d.maxQ.Load()), Quality(d.bwCap.Load())) }

// rtxBurst bounds the retransmission tokens a downTrack saves up (four make one retransmission). Resends
// are at most a quarter of a subscriber's packets: under heavy loss, or on a saturated node, NACKs cannot
// multiply the work.
const rtxBurst = 4 * 64

func newDownTrack(s *Subscriber, local *localTrack, queue int) *downTrack {
	d := &downTrack{sub: s, local: local, q: make(chan queued, queue), stop: make(chan struct{})}
	d.maxQ.Store(int32(QualityHigh))
	d.bwCap.Store(int32(QualityHigh))
	return d
}

// push writes a packet now or, for an isolated downTrack, queues it without waiting (a full queue drops
// it).
func (d *downTrack) push(p *rtp.Packet, from *upTrack, batch *sendBatch) {
	if !d.isolated.Load() {
		if !d.sub.tcp.Load() {
			d.handle(p, from, batch)
			return
		}
		d.isolate()
	}
	select {
	case d.q <- queued{p, from}:
	default:
		d.dropped.Add(1)
	}
}

// isolate gives the downTrack its own queue and writer goroutine from now on.
func (d *downTrack) isolate() {
	if d.isolated.CompareAndSwap(false, true) {
		go d.run()
	}
}

// run writes an isolated downTrack's queued packets until it closes.
func (d *downTrack) run() {
	for {
		select {
		case <-d.stop:
			return
		case q := <-d.q:
			d.handle(q.pkt, q.from, nil)
		}
	}
}

// handle forwards a packet from one of the layers the downTrack follows: the current one, or the one it
// switches to, whose first forwarded packet is a keyframe.
func (d *downTrack) handle(p *rtp.Packet, from *upTrack, batch *sendBatch) {
	if d.closed.Load() {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if next := d.next.Load(); next != nil && from == next {
		if !isKeyframe(next.codec().MimeType, p.Payload) {
			next.requestKeyframe()
			return
		}
		// The new layer's keyframe: switch here, continuing the numbering.
		if old := d.src.Swap(next); old != nil && old != next {
			old.detach(d)
		}
		d.next.CompareAndSwap(next, nil)
		d.waitKey = false
		d.forward(p, from, batch)
		return
	}
	if from != d.src.Load() {
		return // from a source the track no longer follows
	}
	d.forward(p, from, batch)
}

// follow makes the downTrack forward u (nil: nothing) from now on, dropping a pending layer switch.
func (d *downTrack) follow(u *upTrack) {
	d.mu.Lock() // against handle's switch at a keyframe
	attached := d.followLocked(u)
	d.mu.Unlock()
	if attached {
		u.requestKeyframe() // not under the lock: an RTCP write to the publisher
	}
}

// followLocked makes the downTrack forward u and reports whether u was newly attached.
func (d *downTrack) followLocked(u *upTrack) bool {
	if next := d.next.Swap(nil); next != nil && next != u && next != d.src.Load() {
		next.detach(d)
	}
	if old := d.src.Swap(u); old == u {
		return false
	} else if old != nil {
		old.detach(d)
	}
	if u != nil {
		u.attach(d)
	}
	return u != nil
}

// switchTo makes the downTrack move to layer u at u's next keyframe, forwarding the current layer until
// then, so a switch shows no freeze; switching to the current layer drops a pending switch.
func (d *downTrack) switchTo(u *upTrack) {
	d.mu.Lock() // against handle's switch at a keyframe
	attached := d.switchLocked(u)
	d.mu.Unlock()
	if attached {
		u.requestKeyframe() // the switch happens at it; not under the lock: an RTCP write to the publisher
	}
}

// switchLocked sets the pending switch and reports whether u was newly attached.
func (d *downTrack) switchLocked(u *upTrack) bool {
	cur := d.src.Load()
	if cur == nil || cur.kind() != webrtc.RTPCodecTypeVideo {
		return d.followLocked(u)
	}
	if u == cur {
		u = nil
	}
	if old := d.next.Swap(u); old == u {
		return false
	} else if old != nil && old != cur {
		old.detach(d)
	}
	if u != nil {
		u.attach(d)
	}
	return u != nil
}

// forward rewrites a packet's sequence number and timestamp so they continue across source switches,
// strips the publisher's header extensions (their ids are the publisher's), writes it and remembers it
// for NACKs. The caller holds d.mu.
func (d *downTrack) forward(p *rtp.Packet, from *upTrack, batch *sendBatch) {
	if from != d.last {
		if d.last != nil {
			// A new source: start it at a keyframe, continuing the numbering.
			d.waitKey = from.kind() == webrtc.RTPCodecTypeVideo
		}
		d.last = from
		d.rebase = true
	}
	if d.waitKey {
		if !isKeyframe(from.codec().MimeType, p.Payload) {
			from.requestKeyframe()
			return
		}
		d.waitKey = false
	}
	if d.rebase {
		// Offsets from the first packet forwarded (not the first seen: those dropped while waiting for the
		// keyframe would leave a hole the subscriber takes for loss).
		d.rebase = false
		if d.sent {
			d.seqOff.Store(uint32(d.lastSeq + 1 - p.SequenceNumber))
			step := uint32(960) // 20 ms of 48 kHz audio
			if from.kind() == webrtc.RTPCodecTypeVideo {
				step = 3000 // a frame of 90 kHz video at 30/s
			}
			d.tsOff = d.lastTS + step - p.Timestamp
		}
	}
	seq, ts := p.SequenceNumber+uint16(d.seqOff.Load()), p.Timestamp+d.tsOff
	if d.sent {
		// A number is sent once: a packet that comes again (a publisher's retransmission and its late
		// original both arrive) or a late packet of the previous source, whose number the new offsets give
		// to a packet sent already, is not forwarded. SRTP must not encrypt one number two ways.
		if h := &d.hist[seq%histSize]; h.from != nil && h.outSeq == seq {
			return
		}
		if int16(seq-d.lastSeq) < -histSize/2 {
			return // too late to tell from a number the history has forgotten
		}
		if int16(seq-d.lastSeq) < 0 && seq > d.lastSeq && !d.wrapped {
			// Late, and from before the numbering's first wrap (the first packet was just above 0, this one
			// is just below 65536): the receiver's SRTP would take it as 65536 packets earlier, pion's
			// sending context as far ahead — moving its rollover counter on for every later packet, which the
			// receiver could then not decrypt (the direct path's sealer refuses it; pion's does not).
			return
		}
	}
	at := from.sendAt.Load()
	if d.isolated.Load() {
		at = 0 // written later than the fan-out read the clock
	}
	at, err := d.writeOut(p, seq, ts, at, batch)
	if err != nil {
		return
	}
	d.hist[seq%histSize] = sentPacket{pkt: p, from: from, outSeq: seq, tsOff: d.tsOff, at: at}
	if d.rtxTokens < rtxBurst {
		d.rtxTokens++
	}
	// Only forward: a packet the publisher resent late (NACK) must not pull the numbering back, or the next
	// switch would reuse sequence numbers the subscriber has.
	if !d.sent || int16(seq-d.lastSeq) > 0 {
		if d.sent && seq < d.lastSeq {
			d.wrapped = true
		}
		d.lastSeq = seq
	}
	if !d.sent || int32(ts-d.lastTS) > 0 {
		d.lastTS = ts
	}
	d.sent = true
}

// writeOut writes p with the subscriber's sequence number, timestamp and send time (unix nanoseconds; 0:
// now) and without the publisher's header extensions, and returns the send time written; timed writes
// that stall isolate the downTrack. The caller holds d.mu.
func (d *downTrack) writeOut(p *rtp.Packet, seq uint16, ts uint32, at int64, batch *sendBatch) (int64, error) {
	out := &d.out // reused: no allocation per packet per subscriber
	*out = *p
	out.Header.Extension = false
	out.Header.Extensions = nil
	out.SequenceNumber = seq
	out.Timestamp = ts
	isolated := d.isolated.Load()
	if at == 0 {
		at = time.Now().UnixNano()
	}
	d.local.sendAt = at
	if isolated || !d.timed.Load() {
		err := d.send(out, batch)
		*out = rtp.Packet{} // keep no reference to the shared payload
		return at, err
	}
	start := time.Now()
	err := d.send(out, nil) // timed: sent now
	if time.Since(start) <= slowWrite {
		d.slow = 0
		d.timed.Store(false)
	} else if d.slow++; d.slow >= slowWrites {
		d.isolate()
	}
	*out = rtp.Packet{} // keep no reference to the shared payload
	return at, err
}

// send writes the rewritten packet: local.send, unless a test has hooked it.
func (d *downTrack) send(p *rtp.Packet, batch *sendBatch) error {
	if h := d.hook.Load(); h != nil {
		return (*h)(p, batch)
	}
	return d.local.send(p, batch)
}

// retransmit answers a NACK for one of the subscriber's sequence numbers from the upTrack's cache, within
// the retransmission budget; it reports whether budget is left for more.
func (d *downTrack) retransmit(seq uint16) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.rtxTokens < 4 {
		return false
	}
	h := d.hist[seq%histSize]
	if h.from == nil || h.outSeq != seq {
		return true
	}
	// The cache's packet of that number, if it is still the one sent: a packet the publisher sent again
	// under the number with other bytes (or one of a later wrap) replaces it in the cache, and sealing
	// that under the subscriber's number would encrypt one number two ways.
	p := h.pkt
	if h.from.cached(p.SequenceNumber) != p {
		return true
	}
	// The same send time as the first time: the same bytes (SRTP must not encrypt one sequence number two
	// ways), and a receiver's bandwidth estimator skips a packet older than those it has.
	if _, err := d.writeOut(p, seq, p.Timestamp+h.tsOff, h.at, nil); err == nil {
		d.rtxTokens -= 4
		d.resent.Add(1)
	}
	return true
}

// readRTCP handles the subscriber's RTCP for this track: keyframe requests go to the source, NACKs are
// answered from the source's cache, reported loss and the receiver's bandwidth estimate (REMB) go to the
// bandwidth controller.
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
			case *rtcp.TransportLayerNack:
				// As many as the budget allows: a hostile list of every sequence number costs little more.
				more := true
				for i := 0; i < len(p.Nacks) && more; i++ {
					p.Nacks[i].Range(func(seq uint16) bool {
						more = d.retransmit(seq)
						return more
					})
				}
			case *rtcp.ReceiverEstimatedMaximumBitrate:
				d.sub.noteEstimate(p.Bitrate)
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
		d.closed.Store(true)
		close(d.stop)
		if u := d.src.Swap(nil); u != nil {
			u.detach(d)
		}
		if u := d.next.Swap(nil); u != nil {
			u.detach(d)
		}
	})
}
