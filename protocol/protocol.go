// Package protocol is liveforum's wire format over the /ws websocket: the envelope, one payload type per
// message, error codes and close codes, and the encoders and decoders for both directions.
//
// A client sends one JSON message per text frame. The server may coalesce several messages into one text
// frame, separated by a newline ('\n'); JSON never contains a raw newline, so splitting on it is safe.
// docs/protocol.md describes every message with an example.
//
// The package imports no other liveforum package and holds no state; everything in it is safe for
// concurrent use.
package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Client-to-server message types.
const (
	TypeAuth   = "auth"   // first message: a token, or a guest name and language
	TypeJoin   = "join"   // join a room (optionally recovering from a position)
	TypeLeave  = "leave"  // leave a room
	TypeChat   = "chat"   // send a chat message to a room
	TypeRemove = "remove" // moderator: remove a member from a room
	TypePong   = "pong"   // answer to the server's ping

	TypeMediaSubscribe   = "media.subscribe"   // receive the room's stage; the server's offers follow as media.offer
	TypeMediaAnswer      = "media.answer"      // the answer (MediaSDP) to the server's last media.offer
	TypeMediaUnsubscribe = "media.unsubscribe" // stop receiving the stage
	TypeMediaPublish     = "media.publish"     // speakers: an offer (MediaSDP) of what to send; the reply is the answer
	TypeMediaUnpublish   = "media.unpublish"   // stop sending
	TypeMediaMute        = "media.mute"        // moderators: stop or resume a member's audio or video at the server
	TypeMediaQuality     = "media.quality"     // cap the simulcast layer received of a stage track (a small tile)
)

// Server-to-client message types.
const (
	TypeReply = "reply" // success answer to a request, same id
	TypeError = "error" // failure answer to a request (same id), or a notice (no id)
	TypeEvent = "event" // a durable room event with its offset
	TypePing  = "ping"  // liveness probe; the client answers with pong
	TypeLeft  = "left"  // the connection is out of a room it had joined (Left says why)

	TypeMediaOffer = "media.offer" // the server's offer (MediaSDP) for the connection's stage in a room
)

// Event kinds, in Event.Kind.
const (
	KindChat          = "chat"
	KindMemberJoined  = "member.joined"
	KindMemberLeft    = "member.left"
	KindMemberRemoved = "member.removed"
	KindRoomUpdated   = "room.updated"
	KindRoomClosed    = "room.closed"
)

// Limits of the wire that do not depend on configuration.
const (
	MaxRoomNameLen = 64
	MaxTypeLen     = 32
	MaxNameRunes   = 64
	MaxLangLen     = 16
	MaxNonceLen    = 64
	MaxReasonRunes = 200
)

// Envelope is the outer shape of every message in both directions.
type Envelope struct {
	Type string          `json:"type"`
	ID   uint64          `json:"id,omitempty"`   // request id chosen by the client; echoed in reply/error
	Room string          `json:"room,omitempty"` // room the message is about
	Data json.RawMessage `json:"data,omitempty"` // payload; its type depends on Type
}

// Position is a point in a room's log. Offsets start at 1; Epoch changes whenever the log is lost and
// restarted, so an offset is only meaningful together with its epoch.
type Position struct {
	Epoch  string `json:"epoch"`
	Offset uint64 `json:"offset"`
}

// AuthRequest is the payload of "auth". With an access token, the token says who the member is. With an
// invite token (a link shared with many people), or with no token at all (a guest, where the room admits
// guests), Name and Lang say who the member is.
type AuthRequest struct {
	Token string `json:"token,omitempty"`
	Name  string `json:"name,omitempty"`
	Lang  string `json:"lang,omitempty"`
}

// AuthReply answers "auth". Token is a session token the client presents instead of its first
// credentials when it reconnects, so that it keeps the same identity (guests and invite links get one).
type AuthReply struct {
	Member Member `json:"member"`
	// Room is the room the credentials are limited to ("*" for any).
	Room      string `json:"room"`
	Token     string `json:"token,omitempty"`
	PingEvery int    `json:"ping_every"` // seconds between server pings
	Server    string `json:"server"`
}

// JoinRequest is the payload of "join" (the room is in the envelope).
type JoinRequest struct {
	// Since asks for recovery: every event after this position, instead of the recent history.
	Since *Position `json:"since,omitempty"`
	// Presence false means this member does not receive member.* events or the member list (large rooms,
	// bots). Default true.
	Presence *bool `json:"presence,omitempty"`
}

