package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/pion/webrtc/v4"

	"github.com/liveforum/liveforum/auth"
	"github.com/liveforum/liveforum/broker"
	"github.com/liveforum/liveforum/protocol"
	"github.com/liveforum/liveforum/rooms"
	"github.com/liveforum/liveforum/signaling"
)

// WHIP (RFC 9725) and WHEP over HTTP: a tool such as OBS, GStreamer or ffmpeg POSTs an SDP offer with a
// bearer token and gets the answer, complete with the SFU's candidates (no trickle), and a session URL
// to DELETE when it is done. WHIP publishes into the room's SFU as the token's member; WHEP receives the
// room's stage (signaling.Room.SubscribeStage). The media then flows straight between the tool and this
// node's media port.

// MaxHTTPMediaSessions bounds the WHIP and WHEP sessions one node serves at a time; beyond it a POST is
// answered 503 with Retry-After. (The SFU bounds publishers per room on its own.)
const MaxHTTPMediaSessions = 1000

// mediaRequestTimeout bounds a POST's room lookup and offer/answer exchange.
const mediaRequestTimeout = 10 * time.Second

// Errors of WHIP and WHEP requests; httpMediaStatus maps them (and the errors of the layers below) to
// HTTP statuses.
var (
	errNoToken          = errors.New("server: a bearer token is required")
	errInviteNoIdentity = errors.New("server: an invite link names nobody and cannot publish; use an access token")
	errContentType      = errors.New("server: send the offer as application/sdp")
	errSDPTooLarge      = fmt.Errorf("server: offer longer than %d bytes", signaling.MaxSDPBytes)
	errTooManySessions  = errors.New("server: too many media sessions on this node, try again later")
	errNoSession        = errors.New("server: no such session")
	errNotYourSession   = errors.New("server: the session is another member's")
	errStopping         = errors.New("server: shutting down")
	errForeignOrigin    = errors.New("server: origin not allowed")
)

// httpMediaStatus is the one place where the errors of a WHIP or WHEP request become HTTP statuses.
func httpMediaStatus(err error) int {
	switch {
	case errors.Is(err, errNoMedia), errors.Is(err, errNoSession), errors.Is(err, rooms.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, errNoToken), errors.Is(err, auth.ErrInvalid), errors.Is(err, auth.ErrExpired):
		return http.StatusUnauthorized
	case errors.Is(err, errRoomGrant), errors.Is(err, errNoPublish), errors.Is(err, errAudioOnly),
		errors.Is(err, errInviteNoIdentity), errors.Is(err, errNotYourSession), errors.Is(err, rooms.ErrGuests),
		errors.Is(err, errForeignOrigin):
		return http.StatusForbidden
	case errors.Is(err, errContentType):
		return http.StatusUnsupportedMediaType
	case errors.Is(err, errSDPTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, signaling.ErrBadSDP), errors.Is(err, signaling.ErrTooManyTracks):
		return http.StatusBadRequest
	case errors.Is(err, signaling.ErrTooManyPublish):
		return http.StatusConflict
	case errors.Is(err, errTooManySessions), errors.Is(err, errStopping), errors.Is(err, signaling.ErrClosed),
		errors.Is(err, broker.ErrUnavailable), errors.Is(err, broker.ErrClosed), errors.Is(err, rooms.ErrRegistryClose),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// httpMedia holds the WHIP and WHEP sessions started over HTTP, by id. Each session has a goroutine that
// forgets it when its publisher or subscriber ends, however that happens (DELETE, the peer going away, a
// moderator, the engine closing).
type httpMedia struct {
	mu       sync.Mutex
	sessions map[string]*httpMediaSession
	closed   bool
	wg       sync.WaitGroup // the sessions' watchers
}

// httpMediaSession is one WHIP publisher or WHEP viewer.
type httpMediaSession struct {
	id       string
	kind     string // "whip" or "whep"
	room     string
	identity string
	name     string // the token's display name (a WHIP publisher's, shown on its tile)
	// token is the SHA-256 of the bearer token that started the session; zero for a guest's WHEP without
	// one, whose session URL alone may end it.
	token  [32]byte
	anyone bool
	end    func()
	done   <-chan struct{}
}

// add registers a session and starts its watcher, or fails when the node has too many or is stopping.
func (m *httpMedia) add(ms *httpMediaSession) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.closed:
		return errStopping
	case len(m.sessions) >= MaxHTTPMediaSessions:
		return errTooManySessions
	}
	if m.sessions == nil {
		m.sessions = map[string]*httpMediaSession{}
	}
	m.sessions[ms.id] = ms
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		<-ms.done
		m.mu.Lock()
		if m.sessions[ms.id] == ms {
			delete(m.sessions, ms.id)
		}
		m.mu.Unlock()
	}()
	return nil
}

