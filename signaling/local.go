package signaling

import (
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// localTrack is a track sent to one subscriber: pion's TrackLocalStaticRTP for the negotiation (codec
// matching in Bind), written straight to the stream of its one binding. pion's own WriteRTP copies each
// packet into a pooled one and takes a lock to walk its bindings, per packet per subscriber; a localTrack
// belongs to one peer connection, so the binding is kept aside and the downTrack's packet (its own copy)
// is written as is.
type localTrack struct {
	*webrtc.TrackLocalStaticRTP
	bound atomic.Pointer[binding]

	// The abs-send-time extension written into each packet (the writer's: writes are serialised by the
	// downTrack).
	abs      [3]byte
	exts     [1]rtp.Extension
	sendTime uint32 // the abs-send-time to write (the downTrack sets it before each write)
}

// binding is where a bound localTrack writes.
type binding struct {
	ssrc  uint32
	pt    uint8
	ws    webrtc.TrackLocalWriter
	absID uint8 // the abs-send-time header extension's id, 0 when not negotiated
}

func newLocalTrack(c webrtc.RTPCodecCapability, id, streamID string) (*localTrack, error) {
	t, err := webrtc.NewTrackLocalStaticRTP(c, id, streamID)
	if err != nil {
		return nil, err
	}
	return &localTrack{TrackLocalStaticRTP: t}, nil
}

// Bind is called by pion when the track is negotiated on the peer connection.
func (t *localTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	p, err := t.TrackLocalStaticRTP.Bind(ctx)
	if err == nil {
		b := &binding{ssrc: uint32(ctx.SSRC()), pt: uint8(p.PayloadType), ws: ctx.WriteStream()}
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

// WriteRTP sends p, setting its SSRC and payload type to the binding's and its header extensions to the
// send time alone (p is the caller's to change; it has no extensions of its own). Before the track is
// bound, or after, the packet goes nowhere, as with pion's.
func (t *localTrack) WriteRTP(p *rtp.Packet) error {
	b := t.bound.Load()
	if b == nil {
		return nil
	}
	p.SSRC, p.PayloadType = b.ssrc, b.pt // the padding size is in the header already (rtp.Packet.Unmarshal)
	if b.absID != 0 {
		// The receiver's bandwidth estimator (REMB) times arrivals against it (RFC 5285 one-byte form).
		v := t.sendTime
		t.abs = [3]byte{byte(v >> 16), byte(v >> 8), byte(v)}
		p.Extension, p.Extensions = false, t.exts[:0] // no allocation: it fits in exts
		_ = p.SetExtension(b.absID, t.abs[:])
	}
	_, err := b.ws.WriteRTP(&p.Header, p.Payload)
	return err
}

// absSendTime is the 24-bit abs-send-time of t: seconds in 6.18 fixed point, the low bits of NTP time.
func absSendTime(t time.Time) uint32 {
	secs := uint64(t.Unix()) + 2208988800 // NTP epoch, 1900
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return uint32((secs<<32|frac)>>14) & 0xFFFFFF
}
