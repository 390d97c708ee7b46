package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/liveforum/liveforum/auth"
	"github.com/liveforum/liveforum/protocol"
	"github.com/liveforum/liveforum/rooms"
)

// maxBody bounds admin API request bodies.
const maxBody = 64 << 10

func (s *Server) apiRoutes(r chi.Router) {
	r.Post("/rooms", s.apiCreateRoom)
	r.Get("/rooms", s.apiListRooms)
	r.Get("/rooms/{room}", s.apiGetRoom)
	r.Delete("/rooms/{room}", s.apiCloseRoom)
	r.Post("/rooms/{room}/invites", s.apiInvite)
	r.Post("/tokens", s.apiToken)
}

// apiRoom is a room as every admin API answer shows it.
type apiRoom struct {
	Name            string    `json:"name"`
	Title           string    `json:"title,omitempty"`
	Languages       []string  `json:"languages,omitempty"`
	Guests          bool      `json:"guests"`
	Listed          bool      `json:"listed"`
	MaxMembers      int       `json:"max_members,omitempty"`
	EmptyTTLSeconds int64     `json:"empty_ttl_seconds"`
	Created         time.Time `json:"created"`
	Members         int       `json:"members"`
	Local           int       `json:"local_connections"`
	Epoch           string    `json:"epoch,omitempty"`
	Offset          uint64    `json:"offset"`
	Loaded          bool      `json:"loaded"`
}

func toAPIRoom(st rooms.Status) apiRoom {
	return apiRoom{Name: st.Name, Title: st.Title, Languages: st.Languages, Guests: st.Guests, Listed: st.Listed, MaxMembers: st.MaxMembers,
		EmptyTTLSeconds: int64(st.EmptyTTL / time.Second), Created: st.Created.UTC().Truncate(time.Millisecond),
		Members: st.Members, Local: st.Local, Epoch: st.Epoch, Offset: st.Offset, Loaded: st.Loaded}
}

// DefaultAPIRoomTTL is how long a room created through the admin API lives while empty, when the request
// does not say: long enough to create it days ahead of an assembly and hand out its invites.
const DefaultAPIRoomTTL = 7 * 24 * time.Hour

// roomRequest is the body of POST /api/rooms.
type roomRequest struct {
	Name            string   `json:"name"`
	Title           string   `json:"title"`
	Languages       []string `json:"languages"`
	Guests          bool     `json:"guests"`
	Listed          bool     `json:"listed"`
	MaxMembers      int      `json:"max_members"`
	EmptyTTLSeconds int      `json:"empty_ttl_seconds"`
}

func (s *Server) apiCreateRoom(w http.ResponseWriter, r *http.Request) {
	var req roomRequest
	if !readJSON(w, r, &req) {
		return
	}
	set := rooms.Settings{Name: req.Name, Title: req.Title, Languages: req.Languages, Guests: req.Guests, Listed: req.Listed,
		MaxMembers: req.MaxMembers, EmptyTTL: time.Duration(req.EmptyTTLSeconds) * time.Second}
	switch {
	case req.EmptyTTLSeconds < 0 || req.EmptyTTLSeconds > 366*24*3600:
		writeJSONError(w, http.StatusBadRequest, "empty_ttl_seconds must be 0..31622400")
		return
	case req.EmptyTTLSeconds == 0:
		set.EmptyTTL = DefaultAPIRoomTTL
	}
	info, err := s.reg.Create(r.Context(), set)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	st, err := s.reg.Get(r.Context(), info.Name)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	w.Header().Set("Location", "/api/rooms/"+info.Name)
	writeJSON(w, http.StatusCreated, toAPIRoom(st))
}

func (s *Server) apiListRooms(w http.ResponseWriter, r *http.Request) {
	list, err := s.reg.List(r.Context())
	if err != nil {
		writeAPIError(w, err)
		return
	}
	out := make([]apiRoom, len(list))
	for i, st := range list {
		out[i] = toAPIRoom(st)
	}
	writeJSON(w, http.StatusOK, map[string]any{"rooms": out})
}

func (s *Server) apiGetRoom(w http.ResponseWriter, r *http.Request) {
	st, err := s.reg.Get(r.Context(), chi.URLParam(r, "room"))
	if err != nil {
		writeAPIError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, toAPIRoom(st))
}

