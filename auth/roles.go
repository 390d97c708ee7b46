package auth

import (
	"errors"
	"fmt"
)

// ErrBadRole is wrapped by errors about role strings that name no Role.
var ErrBadRole = errors.New("auth: unknown role")

// Role is a member's role in a room.
type Role string

// The roles, from least to most trusted except for RoleBot, which is a kind of client rather than a rank.
const (
	RoleGuest       Role = "guest"       // anonymous participant admitted by a room's guest policy
	RoleParticipant Role = "participant" // invited participant: watches, chats
	RoleSpeaker     Role = "speaker"     // may publish audio/video
	RoleInterpreter Role = "interpreter" // may publish an interpretation audio channel
	RoleModerator   Role = "moderator"   // runs the session: remove members, close the room, etc.
	RoleBot         Role = "bot"         // server-side clients (bridges, load tools): exempt from the per-person chat rate limit
)

// Roles returns every role, in declaration order. The slice is the caller's to modify.
func Roles() []Role {
	return []Role{RoleGuest, RoleParticipant, RoleSpeaker, RoleInterpreter, RoleModerator, RoleBot}
}

// ParseRole returns the Role spelled exactly s (lower case). The error for any other string wraps ErrBadRole.
func ParseRole(s string) (Role, error) {
	if r := Role(s); r.Valid() {
		return r, nil
	}
	return "", fmt.Errorf("%w: %q", ErrBadRole, s)
}

// Valid reports whether r is one of the declared roles; the zero Role is not.
func (r Role) Valid() bool {
	switch r {
	case RoleGuest, RoleParticipant, RoleSpeaker, RoleInterpreter, RoleModerator, RoleBot:
		return true
	}
	return false
}

// CanModerate reports whether r may run a session: remove members, close the room and the like.
func (r Role) CanModerate() bool { return r == RoleModerator }

// RateExempt reports whether r is exempt from the per-person chat rate limit. Only bots are: one bot
// relays many people.
func (r Role) RateExempt() bool { return r == RoleBot }
