package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/liveforum/liveforum/auth"
	"github.com/liveforum/liveforum/broker"
	"github.com/liveforum/liveforum/protocol"
	"github.com/liveforum/liveforum/rooms"
	"github.com/liveforum/liveforum/signaling"
)

// identity is who an authenticated connection is.
type identity struct {
	member  protocol.Member
	role    auth.Role
	room    string // room the credentials are for; "*" any
	expires time.Time
	// session: the identity came from a session token (guest, invitee); its expiry only limits reconnects,
	// not a connection that is already open.
	session bool
	invited bool // came with an invite link, or the session token it gave: may not create rooms
}

var (
	errNotJoined     = errors.New("server: not joined to that room")
	errAlreadyJoined = errors.New("server: already joined to that room")
	errTooManyRooms  = errors.New("server: too many rooms on one connection")
	errRateLimited   = errors.New("server: too many chat messages, slow down")
	errNoRoom        = errors.New("server: message needs a room")
	errAuthTwice     = errors.New("server: already authenticated")
	errBadName       = errors.New("server: a display name of 1 to 64 characters is required")
	errBadLang       = errors.New("server: bad language tag")
	errRoomGrant     = errors.New("server: credentials are not valid for this room")
)

// handle runs one client message. A non-zero code closes the connection.
func (c *conn) handle(ctx context.Context, env protocol.Envelope) (int, string) {
	ctx, cancel := context.WithTimeout(ctx, c.s.cfg.RequestTimeout)
	defer cancel()
	switch env.Type {
	case protocol.TypeAuth:
		return c.handleAuth(env)
	case protocol.TypePong:
		return 0, ""
	case protocol.TypeJoin:
		c.handleJoin(ctx, env)
	case protocol.TypeLeave:
		s, err := c.session(env)
		if err != nil {
			c.fail(env.ID, env.Room, err)
			return 0, ""
		}
		s.Leave(ctx, true)
		delete(c.sessions, env.Room)
		c.closeMedia(env.Room)
		c.mu.Lock()
		c.joined--
		delete(c.kicked, env.Room)
		c.mu.Unlock()
		c.reply(env.ID, env.Room, struct{}{})
	case protocol.TypeChat:
		c.handleChat(ctx, env)
	case protocol.TypeMediaSubscribe, protocol.TypeMediaAnswer, protocol.TypeMediaUnsubscribe,
		protocol.TypeMediaPublish, protocol.TypeMediaUnpublish, protocol.TypeMediaMute, protocol.TypeMediaQuality:
		c.handleMedia(ctx, env)
	case protocol.TypeRemove:
		var req protocol.RemoveRequest
		s, err := c.session(env)
		if err == nil {
			err = protocol.DecodeData(env.Data, &req)
		}
		if err == nil {
			err = s.Remove(ctx, req.Identity, req.Reason)
		}
		if err != nil {
			c.fail(env.ID, env.Room, err)
			return 0, ""
		}
		c.reply(env.ID, env.Room, struct{}{})
	default:
		c.fail(env.ID, env.Room, fmt.Errorf("%w: %q", errUnknownType, env.Type))
	}
	return 0, ""
}

var errUnknownType = errors.New("server: unknown message type")

func (c *conn) session(env protocol.Envelope) (*rooms.Session, error) {
	if env.Room == "" {
		return nil, errNoRoom
	}
	s := c.sessions[env.Room]
	if s == nil {
		return nil, errNotJoined
	}
	return s, nil
}

func (c *conn) handleAuth(env protocol.Envelope) (int, string) {
	if c.who != nil {
		c.fail(env.ID, "", errAuthTwice)
		return 0, ""
	}
	var req protocol.AuthRequest
	if err := protocol.DecodeData(env.Data, &req); err != nil {
		c.fail(env.ID, "", err)
		return protocol.CloseBadRequest, "malformed auth"
	}
	who, session, err := c.s.authenticate(req)
	if err != nil {
		c.fail(env.ID, "", err)
		if errors.Is(err, errBadName) || errors.Is(err, errBadLang) {
			return 0, "" // the person can correct it and try again
		}
		if errors.Is(err, auth.ErrExpired) {
			return protocol.CloseTokenExpired, "token expired"
		}
		return protocol.CloseUnauthorized, "unauthorized"
	}
	c.who = who
	c.log = c.log.With("member", who.member.Identity)
	_ = c.ws.SetReadDeadline(time.Now().Add(c.s.cfg.PingInterval + c.s.cfg.PongWait))
	c.reply(env.ID, "", protocol.AuthReply{Member: who.member, Room: who.room, Token: session,
		PingEvery: int(c.s.cfg.PingInterval / time.Second), Server: "liveforum " + c.s.cfg.Version})
	return 0, ""
}

