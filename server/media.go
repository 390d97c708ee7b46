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
// media itself flows between the browser and this node's SFU.

var (
	errNoMedia   = errors.New("server: media is off on this server")
	errNoPublish = errors.New("server: this role may not publish")
	errAudioOnly = errors.New("server: interpreters publish audio only")
	errNoStage   = errors.New("server: not subscribed to the room's media")
)

// connMedia is a connection's media in one room. Read loop only.
type connMedia struct {
	pub *signaling.Publisher
	sub *signaling.Subscriber
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

// handleMedia runs a media.* request of a member joined to the room.
func (c *conn) handleMedia(ctx context.Context, env protocol.Envelope) {
	if err := c.media1(ctx, env); err != nil {
		c.fail(env.ID, env.Room, err)
	}
}

func (c *conn) media1(ctx context.Context, env protocol.Envelope) error {
	if c.s.cfg.Media == nil {
		return errNoMedia
	}
	if _, err := c.session(env); err != nil {
		return err
	}
	room, err := c.s.cfg.Media.Room(env.Room)
	if err != nil {
		return err
	}
	if c.media == nil {
		c.media = map[string]*connMedia{}
	}
	m := c.media[env.Room]
	if m == nil {
		m = &connMedia{}
		c.media[env.Room] = m
	}
	id := c.who.member.Identity
	switch env.Type {
	case protocol.TypeMediaSubscribe:
		if m.sub != nil {
			m.sub.Close()
		}
		name := env.Room
		// The reply goes first: the client learns the ICE servers before the first offer arrives.
		c.reply(env.ID, env.Room, protocol.MediaConfig{ICEServers: iceServers(c.s.cfg.Media)})
		m.sub, err = room.Subscribe(id, func(sdp string) {
			c.Send(protocol.Marshal(protocol.TypeMediaOffer, 0, name, protocol.MediaSDP{SDP: sdp}))
		})
		if err != nil {
			c.fail(0, env.Room, err) // a notice: the reply went already
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
		audio, video := mayPublish(c.who.role)
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
		pub, answer, err := room.Publish(ctx, id, req.SDP)
		if err != nil {
			return err
		}
		m.pub = pub
		c.reply(env.ID, env.Room, protocol.MediaSDP{SDP: answer})
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
		if !c.who.role.CanModerate() {
			return fmt.Errorf("%w: only moderators mute others", errForbiddenMedia)
		}
		if req.Kind != "audio" && req.Kind != "video" {
			return fmt.Errorf("%w: kind must be audio or video", protocol.ErrMalformed)
		}
		p := room.Publisher(req.Identity)
		if p == nil {
			return fmt.Errorf("%w: %q is not publishing", signaling.ErrNotFound, req.Identity)
		}
		p.Mute(req.Kind, req.Muted)
	}
	c.reply(env.ID, env.Room, struct{}{})
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

// closeMedia ends the connection's media in a room (it left, or was taken out).
func (c *conn) closeMedia(room string) {
	m := c.media[room]
	if m == nil {
		return
	}
	if m.pub != nil {
		m.pub.Close()
	}
	if m.sub != nil {
		m.sub.Close()
	}
	delete(c.media, room)
}
