package signaling

import (
	"sync/atomic"

	"github.com/pion/rtp"
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
}

// binding is where a bound localTrack writes.
type binding struct {
	ssrc uint32
	pt   uint8
	ws   webrtc.TrackLocalWriter
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
		t.bound.Store(&binding{ssrc: uint32(ctx.SSRC()), pt: uint8(p.PayloadType), ws: ctx.WriteStream()})
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

// WriteRTP sends p, setting its SSRC and payload type to the binding's (p is the caller's to change). Before
// the track is bound, or after, the packet goes nowhere, as with pion's.
func (t *localTrack) WriteRTP(p *rtp.Packet) error {
	b := t.bound.Load()
	if b == nil {
		return nil
	}
	p.SSRC, p.PayloadType = b.ssrc, b.pt // the padding size is in the header already (rtp.Packet.Unmarshal)
	_, err := b.ws.WriteRTP(&p.Header, p.Payload)
	return err
}
