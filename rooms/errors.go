package rooms

import "errors"

// Errors of the room domain. The server maps them to protocol error codes in one place.
var (
	ErrNotFound      = errors.New("rooms: no such room")
	ErrExists        = errors.New("rooms: room already exists")
	ErrGuests        = errors.New("rooms: room does not admit guests")
	ErrForbidden     = errors.New("rooms: not allowed for this role")
	ErrRoomFull      = errors.New("rooms: room is full")
	ErrClosed        = errors.New("rooms: room is closed")
	ErrEmptyText     = errors.New("rooms: empty message")
	ErrTooLong       = errors.New("rooms: message too long")
	ErrNoMember      = errors.New("rooms: no such member")
	ErrBadSettings   = errors.New("rooms: invalid room settings")
	ErrRegistryClose = errors.New("rooms: registry closed")
	ErrRetry         = errors.New("rooms: room restarted, join again")
)