// JoinReply answers "join". The room state (Members, Room) is as of Offset; Events holds the recent history
// on a fresh join, or exactly the missed events on a recovery; live events with offsets above Offset follow.
type JoinReply struct {
	Room        RoomInfo       `json:"room"`
	Self        Member         `json:"self"`
	Epoch       string         `json:"epoch"`
	Offset      uint64         `json:"offset"`
	Recovered   bool           `json:"recovered"`
	Members     []Member       `json:"members,omitempty"`
	MemberCount int            `json:"member_count"`
	Events      []HistoryEvent `json:"events"`
}

// HistoryEvent is a logged event inside a join reply.
type HistoryEvent struct {
	Offset uint64          `json:"offset"`
	Data   json.RawMessage `json:"data"`
}

// ChatSend is the payload of "chat".
type ChatSend struct {
	Text string `json:"text"`
	// Nonce is chosen by the sender and echoed in the event, so a sender can match its own message.
	Nonce string `json:"nonce,omitempty"`
}

// ChatSent answers "chat" with the message's place in the log.
type ChatSent struct {
	Offset uint64 `json:"offset"`
}

// MediaSDP carries a session description: media.publish, its reply, media.offer, media.answer.
type MediaSDP struct {
	SDP string `json:"sdp"`
	// Names, in a media.offer only: the display names of the stage's publishers by identity, for those
	// who are not members a page knows by name (a WHIP encoder).
	Names map[string]string `json:"names,omitempty"`
}

// MediaConfig answers media.subscribe: the ICE servers (STUN, TURN) to give the browser's peer
// connections.
type MediaConfig struct {
	ICEServers []ICEServer `json:"ice_servers"`
}

// ICEServer is one STUN or TURN server, as RTCPeerConnection's configuration takes it.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// MediaQuality is the payload of media.quality.
type MediaQuality struct {
	Track   string `json:"track"`   // the track's id, as the stage's peer connection shows it
	Quality string `json:"quality"` // "low", "medium" or "high"
}

// MediaMute is the payload of media.mute.
type MediaMute struct {
	Identity string `json:"identity"`
	Kind     string `json:"kind"` // "audio" or "video"
	Muted    bool   `json:"muted"`
}

// RemoveRequest is the payload of "remove".
type RemoveRequest struct {
	Identity string `json:"identity"`
	Reason   string `json:"reason,omitempty"`
}

// Member is a participant as others see it.
type Member struct {
	Identity string `json:"identity"`
	Name     string `json:"name"`
	Role     string `json:"role"`
	Lang     string `json:"lang,omitempty"`
}

// RoomInfo describes a room.
type RoomInfo struct {
	Name       string   `json:"name"`
	Title      string   `json:"title,omitempty"`
	Languages  []string `json:"languages,omitempty"`
	Guests     bool     `json:"guests"`
	Listed     bool     `json:"listed,omitempty"`
	MaxMembers int      `json:"max_members,omitempty"`
	Created    int64    `json:"created"` // unix milliseconds
}

// Event is the payload of a durable event. Fields beyond Kind and Time depend on Kind: chat has From,
// Text and Nonce; member.* have Member (and By, Reason for removals); room.* have Room.
type Event struct {
	Kind   string    `json:"kind"`
	Time   int64     `json:"time"` // unix milliseconds, set by the server that accepted it
	From   *Member   `json:"from,omitempty"`
	Text   string    `json:"text,omitempty"`
	Nonce  string    `json:"nonce,omitempty"`
	Member *Member   `json:"member,omitempty"`
	By     *Member   `json:"by,omitempty"`
	Reason string    `json:"reason,omitempty"`
	Room   *RoomInfo `json:"room,omitempty"`
	// Node is, on member.joined, the server node that holds the member's connection (an opaque id), so
	// that every node knows whose members to log as gone if that node dies.
	Node string `json:"node,omitempty"`
}

// Left is the payload of "left": the server took the connection out of the room, with the close code it
// would have used for the whole connection and its reason. A connection whose last room it was is closed
// with that code instead.
type Left struct {
	Code   int    `json:"code"`
	Reason string `json:"reason"`
}

// Error is the payload of "error".
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error codes carried in Error.Code.
const (
	CodeBadRequest    = "bad_request"    // malformed payload or invalid field
	CodeUnknownType   = "unknown_type"   // message type this server does not know
	CodeUnauthorized  = "unauthorized"   // not authenticated, or credentials rejected
	CodeTokenExpired  = "token_expired"  // the token has expired; get a new one
	CodeForbidden     = "forbidden"      // authenticated, but the role or room does not allow it
	CodeNotFound      = "not_found"      // no such room or member
	CodeNotJoined     = "not_joined"     // the connection has not joined that room
	CodeAlreadyJoined = "already_joined" // the connection is already in that room
	CodeRoomFull      = "room_full"      // the room's member limit is reached
	CodeTooMany       = "too_many_rooms" // the connection is in as many rooms as it may be
	CodeRateLimited   = "rate_limited"   // too many messages; slow down
	CodeTooLong       = "too_long"       // text longer than allowed
	CodeStageFull     = "stage_full"     // the room has as many publishers (media) as it may
	CodeUnavailable   = "unavailable"    // the server cannot do it now (log unavailable); retry later
	CodeInternal      = "internal"       // the server failed
)

