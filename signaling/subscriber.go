package signaling

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Subscriber is one member's receiving peer connection. In the default mode it receives every track on
// the room's stage, one downTrack each, and the server starts every renegotiation (OnOffer, Answer). In
// stage mode (WHEP) it has one video and one audio track, fixed at the start, that follow the current
// speaker: the most recent publisher with a track of that kind.
type Subscriber struct {
	// How its packets are sent (direct.go), read for every packet, so first and together (see downTrack):
	// path is pathUndecided until DTLS connects; direct is filled in before path becomes pathDirect, and
	// remote (the selected pair's remote address) is set when the pair is one the direct path can use.
	path   atomic.Int32
	tcp    atomic.Bool // connected over ICE-TCP, where a write can block: every downTrack is isolated
	remote atomic.Pointer[peerAddr]
	direct direct

	room     *Room
	identity string
	pc       *webrtc.PeerConnection
	stage    bool
	onOffer  func(sdp string)
	started  time.Time
	keys     *keyCapture

	estimate   atomic.Uint64 // the member's last bandwidth estimate (REMB), bits per second
	estimateAt atomic.Int64  // when it arrived, unix nanoseconds (0: never)

	mu     sync.Mutex
	downs  map[*source]*downTrack // default mode
	stageD []*downTrack           // stage mode: one per kind
	closed bool
	done   chan struct{}

	selMu sync.Mutex // one choice of sources and layers at a time (refreshStage, selectLayers)

	negMu       sync.Mutex // the offer/answer exchange in progress
	negotiating bool
	again       bool
}

// Identity returns the subscribing member.
func (s *Subscriber) Identity() string { return s.identity }

// Done is closed when the subscriber has ended.
func (s *Subscriber) Done() <-chan struct{} { return s.done }

// newSubscriber makes a subscriber's peer connection, for the member's offer (WHEP) or for offers of the
// server's ("").
func (r *Room) newSubscriber(identity, offer string) (*Subscriber, error) {
	keys := &keyCapture{}
	api, err := r.e.subscriberAPI(keys, offer)
	if err != nil {
		return nil, err
	}
	// No header encryption (cryptex): the direct path does not do it.
	pc, err := api.NewPeerConnection(webrtc.Configuration{RTPHeaderEncryptionPolicy: webrtc.RTPHeaderEncryptionPolicyDisable})
	if err != nil {
		return nil, err
	}
	s := &Subscriber{room: r, identity: identity, pc: pc, started: time.Now(), downs: map[*source]*downTrack{},
		done: make(chan struct{}), keys: keys}
	pc.SCTP().Transport().ICETransport().OnSelectedCandidatePairChange(s.pairChanged)
	pc.SCTP().Transport().OnStateChange(func(st webrtc.DTLSTransportState) {
		if st == webrtc.DTLSTransportStateConnected {
			s.decidePath() // before pion's SRTP starts
		}
	})
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateFailed || st == webrtc.PeerConnectionStateClosed {
			go s.Close() // not from pion's callback: Close closes the peer connection
		}
	})
	return s, nil
}

// Subscribe starts sending the room's stage to a member. The server makes the offers: onOffer receives
// each (the first one before Subscribe returns, later ones when the stage changes), and the member's
// answer to each goes to Answer.
func (r *Room) Subscribe(identity string, onOffer func(sdp string)) (_ *Subscriber, err error) {
	defer r.forgetIfFailed(&err)
	s, err := r.newSubscriber(identity, "")
	if err != nil {
		return nil, err
	}
	s.onOffer = onOffer
	// A data channel gives the first offer a media section even when nothing is on stage yet, so the
	// connection is up (ICE, DTLS) before the first track comes.
	if _, err := s.pc.CreateDataChannel("liveforum", nil); err != nil {
		_ = s.pc.Close()
		return nil, err
	}
	if err := r.enlist(func() { r.subs[s] = struct{}{} }); err != nil {
		_ = s.pc.Close()
		return nil, err
	}
	s.mu.Lock()
	for _, u := range r.tracks() {
		s.addDownLocked(u)
	}
	s.mu.Unlock()
	if err := s.negotiate(); err != nil {
		s.Close()
		return nil, err
	}
	go s.selectLayers()
	return s, nil
}