func (m *httpMedia) get(id string) *httpMediaSession {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sessions[id]
}

func (m *httpMedia) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sessions)
}

// closeAll ends every session, refuses new ones, and waits for the watchers.
func (m *httpMedia) closeAll() {
	m.mu.Lock()
	m.closed = true
	all := make([]*httpMediaSession, 0, len(m.sessions))
	for _, ms := range m.sessions {
		all = append(all, ms)
	}
	m.mu.Unlock()
	for _, ms := range all {
		ms.end()
	}
	m.wg.Wait()
}

// mediaHTTPRoutes mounts WHIP and WHEP.
func (s *Server) mediaHTTPRoutes(r chi.Router) {
	r.Group(func(r chi.Router) {
		r.Use(s.mediaCORS)
		r.HandleFunc("/whip/{room}", s.serveMediaEndpoint("whip"))
		r.HandleFunc("/whip/{room}/{id}", s.serveMediaResource("whip"))
		r.HandleFunc("/whep/{room}", s.serveMediaEndpoint("whep"))
		r.HandleFunc("/whep/{room}/{id}", s.serveMediaResource("whep"))
	})
}

// mediaCORS lets pages of the allowed origins (-allowed-origins, as for /ws) call WHIP and WHEP, and
// refuses requests from other origins. Tools send no Origin and are not concerned.
func (s *Server) mediaCORS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		if !s.checkOrigin(r) {
			s.log.Info("media request from a foreign origin refused", "origin", origin)
			mediaError(w, errForeignOrigin)
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
		h.Set("Access-Control-Expose-Headers", "Location, ETag, Link, Accept-Post, Allow")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", "POST, DELETE, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match")
			h.Set("Access-Control-Max-Age", "600")
		}
		next.ServeHTTP(w, r)
	})
}

// mediaError answers a failed WHIP or WHEP request in plain text.
func mediaError(w http.ResponseWriter, err error) {
	code := httpMediaStatus(err)
	msg := err.Error()
	switch code {
	case http.StatusUnauthorized:
		challenge := `Bearer realm="liveforum"`
		if errors.Is(err, auth.ErrExpired) {
			challenge += `, error="invalid_token", error_description="token expired"`
		} else if !errors.Is(err, errNoToken) {
			challenge += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
		if errors.Is(err, auth.ErrExpired) {
			msg = "token expired"
		} else if errors.Is(err, auth.ErrInvalid) {
			msg = "invalid token"
		}
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "5")
	case http.StatusInternalServerError:
		msg = "internal error"
	}
	http.Error(w, msg, code)
}

// serveMediaEndpoint is /whip/{room} or /whep/{room}: POST starts a session; OPTIONS says what POST takes.
func (s *Server) serveMediaEndpoint(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost:
			if err := s.startMedia(w, r, kind); err != nil {
				if httpMediaStatus(err) == http.StatusInternalServerError {
					s.log.Error("media session failed", "kind", kind, "room", chi.URLParam(r, "room"), "err", err)
				} else {
					s.log.Debug("media session refused", "kind", kind, "room", chi.URLParam(r, "room"), "err", err)
				}
				mediaError(w, err)
			}
		case http.MethodOptions:
			w.Header().Set("Allow", "POST, OPTIONS")
			w.Header().Set("Accept-Post", "application/sdp")
			w.WriteHeader(http.StatusNoContent)
		default:
			w.Header().Set("Allow", "POST, OPTIONS")
			http.Error(w, "POST an SDP offer here", http.StatusMethodNotAllowed)
		}
	}
}

// serveMediaResource is a session's URL: DELETE ends it. Neither trickle ICE nor ICE restarts are
// supported (the answer carries every candidate), so PATCH is not allowed, as RFC 9725 asks.
func (s *Server) serveMediaResource(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodDelete:
			if err := s.endMedia(r, kind); err != nil {
				mediaError(w, err)
				return
			}
			w.WriteHeader(http.StatusOK)
		case http.MethodOptions:
			w.Header().Set("Allow", "DELETE, OPTIONS")
			w.WriteHeader(http.StatusNoContent)
		default:
			w.Header().Set("Allow", "DELETE, OPTIONS")
			http.Error(w, "trickle ICE and ICE restarts are not supported: the answer has every candidate", http.StatusMethodNotAllowed)
		}
	}
}