// Close codes the server uses; see CloseReconnect for what a client should do after each.
const (
	CloseNormal       = 1000
	CloseTooBig       = 1009 // a frame exceeded the read limit
	CloseInternal     = 1011
	CloseShutdown     = 1012 // server restarting: reconnect (to this or another node) and recover
	CloseBadRequest   = 4000 // malformed message: a client bug; do not reconnect blindly
	CloseUnauthorized = 4001 // no valid auth as first message, bad or expired token
	CloseSlowConsumer = 4002 // the client did not read fast enough: reconnect and recover
	CloseRateLimited  = 4003 // flooding: reconnect after a pause
	CloseRemoved      = 4004 // removed by a moderator: do not reconnect
	CloseReplaced     = 4005 // the same identity joined from another connection: do not reconnect
	CloseRoomClosed   = 4006 // the room was closed: do not reconnect
	ClosePingTimeout  = 4007 // no pong in time: reconnect and recover
	CloseAuthTimeout  = 4008 // no auth message in time
	CloseTokenExpired = 4009 // token expired while connected: reconnect with a fresh token
)

// CloseReconnect reports whether a client should reconnect (with backoff) after the given close code.
func CloseReconnect(code int) bool {
	switch code {
	case CloseNormal, CloseBadRequest, CloseUnauthorized, CloseRemoved, CloseReplaced, CloseRoomClosed,
		CloseTooBig, CloseTokenExpired:
		return false
	}
	return true // network failures (1006), restarts, slow consumers, timeouts, floods (after a pause)
}

// ErrMalformed is returned (wrapped) by the decoders for input that is not a valid message.
var ErrMalformed = errors.New("protocol: malformed message")