// authenticate turns an auth request into an identity, and for guests and invitees a session token that
// keeps their identity across reconnects (renewed each time it is presented).
func (s *Server) authenticate(req protocol.AuthRequest) (*identity, string, error) {
	now := s.now()
	if req.Token == "" {
		return s.newcomer(req, auth.RoleGuest, "*", "guest-", time.Time{})
	}
	cl, err := s.cfg.Keys.Verify(req.Token, now)
	if err != nil {
		return nil, "", err
	}
	if cl.Invite {
		if !cl.Expires.After(now) { // accepted within the clock-skew leeway: too late to start a session
			return nil, "", fmt.Errorf("%w: invite", auth.ErrExpired)
		}
		return s.newcomer(req, cl.Role, cl.Room, "inv-", cl.Expires)
	}
	who := &identity{member: protocol.Member{Identity: cl.Identity, Name: cl.Name, Role: string(cl.Role), Lang: cl.Lang},
		role: cl.Role, room: cl.Room, expires: cl.Expires, invited: cl.Session && strings.HasPrefix(cl.Identity, "inv-")}
	if !cl.Session {
		return who, "", nil
	}
	// A session token is renewed on use; an invitee's never beyond its invite.
	cl.Expires, cl.IssuedAt = now.Add(s.cfg.SessionTTL), now
	if !cl.Until.IsZero() && cl.Until.Before(cl.Expires) {
		cl.Expires = cl.Until
	}
	who.expires = cl.Expires
	who.session = true
	tok, err := s.cfg.Keys.Sign(cl)
	return who, tok, err
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// newcomer mints an identity for someone who chose their own name (a guest, or the holder of an invite
// link), with a session token renewable until the given time (zero: indefinitely).
func (s *Server) newcomer(req protocol.AuthRequest, role auth.Role, room, prefix string, until time.Time) (*identity, string, error) {
	expires := s.now().Add(s.cfg.SessionTTL)
	if !until.IsZero() {
		expires = earlier(expires, until)
	}
	name := cleanName(req.Name)
	if name == "" || utf8.RuneCountInString(name) > protocol.MaxNameRunes {
		return nil, "", errBadName
	}
	if !rooms.ValidLang(req.Lang) {
		return nil, "", errBadLang
	}
	who := &identity{member: protocol.Member{Identity: prefix + uuid.NewString(), Name: name, Role: string(role), Lang: req.Lang},
		role: role, room: room, expires: expires, invited: prefix == "inv-", session: true}
	tok, err := s.cfg.Keys.Sign(auth.Claims{Room: room, Identity: who.member.Identity, Name: name, Role: role,
		Lang: req.Lang, Expires: expires, IssuedAt: s.now(), Session: true, Until: until})
	if err != nil {
		return nil, "", err
	}
	return who, tok, nil
}

// cleanName trims a display name and drops control and format characters.
func cleanName(n string) string {
	n = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return -1
		}
		return r
	}, n)
	return strings.Join(strings.Fields(n), " ")
}

func (c *conn) handleJoin(ctx context.Context, env protocol.Envelope) {
	var req protocol.JoinRequest
	err := protocol.DecodeData(env.Data, &req)
	switch {
	case err != nil:
	case env.Room == "":
		err = errNoRoom
	case c.who.room != "*" && c.who.room != env.Room:
		err = errRoomGrant
	case c.sessions[env.Room] != nil:
		err = errAlreadyJoined
	case len(c.sessions) >= c.s.cfg.MaxRoomsPerConn:
		err = errTooManyRooms
	}
	if err != nil {
		c.fail(env.ID, env.Room, err)
		return
	}
	a := rooms.Actor{Member: c.who.member, Guest: c.who.role == auth.RoleGuest, Moderator: c.who.role.CanModerate()}
	switch {
	case c.s.cfg.DevMode:
		a.Create = &rooms.Settings{Guests: true}
	case c.s.cfg.AutoCreate && c.who.room == env.Room && c.who.role != auth.RoleGuest && !c.who.invited:
		a.Create = &rooms.Settings{}
	}
	p := rooms.JoinParams{ID: env.ID, Since: req.Since, Presence: req.Presence == nil || *req.Presence}
	c.mu.Lock()
	c.joined++ // before the join, so a kick racing it does not take this for the last room
	delete(c.kicked, env.Room)
	c.mu.Unlock()
	s, err := c.s.reg.Join(ctx, a, env.Room, p, c)
	if err != nil {
		c.mu.Lock()
		c.joined--
		delete(c.kicked, env.Room)
		c.mu.Unlock()
		c.fail(env.ID, env.Room, err)
		return
	}
	c.sessions[env.Room] = s
}