func (s *Server) apiCloseRoom(w http.ResponseWriter, r *http.Request) {
	var reason string
	if r.ContentLength > 0 {
		var body struct {
			Reason string `json:"reason"`
		}
		if !readJSON(w, r, &body) {
			return
		}
		reason = body.Reason
	}
	if err := s.reg.CloseRoom(r.Context(), chi.URLParam(r, "room"), reason); err != nil {
		writeAPIError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// inviteRequest is the body of POST /api/rooms/{room}/invites.
type inviteRequest struct {
	Role       string `json:"role"`
	TTLSeconds int    `json:"ttl_seconds"`
}

// Invite is an invite link: anyone who opens it joins the room with the role, under a name they choose.
type Invite struct {
	Role    string    `json:"role"`
	Token   string    `json:"token"`
	URL     string    `json:"url"`
	Expires time.Time `json:"expires"`
}

func (s *Server) apiInvite(w http.ResponseWriter, r *http.Request) {
	room := chi.URLParam(r, "room")
	var req inviteRequest
	if r.ContentLength != 0 && !readJSON(w, r, &req) { // no body: a participant invite with the default lifetime
		return
	}
	if _, err := s.reg.Get(r.Context(), room); err != nil {
		writeAPIError(w, err)
		return
	}
	if req.TTLSeconds < 0 || req.TTLSeconds > 90*24*3600 { // checked before it becomes a Duration, which overflows
		writeJSONError(w, http.StatusBadRequest, "ttl_seconds must be 0..7776000 (90 days)")
		return
	}
	inv, err := s.MintInvite(room, req.Role, time.Duration(req.TTLSeconds)*time.Second, s.baseURL(r))
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, inv)
}

// MintInvite signs an invite link for a room and role, valid for ttl (default 7 days, at most 90).
func (s *Server) MintInvite(room, role string, ttl time.Duration, base string) (Invite, error) {
	if role == "" {
		role = string(auth.RoleParticipant)
	}
	rl, err := auth.ParseRole(role)
	if err != nil || rl == auth.RoleGuest || rl == auth.RoleBot {
		return Invite{}, fmt.Errorf("role must be one of participant, speaker, interpreter, moderator")
	}
	if ttl <= 0 {
		ttl = 7 * 24 * time.Hour
	}
	if ttl > 90*24*time.Hour {
		return Invite{}, errors.New("ttl_seconds is at most 90 days")
	}
	now := s.now().Truncate(time.Second) // tokens count in seconds
	cl := auth.Claims{Room: room, Role: rl, Invite: true, Expires: now.Add(ttl), IssuedAt: now}
	tok, err := s.cfg.Keys.Sign(cl)
	if err != nil {
		return Invite{}, err
	}
	return Invite{Role: role, Token: tok, Expires: cl.Expires,
		URL: strings.TrimRight(base, "/") + "/r/" + url.PathEscape(room) + "#invite=" + tok}, nil
}

// tokenRequest is the body of POST /api/tokens.
type tokenRequest struct {
	Room       string `json:"room"`
	Identity   string `json:"identity"`
	Name       string `json:"name"`
	Role       string `json:"role"`
	Lang       string `json:"lang"`
	TTLSeconds int    `json:"ttl_seconds"`
}

func (s *Server) apiToken(w http.ResponseWriter, r *http.Request) {
	var req tokenRequest
	if !readJSON(w, r, &req) {
		return
	}
	if req.Role == "" {
		req.Role = string(auth.RoleParticipant)
	}
	role, err := auth.ParseRole(req.Role)
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.TTLSeconds < 0 || req.TTLSeconds > 366*24*3600 {
		writeJSONError(w, http.StatusBadRequest, "ttl_seconds must be 0..31622400 (366 days)")
		return
	}
	ttl := time.Duration(req.TTLSeconds) * time.Second
	if ttl <= 0 {
		ttl = time.Hour
	}
	now := s.now()
	cl := auth.Claims{Room: req.Room, Identity: req.Identity, Name: req.Name, Role: role, Lang: req.Lang,
		Expires: now.Add(ttl), IssuedAt: now}
	if req.Room != "*" {
		if err := protocol.ValidRoomName(req.Room); err != nil {
			writeJSONError(w, http.StatusBadRequest, "bad room name")
			return
		}
	}
	tok, err := s.cfg.Keys.Sign(cl)
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"token": tok, "expires": cl.Expires})
}

func (s *Server) baseURL(r *http.Request) string {
	if s.cfg.PublicURL != "" {
		return s.cfg.PublicURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			writeJSONError(w, http.StatusUnsupportedMediaType, "send application/json")
			return false
		}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeJSONError(w, http.StatusRequestEntityTooLarge, "body too large")
		} else {
			writeJSONError(w, http.StatusBadRequest, "bad json: "+err.Error())
		}
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		writeJSONError(w, http.StatusBadRequest, "bad json: trailing data")
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeJSONError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// writeAPIError maps domain errors to HTTP statuses.
func writeAPIError(w http.ResponseWriter, err error) {
	code, msg := errorCode(err)
	status := http.StatusInternalServerError
	switch code {
	case protocol.CodeBadRequest:
		status = http.StatusBadRequest
	case protocol.CodeNotFound:
		status = http.StatusNotFound
	case protocol.CodeUnavailable:
		status = http.StatusServiceUnavailable
	}
	if errors.Is(err, rooms.ErrExists) {
		status, msg = http.StatusConflict, err.Error()
	}
	writeJSONError(w, status, msg)
}