// SubscribeStage answers a member's offer (WHEP) with the room's stage: the current speaker's video and
// audio, following whoever speaks next. No renegotiation is needed later.
func (r *Room) SubscribeStage(ctx context.Context, identity, offer string) (_ *Subscriber, _ string, err error) {
	defer r.forgetIfFailed(&err)
	kinds, err := offerKinds(offer)
	if err != nil {
		return nil, "", err
	}
	s, err := r.newSubscriber(identity, offer)
	if err != nil {
		return nil, "", err
	}
	s.stage = true
	if err := s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		_ = s.pc.Close()
		return nil, "", fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	offered := offerCodecs(offer)
	for _, k := range kinds {
		c := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}
		if k == webrtc.RTPCodecTypeVideo {
			c = r.stageVideoCodec(offered)
		}
		local, err := newLocalTrack(s, c, "stage-"+k.String(), "stage")
		if err != nil {
			_ = s.pc.Close()
			return nil, "", err
		}
		sender, err := s.pc.AddTrack(local)
		if err != nil {
			_ = s.pc.Close()
			return nil, "", fmt.Errorf("%w: %v", ErrBadSDP, err)
		}
		d := newDownTrack(s, local, r.e.cfg.QueuePackets)
		d.sender = sender
		s.stageD = append(s.stageD, d)
		go d.readRTCP()
	}
	answer, err := s.pc.CreateAnswer(nil)
	if err == nil {
		gathered := webrtc.GatheringCompletePromise(s.pc)
		if err = s.pc.SetLocalDescription(answer); err == nil {
			select {
			case <-gathered:
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
	}
	if err != nil {
		s.closeDowns()
		_ = s.pc.Close()
		return nil, "", fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	if err := r.enlist(func() { r.subs[s] = struct{}{} }); err != nil {
		s.closeDowns()
		_ = s.pc.Close()
		return nil, "", err
	}
	s.refreshStage()
	go s.selectLayers()
	return s, s.pc.LocalDescription().SDP, nil
}

// offerCodecs returns the codec names ("VP8", "H264", "OPUS") of an offer's video and audio sections.
func offerCodecs(offer string) map[string]bool {
	var sd sdp.SessionDescription
	out := map[string]bool{}
	if sd.UnmarshalString(offer) != nil {
		return out
	}
	for _, m := range sd.MediaDescriptions {
		for _, a := range m.Attributes {
			if a.Key != "rtpmap" {
				continue
			}
			// "96 VP8/90000"
			if _, rest, ok := strings.Cut(a.Value, " "); ok {
				name, _, _ := strings.Cut(rest, "/")
				out[m.MediaName.Media+"/"+strings.ToUpper(name)] = true
			}
		}
	}
	return out
}

// stageVideoCodec picks the stage's video codec for a WHEP viewer: the current speaker's codec when the
// viewer offered it (an encoder such as OBS may send H.264), else VP8. The stage then follows only
// speakers sending that codec.
func (r *Room) stageVideoCodec(offered map[string]bool) webrtc.RTPCodecCapability {
	var best *source
	for _, u := range r.tracks() {
		if u.kind == webrtc.RTPCodecTypeVideo && (best == nil || u.pub.started.After(best.pub.started)) {
			best = u
		}
	}
	if best != nil {
		c := best.codec()
		if _, name, ok := strings.Cut(c.MimeType, "/"); ok && offered["video/"+strings.ToUpper(name)] {
			return c
		}
	}
	return webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
}

// offerKinds returns the kinds of media a (WHEP) offer asks for: at most one audio and one video.
func offerKinds(offer string) ([]webrtc.RTPCodecType, error) {
	if len(offer) > MaxSDPBytes {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrBadSDP, MaxSDPBytes)
	}
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	var kinds []webrtc.RTPCodecType
	seen := map[string]bool{}
	for _, m := range sd.MediaDescriptions {
		k := m.MediaName.Media
		if (k == "audio" || k == "video") && !seen[k] {
			seen[k] = true
			kinds = append(kinds, webrtc.NewRTPCodecType(k))
		}
	}
	if len(kinds) == 0 {
		return nil, fmt.Errorf("%w: no audio or video", ErrBadSDP)
	}
	return kinds, nil
}

// addDownLocked adds a downTrack for u to the peer connection (the caller renegotiates).
func (s *Subscriber) addDownLocked(u *source) {
	if s.closed || s.downs[u] != nil || u.done() {
		return
	}
	first := u.layer(QualityHigh)
	if first == nil {
		return
	}
	local, err := newLocalTrack(s, u.codec(), u.id, u.pub.identity)
	if err != nil {
		s.room.e.log.Warn("cannot send a track", "room", s.room.name, "err", err)
		return
	}
	sender, err := s.pc.AddTrack(local)
	if err != nil {
		s.room.e.log.Warn("cannot add a track", "room", s.room.name, "member", s.identity, "err", err)
		return
	}
	d := newDownTrack(s, local, s.room.e.cfg.QueuePackets)
	d.sender = sender
	d.source = u
	s.downs[u] = d
	go d.readRTCP()
	d.follow(first)
}

func (s *Subscriber) trackAdded(u *source) {
	if s.stage {
		s.refreshStage()
		return
	}
	s.mu.Lock()
	_, had := s.downs[u]
	s.addDownLocked(u)
	added := !had && s.downs[u] != nil
	s.mu.Unlock()
	if added {
		_ = s.negotiate()
	}
}

func (s *Subscriber) trackRemoved(u *source) {
	if s.stage {
		s.refreshStage()
		return
	}
	s.mu.Lock()
	d := s.downs[u]
	delete(s.downs, u)
	closed := s.closed
	s.mu.Unlock()
	if d == nil || closed {
		return
	}
	d.close()
	_ = s.pc.RemoveTrack(d.sender)
	_ = s.negotiate()
}

// refreshStage points each stage track at the current speaker's track of its kind and codec.
func (s *Subscriber) refreshStage() {
	// Serialised, and reading the room's tracks inside: a refresh that started before a track was added
	// must not undo the choice of one that started after.
	s.selMu.Lock()
	defer s.selMu.Unlock()
	s.mu.Lock()
	downs := append([]*downTrack(nil), s.stageD...)
	s.mu.Unlock()
	tracks := s.room.tracks()
	for _, d := range downs {
		var best *source
		for _, u := range tracks {
			if u.kind != d.local.Kind() || u.done() || !strings.EqualFold(u.codec().MimeType, d.local.Codec().MimeType) {
				continue
			}
			if best == nil || u.pub.started.After(best.pub.started) {
				best = u
			}
		}
		s.mu.Lock()
		changed := d.source != best
		d.source = best
		s.mu.Unlock()
		if changed {
			var layer *upTrack
			if best != nil {
				layer = best.layer(d.quality())
			}
			d.follow(layer)
		}
	}
}

// negotiateTimeout bounds the gathering of an offer's candidates.
const negotiateTimeout = 10 * time.Second

// negotiate makes a new offer and hands it to onOffer, unless an exchange is in progress: then one more
// follows when its answer arrives.
func (s *Subscriber) negotiate() error {
	s.negMu.Lock()
	if s.negotiating {
		s.again = true
		s.negMu.Unlock()
		return nil
	}
	s.negotiating = true
	s.negMu.Unlock()
	offer, err := s.pc.CreateOffer(nil)
	if err != nil {
		return s.negotiated(err)
	}
	gathered := webrtc.GatheringCompletePromise(s.pc)
	if err := s.pc.SetLocalDescription(offer); err != nil {
		return s.negotiated(err)
	}
	select {
	case <-gathered:
	case <-time.After(negotiateTimeout):
		return s.negotiated(fmt.Errorf("signaling: gathering candidates took over %v", negotiateTimeout))
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return s.negotiated(ErrClosed) // no offer after Close: it would follow a newer subscription's reply
	}
	s.onOffer(s.pc.LocalDescription().SDP)
	return nil
}

// negotiated ends a failed exchange.
func (s *Subscriber) negotiated(err error) error {
	s.negMu.Lock()
	s.negotiating, s.again = false, false
	s.negMu.Unlock()
	return err
}

// Answer takes the member's answer to the last offer.
func (s *Subscriber) Answer(answer string) error {
	if len(answer) > MaxSDPBytes {
		return fmt.Errorf("%w: longer than %d bytes", ErrBadSDP, MaxSDPBytes)
	}
	s.negMu.Lock()
	if !s.negotiating {
		s.negMu.Unlock()
		return fmt.Errorf("%w: no offer is waiting for an answer", ErrBadSDP)
	}
	s.negMu.Unlock()
	if err := s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	s.negMu.Lock()
	again := s.again
	s.negotiating, s.again = false, false
	s.negMu.Unlock()
	if again {
		return s.negotiate()
	}
	return nil
}

func (s *Subscriber) closeDowns() {
	for _, d := range s.stageD {
		d.close()
	}
	for _, d := range s.downs {
		d.close()
	}
}

// Close ends the subscriber.
func (s *Subscriber) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.closeDowns()
	close(s.done)
	s.mu.Unlock()
	s.room.removeSubscriber(s)
	_ = s.pc.Close()
	s.remote.Store(nil) // the direct path sends no more
	s.keys.Forget()
}

// OfferKinds returns the kinds of media ("audio", "video") a session description has sections for, each
// once, or ErrBadSDP.
func OfferKinds(offer string) ([]string, error) {
	kinds, err := offerKinds(offer)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(kinds))
	for i, k := range kinds {
		out[i] = k.String()
	}
	return out, nil
}

// SetQuality caps the layer the member receives of a track (its id as the member's peer connection sees
// it): a small tile needs no more than the lowest layer. It reports whether the track was found.
func (s *Subscriber) SetQuality(trackID string, q Quality) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	found := false
	for src, d := range s.downs {
		if src.id == trackID {
			d.maxQ.Store(int32(q))
			found = true
		}
	}
	for _, d := range s.stageD {
		if d.local.ID() == trackID {
			d.maxQ.Store(int32(q))
			found = true
		}
	}
	return found
}
