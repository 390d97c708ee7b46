package server

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/liveforum/liveforum/auth"
	"github.com/liveforum/liveforum/protocol"
	"github.com/liveforum/liveforum/signaling"
)

// Media signalling over the websocket: a member joined to a room subscribes to its stage (the server makes
// the offers and renegotiates when the stage changes) and, if its role allows, publishes (it offers). The
// media itself flows between the browser and the SFU of the room's media node: the node holding the
// room's media lease. A member connected to another node has its requests relayed there (relay.go).

var (
	errNoMedia   = errors.New("server: media is off on this server")
	errNoPublish = errors.New("server: this role may not publish")
	errAudioOnly = errors.New("server: interpreters publish audio only")
	errNoStage   = errors.New("server: not subscribed to the room's media")
)

// connMedia is a member's media in one room on the media node, or (holder set) where it is relayed to.
type connMedia struct {
	pub    *signaling.Publisher
	sub    *signaling.Subscriber
	holder string // the media node, when it is another node
}

func (m *connMedia) close() {
	if m.pub != nil {
		m.pub.Close()
	}
	if m.sub != nil {
		m.sub.Close()
	}
}

// mediaPeer is whom a media request comes from: a connection of this node, or a member connected to
// another node whose requests are relayed here.
type mediaPeer interface {
	member() (identity, name string, role auth.Role)
	media(room string) *connMedia // created if missing
	reply(id uint64, room string, v any)
	fail(id uint64, room string, err error)
	offer(room, sdp string, names map[string]string) // a server-made offer for the peer's stage, with its publishers' names
}

// mayPublish reports which media a role may publish: speakers and moderators audio and video,
// interpreters audio.
func mayPublish(r auth.Role) (audio, video bool) {
	switch r {
	case auth.RoleSpeaker, auth.RoleModerator:
		return true, true
	case auth.RoleInterpreter:
		return true, false
	}
	return false, false
}

// localPeer is a connection of this node as a mediaPeer. Read loop only.
type localPeer struct{ c *conn }

func (p localPeer) member() (string, string, auth.Role) {
	return p.c.who.member.Identity, p.c.who.member.Name, p.c.who.role
}
func (p localPeer) media(room string) *connMedia {
	if p.c.media == nil {
		p.c.media = map[string]*connMedia{}
	}
	m := p.c.media[room]
	if m == nil {
		m = &connMedia{}
		p.c.media[room] = m
	}
	return m
}
func (p localPeer) reply(id uint64, room string, v any)    { p.c.reply(id, room, v) }
func (p localPeer) fail(id uint64, room string, err error) { p.c.fail(id, room, err) }
func (p localPeer) offer(room, sdp string, names map[string]string) {
	p.c.Send(protocol.Marshal(protocol.TypeMediaOffer, 0, room, protocol.MediaSDP{SDP: sdp, Names: names}))
}

// handleMedia runs a media.* request of a member joined to the room: here if this node is the room's
// media node, else relayed to it.
func (c *conn) handleMedia(ctx context.Context, env protocol.Envelope) {
	err := func() error {
		if c.s.cfg.Media == nil {
			return errNoMedia
		}
		if _, err := c.session(env); err != nil {
			return err
		}
		holder, err := c.s.relay.holder(ctx, env.Room)
		if err != nil {
			return err
		}
		m := localPeer{c}.media(env.Room)
		if holder != c.s.relay.node {
			if m.pub != nil || m.sub != nil { // the media node changed: what was here is over
				m.close()
				m.pub, m.sub = nil, nil
			}
			m.holder = holder
			return c.s.relay.forward(ctx, c, holder, env)
		}
		if m.holder != "" {
			c.s.relay.closeRemote(c, env.Room, m.holder)
			m.holder = ""
		}
		return c.s.mediaRequest(ctx, localPeer{c}, env)
	}()
	switch {
	case errors.Is(err, errMediaNodeDown): // logged once per node (relay.isDown), not once per request
		code, msg := errorCode(err)
		c.Send(protocol.MarshalError(env.ID, env.Room, code, msg))
	case err != nil:
		c.fail(env.ID, env.Room, err)
	}
}

