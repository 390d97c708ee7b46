package signaling

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Publisher is one member's publishing peer connection: it receives the member's tracks.
type Publisher struct {
	room     *Room
	identity string
	name     string // the member's display name, for subscribers (Room.Names)
	pc       *webrtc.PeerConnection
	started  time.Time

	mu      sync.Mutex
	sources []*source
	layers  int // upTracks received, all sources
	closed  bool
	done    chan struct{}
}

// Identity returns the publishing member.
func (p *Publisher) Identity() string { return p.identity }

// Done is closed when the publisher has ended.
func (p *Publisher) Done() <-chan struct{} { return p.done }

func (p *Publisher) tracks() []*source {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*source(nil), p.sources...)
}

// upTracks returns every layer of every source.
func (p *Publisher) upTracks() []*upTrack {
	var out []*upTrack
	for _, s := range p.tracks() {
		s.mu.Lock()
		out = append(out, s.layers...)
		s.mu.Unlock()
	}
	return out
}

// checkOffer parses a client's offer and counts the media it would send.
func checkOffer(offer string, maxTracks int) error {
	if len(offer) > MaxSDPBytes {
		return fmt.Errorf("%w: longer than %d bytes", ErrBadSDP, MaxSDPBytes)
	}
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	media := 0
	for _, m := range sd.MediaDescriptions {
		switch m.MediaName.Media {
		case "audio", "video":
			media++
		}
	}
	if media == 0 {
		return fmt.Errorf("%w: no audio or video", ErrBadSDP)
	}
	if media > maxTracks {
		return fmt.Errorf("%w: %d media sections, at most %d", ErrTooManyTracks, media, maxTracks)
	}
	return nil
}

// answerOffer sets the client's offer on pc and returns the complete answer (with every candidate: no
// trickle), bounded by ctx.
func answerOffer(ctx context.Context, pc *webrtc.PeerConnection, offer string) (string, error) {
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return pc.LocalDescription().SDP, nil
}

// Publish starts the member's publishing from its SDP offer and returns the answer. A member who already
// publishes in the room is replaced. The caller has checked that the member may publish; name is the
// member's display name, given to subscribers (Names).
func (r *Room) Publish(ctx context.Context, identity, name, offer string) (_ *Publisher, _ string, err error) {
	defer r.forgetIfFailed(&err)
	cfg := r.e.cfg
	if err := checkOffer(offer, cfg.MaxTracksPerPublisher); err != nil {
		return nil, "", err
	}
	r.mu.Lock()
	_, again := r.pubs[identity]
	full := !again && len(r.pubs) >= cfg.MaxPublishersPerRoom
	r.mu.Unlock()
	if full {
		return nil, "", fmt.Errorf("%w: %d", ErrTooManyPublish, cfg.MaxPublishersPerRoom)
	}
	pc, err := r.e.pubAPI.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, "", err
	}
	p := &Publisher{room: r, identity: identity, name: name, pc: pc, started: time.Now(), done: make(chan struct{})}
	pc.OnTrack(p.onTrack)
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed {
			go p.Close() // not from pion's callback: Close closes the peer connection
		}
	})
	answer, err := answerOffer(ctx, pc, offer)
	if err != nil {
		_ = pc.Close()
		return nil, "", err
	}
	var old *Publisher
	if err := r.enlist(func() { old, r.pubs[identity] = r.pubs[identity], p }); err != nil {
		_ = pc.Close()
		return nil, "", err
	}
	if old != nil {
		old.Close()
	}
	r.e.wg.Add(1)
	go p.remb()
	r.e.log.Info("publishing", "room", r.name, "member", identity)
	return p, answer, nil
}

// maxLayers bounds the simulcast layers of one track.
const maxLayers = 3

// onTrack starts forwarding one of the publisher's tracks, or one simulcast layer of it (pion calls it
// once per rid).
func (p *Publisher) onTrack(remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	p.mu.Lock()
	var src *source
	for _, s := range p.sources {
		if s.id == p.identity+":"+remote.ID() && s.kind == remote.Kind() {
			src = s
		}
	}
	tooMany := src == nil && len(p.sources) >= p.room.e.cfg.MaxTracksPerPublisher ||
		src != nil && (remote.RID() == "" || len(src.layers) >= maxLayers)
	if p.closed || tooMany {
		p.mu.Unlock()
		_ = recv.Stop()
		return
	}
	fresh := src == nil
	if fresh {
		src = newSource(p, remote)
		p.sources = append(p.sources, src)
	}
	u := newUpTrack(p, remote, recv)
	u.src = src
	u.muted.Store(p.room.isMuted(p.identity, remote.Kind().String()))
	src.add(u)
	p.layers++
	p.mu.Unlock()
	go u.run()
	go u.drainRTCP()
	if fresh {
		p.room.trackAdded(src)
	}
}

// remb asks the publisher, every two seconds, to stay under the configured bitrate.
func (p *Publisher) remb() {
	defer p.room.e.wg.Done()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
			var ssrcs []uint32
			for _, u := range p.upTracks() {
				if u.remote.Kind() == webrtc.RTPCodecTypeVideo {
					ssrcs = append(ssrcs, uint32(u.remote.SSRC()))
				}
			}
			if len(ssrcs) > 0 {
				_ = p.pc.WriteRTCP([]rtcp.Packet{&rtcp.ReceiverEstimatedMaximumBitrate{
					Bitrate: float32(p.room.e.cfg.MaxBitrate), SSRCs: ssrcs}})
			}
		}
	}
}

// Mute stops (or resumes) forwarding the publisher's media of a kind ("audio" or "video") at the server:
// a moderator's mute holds whatever the member's browser does, also over a new media.publish (see
// Room.Mute).
func (p *Publisher) Mute(kind string, muted bool) { p.room.Mute(p.identity, kind, muted) }

func (p *Publisher) applyMute(kind string, muted bool) {
	for _, u := range p.upTracks() {
		if strings.EqualFold(u.remote.Kind().String(), kind) {
			u.muted.Store(muted)
		}
	}
}

// Close ends the publisher: its tracks end for every subscriber.
func (p *Publisher) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	sources := p.sources
	p.sources = nil
	close(p.done)
	p.mu.Unlock()
	p.room.removePublisher(p)
	for _, s := range sources {
		s.end()
		p.room.trackRemoved(s)
	}
	_ = p.pc.Close()
	p.room.e.log.Info("publishing ended", "room", p.room.name, "member", p.identity)
}
