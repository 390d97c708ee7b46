package signaling

import (
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// localTrack is a track sent to one subscriber: pion's TrackLocalStaticRTP for the negotiation (codec
// matching in Bind), its packets sent by the subscriber's direct path (direct.go) or written straight to
// the stream of its one binding. pion's own WriteRTP copies each packet into a pooled one and takes a lock
// to walk its bindings, per packet per subscriber; a localTrack belongs to one peer connection, so the
// binding is kept aside and the downTrack's packet (its own copy) is written as is.
//
// Its fields for every packet come first, together, and the binding is read through a copy kept here
// (see downTrack on why each cache line a packet reads counts).
type localTrack struct {
	sub   *Subscriber
	bound atomic.Pointer[binding]

	// The writer's (writes are serialised by the downTrack, which also holds its lock for senderReport):
	cur    *binding // the binding last written through, and its copy
	curB   binding
	sendAt int64                     // when the packet to write was sent, unix nanoseconds: its abs-send-time (set before each write)
	stream atomic.Pointer[gcmStream] // the direct path's SRTP stream (its rollover counter); atomic for pushAll's prefetch
	buf    []byte                    // the direct path's packet buffer when it sends at once
	// What sender reports say of directly sent packets (pion's report interceptor sees only its own).
	packets, octets uint32
	lastSeq         uint16
	lastTS          uint32
	lastAt          int64 // when the packet with lastTS was sent, unix nanoseconds

	*webrtc.TrackLocalStaticRTP
	abs  [3]byte          // pion's path: the header extension's value,
	exts [1]rtp.Extension // and the packet's extension list
	hdr  rtp.Header       // scratch for a pion SRTP context (the profiles direct.go does not seal itself)
}

// binding is where a bound localTrack writes.
type binding struct {
	ssrc  uint32
	pt    uint8
	clock uint32 // the codec's clock rate
	ws    webrtc.TrackLocalWriter
	absID uint8 // the abs-send-time header extension's id, 0 when not negotiated
}

func newLocalTrack(s *Subscriber, c webrtc.RTPCodecCapability, id, streamID string) (*localTrack, error) {
	t, err := webrtc.NewTrackLocalStaticRTP(c, id, streamID)
	if err != nil {
		return nil, err
	}
	return &localTrack{TrackLocalStaticRTP: t, sub: s}, nil
}

// Bind is called by pion when the track is negotiated on the peer connection.
func (t *localTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	p, err := t.TrackLocalStaticRTP.Bind(ctx)
	if err == nil {
		b := &binding{ssrc: uint32(ctx.SSRC()), pt: uint8(p.PayloadType), clock: p.ClockRate, ws: ctx.WriteStream()}
		for _, x := range ctx.HeaderExtensions() {
			if x.URI == sdp.ABSSendTimeURI && x.ID > 0 && x.ID < 15 {
				b.absID = uint8(x.ID)
			}
		}
		t.bound.Store(b)
	}
	return p, err
}

// Unbind is called by pion when the track stops.
func (t *localTrack) Unbind(ctx webrtc.TrackLocalContext) error {
	if b := t.bound.Load(); b != nil && b.ssrc == uint32(ctx.SSRC()) {
		t.bound.CompareAndSwap(b, nil)
	}
	return t.TrackLocalStaticRTP.Unbind(ctx)
}

// send sends p with its SSRC and payload type set to the binding's and, as its one header extension, the
// send time (p is the caller's to change; it has no extensions of its own): the direct path writes the
// extension as it marshals, into batch when there is one; pion's path sets it on p. Before the track is
// bound, or after, or before the subscriber's DTLS connects, the packet goes nowhere, as with pion's.
func (t *localTrack) send(p *rtp.Packet, batch *sendBatch) error {
	if b := t.bound.Load(); b != t.cur {
		if t.cur = b; b != nil {
			t.curB = *b
		}
	}
	if t.cur == nil {
		return nil
	}
	b := &t.curB
	p.SSRC, p.PayloadType = b.ssrc, b.pt // the padding size is in the header already (rtp.Packet.Unmarshal)
	// The receiver's bandwidth estimator (REMB) times arrivals against abs-send-time (when negotiated).
	switch t.sub.path.Load() {
	case pathDirect:
		var err error
		if t.buf, err = t.sub.writeDirect(p, b.absID, absSendTime(t.sendAt), t.buf, &t.stream, &t.hdr, batch); err != nil {
			return err
		}
		// Counted as pion's report interceptor counts: every packet sent; the time of the newest timestamp.
		if d := p.SequenceNumber - t.lastSeq; t.packets == 0 || (d > 0 && d < 1<<15) {
			t.lastSeq = p.SequenceNumber
			if t.packets == 0 || p.Timestamp != t.lastTS {
				t.lastTS, t.lastAt = p.Timestamp, t.sendAt
			}
		}
		t.packets++
		t.octets += uint32(len(p.Payload))
		return nil
	case pathPion:
		if b.absID != 0 {
			v := absSendTime(t.sendAt)
			t.abs = [3]byte{byte(v >> 16), byte(v >> 8), byte(v)}
			p.Extension, p.Extensions = false, t.exts[:0] // no allocation: it fits in exts
			_ = p.SetExtension(b.absID, t.abs[:])         // RFC 5285 one-byte form
		}
		_, err := b.ws.WriteRTP(&p.Header, p.Payload)
		return err
	}
	return nil
}

// senderReport is the RTCP sender report of a directly sent track (nil before its first packet): the
// newest timestamp carried forward to now, and the counts. The caller serialises it with the writes.
func (t *localTrack) senderReport(now time.Time) *rtcp.SenderReport {
	b := t.bound.Load()
	if b == nil || t.packets == 0 {
		return nil
	}
	elapsed := now.Sub(time.Unix(0, t.lastAt)).Seconds()
	return &rtcp.SenderReport{SSRC: b.ssrc, NTPTime: ntpTime(now.UnixNano()),
		RTPTime: t.lastTS + uint32(int64(elapsed*float64(b.clock))), PacketCount: t.packets, OctetCount: t.octets}
}

// ntpTime is an NTP timestamp (seconds since 1900 in 32.32 fixed point) of a time in unix nanoseconds.
func ntpTime(unixNano int64) uint64 {
	secs := uint64(unixNano/1e9) + 2208988800 // NTP epoch, 1900
	frac := uint64(unixNano%1e9) << 32 / 1e9
	return secs<<32 | frac
}

// absSendTime is the 24-bit abs-send-time of a time in unix nanoseconds: seconds in 6.18 fixed point, the
// low bits of NTP time.
func absSendTime(unixNano int64) uint32 {
	return uint32(ntpTime(unixNano)>>14) & 0xFFFFFF
}