// DecodeClient decodes one client message (one text frame). It checks the envelope's shape: a JSON object
// with a short non-empty type, an optional valid room name; the payload is left raw for the handler of
// that type, which decodes it with DecodeData.
func DecodeClient(frame []byte) (Envelope, error) {
	var env Envelope
	if !utf8.Valid(frame) {
		return env, fmt.Errorf("%w: not utf-8", ErrMalformed)
	}
	frame = bytes.TrimSpace(frame)
	if len(frame) == 0 || frame[0] != '{' {
		return env, fmt.Errorf("%w: not a json object", ErrMalformed)
	}
	if err := json.Unmarshal(frame, &env); err != nil {
		return Envelope{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if env.Type == "" || len(env.Type) > MaxTypeLen {
		return Envelope{}, fmt.Errorf("%w: missing or long type", ErrMalformed)
	}
	if env.Room != "" {
		if err := ValidRoomName(env.Room); err != nil {
			return Envelope{}, err
		}
	}
	if len(env.Data) > 0 && (env.Data[0] != '{' && !bytes.Equal(env.Data, []byte("null"))) {
		return Envelope{}, fmt.Errorf("%w: data is not an object", ErrMalformed)
	}
	return env, nil
}

// DecodeData decodes a message payload into v; an absent payload leaves v at its zero value.
func DecodeData(data json.RawMessage, v any) error {
	if len(data) == 0 || bytes.Equal(data, []byte("null")) {
		return nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}

// ValidRoomName checks a room name: 1..64 bytes of ASCII letters, digits, '-', '_' and '.', not starting
// with '.' (names appear in URLs and Redis keys).
func ValidRoomName(name string) error {
	if name == "" || len(name) > MaxRoomNameLen || name[0] == '.' {
		return fmt.Errorf("%w: bad room name", ErrMalformed)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%w: bad room name", ErrMalformed)
		}
	}
	return nil
}

// Marshal encodes a server message with the given payload. It panics only if v cannot be encoded as JSON,
// which is a programming error for the payload types of this package.
func Marshal(typ string, id uint64, room string, v any) []byte {
	var data []byte
	if v != nil {
		var err error
		if data, err = encode(v); err != nil {
			panic("protocol: cannot encode " + typ + ": " + err.Error())
		}
	}
	buf := make([]byte, 0, len(data)+len(room)+48)
	buf = append(buf, `{"type":`...)
	buf = appendString(buf, typ) // not strconv.Quote: its \x escapes are not JSON
	if id != 0 {
		buf = append(buf, `,"id":`...)
		buf = strconv.AppendUint(buf, id, 10)
	}
	if room != "" {
		buf = append(buf, `,"room":`...)
		buf = appendString(buf, room)
	}
	if data != nil {
		buf = append(buf, `,"data":`...)
		buf = append(buf, data...)
	}
	return append(buf, '}')
}

// encode is json.Marshal without HTML escaping: clients render text, never HTML, and escaping would make
// every '<' in a chat message six bytes (also inside json.RawMessage payloads, which Marshal re-compacts).
func encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}

// Encode is encode for other packages: the JSON of v, without HTML escaping.
func Encode(v any) ([]byte, error) { return encode(v) }

// MarshalError encodes an error message answering request id (0: a notice).
func MarshalError(id uint64, room, code, message string) []byte {
	return Marshal(TypeError, id, room, Error{Code: code, Message: message})
}

// AppendEvent appends the frame for a durable event: its already-encoded payload with room and offset.
// This is the fan-out hot path: it runs once per event per node, never per recipient.
func AppendEvent(buf []byte, room string, offset uint64, data []byte) []byte {
	buf = append(buf, `{"type":"event","room":`...)
	buf = appendString(buf, room)
	buf = append(buf, `,"offset":`...)
	buf = strconv.AppendUint(buf, offset, 10)
	buf = append(buf, `,"data":`...)
	buf = append(buf, data...)
	return append(buf, '}')
}

// appendString appends s as a JSON string. Room names are validated ASCII, so quoting is only defensive.
func appendString(buf []byte, s string) []byte {
	b, _ := json.Marshal(s)
	return append(buf, b...)
}

// ServerMessage is a decoded server message, as a client sees it.
type ServerMessage struct {
	Type   string          `json:"type"`
	ID     uint64          `json:"id,omitempty"`
	Room   string          `json:"room,omitempty"`
	Offset uint64          `json:"offset,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`
}

// SplitFrame calls fn for each message of a server frame (messages are separated by '\n'). It stops at
// the first error fn returns.
func SplitFrame(frame []byte, fn func(msg []byte) error) error {
	for len(frame) > 0 {
		i := bytes.IndexByte(frame, '\n')
		var msg []byte
		if i < 0 {
			msg, frame = frame, nil
		} else {
			msg, frame = frame[:i], frame[i+1:]
		}
		if len(msg) == 0 {
			continue
		}
		if err := fn(msg); err != nil {
			return err
		}
	}
	return nil
}

// DecodeServer decodes one server message. Data aliases msg for events; copy it to keep it past msg.
func DecodeServer(msg []byte) (ServerMessage, error) {
	if m, ok := decodeEventFast(msg); ok {
		return m, nil
	}
	var m ServerMessage
	if err := json.Unmarshal(msg, &m); err != nil {
		return ServerMessage{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if m.Type == "" {
		return ServerMessage{}, fmt.Errorf("%w: missing type", ErrMalformed)
	}
	return m, nil
}

var eventPrefix = []byte(`{"type":"event","room":"`)

// decodeEventFast parses an event frame in exactly the shape AppendEvent writes, without reflection; ok is
// false for anything else, which then goes through encoding/json. Room names never contain '"' or '\'.
func decodeEventFast(msg []byte) (m ServerMessage, ok bool) {
	if !bytes.HasPrefix(msg, eventPrefix) || msg[len(msg)-1] != '}' {
		return m, false
	}
	rest := msg[len(eventPrefix):]
	q := bytes.IndexByte(rest, '"')
	if q <= 0 {
		return m, false
	}
	for _, c := range rest[:q] {
		// Escapes, control characters (invalid in JSON) and non-ASCII (maybe invalid UTF-8, which
		// encoding/json replaces) are left to encoding/json.
		if c == '\\' || c < 0x20 || c >= 0x80 {
			return m, false
		}
	}
	room := rest[:q]
	rest = rest[q+1:]
	const offKey = `,"offset":`
	if !bytes.HasPrefix(rest, []byte(offKey)) {
		return m, false
	}
	rest = rest[len(offKey):]
	n := 0
	var off uint64
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
		if n >= 19 {
			return m, false
		}
		off = off*10 + uint64(rest[n]-'0')
		n++
	}
	if n > 1 && rest[0] == '0' {
		return m, false // a leading zero is not JSON
	}
	rest = rest[n:]
	const dataKey = `,"data":`
	if n == 0 || !bytes.HasPrefix(rest, []byte(dataKey)) {
		return m, false
	}
	data := rest[len(dataKey) : len(rest)-1]
	if len(data) < 2 || data[0] != '{' || !validJSON(data) {
		return m, false
	}
	return ServerMessage{Type: TypeEvent, Room: string(room), Offset: off, Data: data}, true
}