// mediaCaller is who asks for a session.
type mediaCaller struct {
	claims *auth.Claims // nil: no token (a guest's WHEP)
	token  string
}

// bearer reads and checks the request's bearer token; with none, the caller is anonymous.
func (s *Server) bearer(r *http.Request) (mediaCaller, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return mediaCaller{}, nil
	}
	tok, ok := auth.BearerToken(h)
	if !ok {
		return mediaCaller{}, fmt.Errorf("%w: not a bearer token", auth.ErrInvalid)
	}
	cl, err := s.cfg.Keys.Verify(tok, s.now())
	if err != nil {
		return mediaCaller{}, err
	}
	return mediaCaller{claims: &cl, token: tok}, nil
}

// readOffer checks the content type and reads the body, bounded to signaling.MaxSDPBytes.
func readOffer(w http.ResponseWriter, r *http.Request) (string, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/sdp" {
		return "", errContentType
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, signaling.MaxSDPBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return "", errSDPTooLarge
		}
		return "", fmt.Errorf("%w: reading the offer: %v", signaling.ErrBadSDP, err)
	}
	return string(b), nil
}

// mediaRoom checks that the room exists, creating it under the same rules as a websocket join
// (handleJoin): anyone in development mode (the room admits guests), or with -auto-create a token that
// names exactly this room and is neither a guest's nor an invitee's. It returns the room's settings.
func (s *Server) mediaRoom(ctx context.Context, name string, c mediaCaller) (rooms.Settings, error) {
	st, err := s.reg.Get(ctx, name)
	if err == nil {
		return st.Settings, nil
	}
	if !errors.Is(err, rooms.ErrNotFound) {
		return rooms.Settings{}, err
	}
	var create *rooms.Settings
	switch {
	case s.cfg.DevMode:
		create = &rooms.Settings{Name: name, Guests: true}
	case s.cfg.AutoCreate && c.claims != nil && c.claims.Room == name && c.claims.Role != auth.RoleGuest && !invitee(c.claims):
		create = &rooms.Settings{Name: name}
	default:
		return rooms.Settings{}, err
	}
	if _, err := s.reg.Create(ctx, *create); err != nil && !errors.Is(err, rooms.ErrExists) {
		return rooms.Settings{}, err
	}
	st, err = s.reg.Get(ctx, name)
	return st.Settings, err
}

// invitee reports whether claims are an invite link or the session token of someone who came with one:
// such members may not create rooms.
func invitee(cl *auth.Claims) bool {
	return cl.Invite || cl.Session && strings.HasPrefix(cl.Identity, "inv-")
}