func (c *conn) handleChat(ctx context.Context, env protocol.Envelope) {
	s, err := c.session(env)
	if err != nil {
		c.fail(env.ID, env.Room, err)
		return
	}
	if !c.who.role.RateExempt() && !c.chatRate.Allow() {
		c.s.metrics.rateLimited.Add(1)
		c.fail(env.ID, env.Room, errRateLimited)
		return
	}
	var req protocol.ChatSend
	if err := protocol.DecodeData(env.Data, &req); err != nil {
		c.fail(env.ID, env.Room, err)
		return
	}
	off, err := s.Chat(ctx, req.Text, req.Nonce)
	if err != nil {
		c.fail(env.ID, env.Room, err)
		return
	}
	c.reply(env.ID, env.Room, protocol.ChatSent{Offset: off})
}

// errorCode maps every error a request can meet to its protocol code and a message for the client. It is
// the one place where domain errors become wire errors.
func errorCode(err error) (string, string) {
	code := protocol.CodeInternal
	switch {
	case errors.Is(err, protocol.ErrMalformed), errors.Is(err, errNoRoom), errors.Is(err, errAuthTwice),
		errors.Is(err, errBadName), errors.Is(err, errBadLang), errors.Is(err, rooms.ErrEmptyText),
		errors.Is(err, rooms.ErrBadSettings):
		code = protocol.CodeBadRequest
	case errors.Is(err, errUnknownType):
		code = protocol.CodeUnknownType
	case errors.Is(err, auth.ErrExpired):
		code = protocol.CodeTokenExpired
	case errors.Is(err, auth.ErrInvalid):
		code = protocol.CodeUnauthorized
	case errors.Is(err, rooms.ErrForbidden), errors.Is(err, rooms.ErrGuests), errors.Is(err, errRoomGrant),
		errors.Is(err, errNoPublish), errors.Is(err, errAudioOnly), errors.Is(err, errForbiddenMedia):
		code = protocol.CodeForbidden
	case errors.Is(err, rooms.ErrNotFound), errors.Is(err, rooms.ErrNoMember), errors.Is(err, rooms.ErrClosed),
		errors.Is(err, errNoMedia), errors.Is(err, signaling.ErrNotFound):
		code = protocol.CodeNotFound
	case errors.Is(err, errNotJoined):
		code = protocol.CodeNotJoined
	case errors.Is(err, errAlreadyJoined):
		code = protocol.CodeAlreadyJoined
	case errors.Is(err, errTooManyRooms):
		code = protocol.CodeTooMany
	case errors.Is(err, rooms.ErrRoomFull):
		code = protocol.CodeRoomFull
	case errors.Is(err, signaling.ErrTooManyPublish):
		code = protocol.CodeStageFull
	case errors.Is(err, signaling.ErrBadSDP), errors.Is(err, signaling.ErrTooManyTracks), errors.Is(err, errNoStage):
		code = protocol.CodeBadRequest
	case errors.Is(err, errRateLimited):
		code = protocol.CodeRateLimited
	case errors.Is(err, rooms.ErrTooLong):
		code = protocol.CodeTooLong
	case errors.Is(err, broker.ErrUnavailable):
		return protocol.CodeUnavailable, "the room's log is unavailable right now; try again in a moment"
	case errors.Is(err, broker.ErrClosed), errors.Is(err, rooms.ErrRegistryClose), errors.Is(err, rooms.ErrRetry),
		errors.Is(err, signaling.ErrClosed),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		code = protocol.CodeUnavailable
	}
	if code == protocol.CodeInternal {
		return code, "internal error"
	}
	return code, err.Error()
}
