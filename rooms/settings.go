package rooms

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/liveforum/liveforum/protocol"
)

// Settings are what an operator decides about a room. They are stored as the room's record in the broker.
type Settings struct {
	Name      string   `json:"name"`
	Title     string   `json:"title,omitempty"`
	Languages []string `json:"languages,omitempty"`
	// Guests admits anonymous participants (no token) into the room.
	Guests bool `json:"guests"`
	// Listed shows the room on the server's public landing page.
	Listed bool `json:"listed,omitempty"`
	// MaxMembers caps how many members may be in the room; 0 means the registry's default.
	MaxMembers int `json:"max_members,omitempty"`
	// EmptyTTL is how long the room lives with nobody in it before it expires; 0 means the registry's
	// default.
	EmptyTTL time.Duration `json:"empty_ttl,omitempty"`
	Created  time.Time     `json:"created"`
}

// Validate checks operator input.
func (s *Settings) Validate() error {
	if err := protocol.ValidRoomName(s.Name); err != nil {
		return fmt.Errorf("%w: name: %v", ErrBadSettings, err)
	}
	s.Title = strings.TrimSpace(s.Title)
	if utf8.RuneCountInString(s.Title) > 200 || !utf8.ValidString(s.Title) {
		return fmt.Errorf("%w: title longer than 200 characters", ErrBadSettings)
	}
	if len(s.Languages) > 32 {
		return fmt.Errorf("%w: more than 32 languages", ErrBadSettings)
	}
	for _, l := range s.Languages {
		if !ValidLang(l) || l == "" {
			return fmt.Errorf("%w: language %q", ErrBadSettings, l)
		}
	}
	if s.MaxMembers < 0 || s.MaxMembers > 1_000_000 {
		return fmt.Errorf("%w: max_members out of range", ErrBadSettings)
	}
	if s.EmptyTTL < 0 || s.EmptyTTL > 366*24*time.Hour {
		return fmt.Errorf("%w: empty_ttl out of range", ErrBadSettings)
	}
	return nil
}

// Info is the room as clients see it.
func (s *Settings) Info() protocol.RoomInfo {
	return protocol.RoomInfo{
		Name: s.Name, Title: s.Title, Languages: s.Languages, Guests: s.Guests, Listed: s.Listed,
		MaxMembers: s.MaxMembers, Created: s.Created.UnixMilli(),
	}
}

// ValidLang checks a reading-language tag: empty, or up to 16 bytes of ASCII letters, digits and '-'
// (BCP 47 shape, such as "pt-BR").
func ValidLang(l string) bool {
	if len(l) > protocol.MaxLangLen {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