// mediaRequest runs a media.* request on this node's SFU, for a local or relayed peer.
func (s *Server) mediaRequest(ctx context.Context, p mediaPeer, env protocol.Envelope) error {
	room, err := s.cfg.Media.Room(env.Room)
	if err != nil {
		return err
	}
	m := p.media(env.Room)
	id, display, role := p.member()
	switch env.Type {
	case protocol.TypeMediaSubscribe:
		if m.sub != nil {
			m.sub.Close()
		}
		name := env.Room
		// The reply goes first: the client learns the ICE servers before the first offer arrives.
		p.reply(env.ID, env.Room, protocol.MediaConfig{ICEServers: iceServers(s.cfg.Media)})
		m.sub, err = room.Subscribe(id, func(sdp string) { p.offer(name, sdp, room.Names()) })
		if err != nil {
			p.fail(0, env.Room, err) // a notice: the reply went already
		}
		return nil
	case protocol.TypeMediaAnswer:
		var req protocol.MediaSDP
		if err := protocol.DecodeData(env.Data, &req); err != nil {
			return err
		}
		if m.sub == nil {
			return errNoStage
		}
		if err := m.sub.Answer(req.SDP); err != nil {
			return err
		}
	case protocol.TypeMediaQuality:
		var req protocol.MediaQuality
		if err := protocol.DecodeData(env.Data, &req); err != nil {
			return err
		}
		q, ok := signaling.ParseQuality(req.Quality)
		if !ok {
			return fmt.Errorf("%w: quality must be low, medium or high", protocol.ErrMalformed)
		}
		if m.sub == nil {
			return errNoStage
		}
		if !m.sub.SetQuality(req.Track, q) {
			return fmt.Errorf("%w: no track %q on the stage", signaling.ErrNotFound, req.Track)
		}
	case protocol.TypeMediaUnsubscribe:
		if m.sub != nil {
			m.sub.Close()
			m.sub = nil
		}
	case protocol.TypeMediaPublish:
		var req protocol.MediaSDP
		if err := protocol.DecodeData(env.Data, &req); err != nil {
			return err
		}
		audio, video := mayPublish(role)
		if !audio {
			return errNoPublish
		}
		kinds, err := signaling.OfferKinds(req.SDP)
		if err != nil {
			return err
		}
		if !video && slices.Contains(kinds, "video") {
			return errAudioOnly
		}
		pub, answer, err := room.Publish(ctx, id, display, req.SDP)
		if err != nil {
			return err
		}
		m.pub = pub
		p.reply(env.ID, env.Room, protocol.MediaSDP{SDP: answer})
		return nil
	case protocol.TypeMediaUnpublish:
		if m.pub != nil {
			m.pub.Close()
			m.pub = nil
		}
	case protocol.TypeMediaMute:
		var req protocol.MediaMute
		if err := protocol.DecodeData(env.Data, &req); err != nil {
			return err
		}
		if !role.CanModerate() {
			return fmt.Errorf("%w: only moderators mute others", errForbiddenMedia)
		}
		if req.Kind != "audio" && req.Kind != "video" {
			return fmt.Errorf("%w: kind must be audio or video", protocol.ErrMalformed)
		}
		pub := room.Publisher(req.Identity)
		if pub == nil {
			return fmt.Errorf("%w: %q is not publishing", signaling.ErrNotFound, req.Identity)
		}
		pub.Mute(req.Kind, req.Muted)
	}
	p.reply(env.ID, env.Room, struct{}{})
	return nil
}

var errForbiddenMedia = errors.New("server: forbidden")

// iceServers are the STUN/TURN servers for the browser's peer connections.
func iceServers(e *signaling.Engine) []protocol.ICEServer {
	out := []protocol.ICEServer{}
	for _, s := range e.ICEServers() {
		cred, _ := s.Credential.(string)
		out = append(out, protocol.ICEServer{URLs: s.URLs, Username: s.Username, Credential: cred})
	}
	return out
}

// closeMedia ends the connection's media in a room (it left, or was taken out). Read loop only.
func (c *conn) closeMedia(room string) {
	m := c.media[room]
	if m == nil {
		return
	}
	m.close()
	if m.holder != "" {
		c.s.relay.closeRemote(c, room, m.holder)
	}
	delete(c.media, room)
}