// startMedia runs a WHIP or WHEP POST.
func (s *Server) startMedia(w http.ResponseWriter, r *http.Request, kind string) error {
	engine := s.cfg.Media
	if engine == nil {
		return errNoMedia
	}
	s.mu.Lock()
	stopping := s.stopping
	s.mu.Unlock()
	if stopping {
		return errStopping
	}
	name := chi.URLParam(r, "room")
	if protocol.ValidRoomName(name) != nil {
		return fmt.Errorf("%w: %q", rooms.ErrNotFound, name)
	}
	c, err := s.bearer(r)
	if err != nil {
		return err
	}
	if c.claims == nil && kind == "whip" {
		return errNoToken
	}
	if c.claims != nil && !c.claims.AllowsRoom(name) {
		return errRoomGrant
	}
	if kind == "whip" {
		if c.claims.Invite {
			return errInviteNoIdentity
		}
		if audio, _ := mayPublish(c.claims.Role); !audio {
			return fmt.Errorf("%w: %s", errNoPublish, c.claims.Role)
		}
	}
	offer, err := readOffer(w, r)
	if err != nil {
		return err
	}
	kinds, err := signaling.OfferKinds(offer)
	if err != nil {
		return err
	}
	if kind == "whip" {
		if _, video := mayPublish(c.claims.Role); !video && slices.Contains(kinds, "video") {
			return errAudioOnly
		}
	}

	ctx, cancel := context.WithTimeout(r.Context(), mediaRequestTimeout)
	defer cancel()
	set, err := s.mediaRoom(ctx, name, c)
	if err != nil {
		return err
	}
	guest := c.claims == nil || c.claims.Role == auth.RoleGuest
	if guest && !set.Guests {
		if c.claims == nil {
			return fmt.Errorf("%w: the room admits no guests", errNoToken)
		}
		return fmt.Errorf("%w: %q", rooms.ErrGuests, name)
	}
	if s.whip.count() >= MaxHTTPMediaSessions { // checked again when the session is added
		return errTooManySessions
	}
	ms := &httpMediaSession{id: uuid.NewString(), kind: kind, room: name}
	if c.claims != nil {
		ms.identity, ms.name, ms.token = c.claims.Identity, strings.TrimSpace(c.claims.Name), sha256.Sum256([]byte(c.token))
	} else {
		ms.anyone = true
	}
	if ms.identity == "" { // a guest without a token, or an invite link (WHEP)
		ms.identity = "whep-" + ms.id[:8]
	}
	holder, err := s.relay.holder(ctx, name)
	if err != nil {
		return err
	}
	var room *signaling.Room
	if holder == s.relay.node {
		if room, err = engine.Room(name); err != nil { // only where the session runs: an empty one stays
			return err
		}
	}
	var answer string
	switch {
	case holder != s.relay.node:
		// Another node holds the room's media: the session runs there; its resource stays here.
		var o *outHTTP
		answer, o, err = s.relay.startRemoteHTTP(ctx, holder, kind, name, ms.identity, ms.name, offer)
		if err == nil {
			ms.end, ms.done = o.end, o.Done()
		}
	case kind == "whip":
		var pub *signaling.Publisher
		pub, answer, err = room.Publish(ctx, ms.identity, ms.name, offer)
		if err == nil {
			ms.end, ms.done = pub.Close, pub.Done()
		}
	default:
		var sub *signaling.Subscriber
		sub, answer, err = room.SubscribeStage(ctx, ms.identity, offer)
		if err == nil {
			ms.end, ms.done = sub.Close, sub.Done()
		}
	}
	if err != nil {
		return err
	}
	if err := s.whip.add(ms); err != nil {
		ms.end()
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "application/sdp")
	h.Set("Location", "/"+kind+"/"+url.PathEscape(name)+"/"+ms.id)
	h.Set("ETag", newETag())
	for _, l := range iceLinks(engine.ICEServers()) {
		h.Add("Link", l)
	}
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, answer)
	s.log.Info("media session started", "kind", kind, "room", name, "member", ms.identity, "session", ms.id)
	return nil
}

// endMedia runs a DELETE on a session: the bearer token that started it (even expired since), or any
// valid token of the same member or of a moderator of the room, ends it. A guest's WHEP session started
// without a token is ended by its URL alone.
func (s *Server) endMedia(r *http.Request, kind string) error {
	if s.cfg.Media == nil {
		return errNoMedia
	}
	name, id := chi.URLParam(r, "room"), chi.URLParam(r, "id")
	ms := s.whip.get(id)
	if ms == nil || ms.kind != kind || ms.room != name {
		return errNoSession
	}
	if !ms.anyone {
		tok, ok := auth.BearerToken(r.Header.Get("Authorization"))
		if !ok {
			return errNoToken
		}
		sum := sha256.Sum256([]byte(tok))
		if subtle.ConstantTimeCompare(sum[:], ms.token[:]) != 1 {
			cl, err := s.cfg.Keys.Verify(tok, s.now())
			if err != nil {
				return err
			}
			if !cl.AllowsRoom(name) || cl.Identity != ms.identity && !cl.Role.CanModerate() {
				return errNotYourSession
			}
		}
	}
	ms.end()
	s.log.Info("media session ended", "kind", kind, "room", name, "member", ms.identity, "session", ms.id)
	return nil
}

// iceLinks are the STUN and TURN servers as RFC 9725 §4.6 Link header values.
func iceLinks(servers []webrtc.ICEServer) []string {
	var out []string
	for _, sv := range servers {
		cred, _ := sv.Credential.(string)
		for _, u := range sv.URLs {
			l := "<" + u + `>; rel="ice-server"`
			if sv.Username != "" || cred != "" {
				l += `; username="` + quoted(sv.Username) + `"; credential="` + quoted(cred) + `"; credential-type="password"`
			}
			out = append(out, l)
		}
	}
	return out
}

// quoted escapes s for an HTTP quoted-string.
func quoted(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}

func newETag() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return `"` + hex.EncodeToString(b[:]) + `"`
}
