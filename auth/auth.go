// Package auth issues and checks liveforum's access tokens and the admin API key.
//
// An access token is a JWT signed with HS256 that grants Claims: a room, an identity, a display name, a role,
// an optional reading language and an expiry. Keys live in a Keyring so they can be rotated: tokens are signed
// with the current key and verified with whichever key their "kid" header names.
//
// Everything here is safe for concurrent use: a Keyring and an AdminKey never change after construction, and
// the other types are values.
package auth

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// Errors returned by Verify and Claims.Validate; test with errors.Is.
var (
	ErrInvalid = errors.New("auth: invalid token")
	ErrExpired = errors.New("auth: token expired")
)

const (
	// MaxTokenLen bounds the tokens Verify will parse, so unauthenticated input costs little to reject.
	MaxTokenLen = 4096
	// Leeway is the clock skew tolerated between the node that signed a token and the one verifying it.
	Leeway = 30 * time.Second
	// MinSecretLen is the shortest HS256 secret a Keyring accepts: the size of the hash.
	MinSecretLen = 32
)

// Claims are what a token grants.
type Claims struct {
	Room     string    // room name the token is valid for; "*" = any room. Required, 1..128 bytes, no control chars
	Identity string    // stable member identity; required, 1..128 bytes, no control chars
	Name     string    // display name; required, 1..64 runes after trimming spaces (256 bytes in all), no control chars
	Role     Role      // required
	Lang     string    // optional reading language tag (BCP 47 like "pt-BR"); "" = unspecified; max 16 bytes, [A-Za-z0-9-]
	Expires  time.Time // required; must be after IssuedAt when that is set
	IssuedAt time.Time // optional
	// Invite marks an invite link: anyone who holds it may join Room with Role under a name they choose,
	// and gets an identity of their own. Identity and Name are then empty.
	Invite bool
	// Session marks a session token: the server minted it for a guest or the holder of an invite link,
	// and renews it each time it is used, so that a returning participant keeps their identity.
	Session bool
	// Until caps the expiry a session token may be renewed to (an invitee's session ends with the invite);
	// zero: no cap.
	Until time.Time
}

// Validate checks the field rules documented on Claims. Errors wrap ErrInvalid.
func (c Claims) Validate() error {
	if err := checkText(c.Room, 128); err != nil {
		return fmt.Errorf("%w: room %v", ErrInvalid, err)
	}
	if err := c.validatePerson(); err != nil {
		return err
	}
	if !c.Role.Valid() {
		return fmt.Errorf("%w: %w: %q", ErrInvalid, ErrBadRole, c.Role)
	}
	if len(c.Lang) > 16 || strings.IndexFunc(c.Lang, notLangChar) >= 0 {
		return fmt.Errorf("%w: language tag %q is not like \"pt-BR\"", ErrInvalid, c.Lang)
	}
	if c.Expires.IsZero() {
		return fmt.Errorf("%w: no expiry", ErrInvalid)
	}
	if !c.IssuedAt.IsZero() && !c.Expires.After(c.IssuedAt) {
		return fmt.Errorf("%w: expires before it is issued", ErrInvalid)
	}
	return nil
}

func (c Claims) validatePerson() error {
	if c.Invite {
		if c.Identity != "" || c.Name != "" {
			return fmt.Errorf("%w: an invite names no identity or name", ErrInvalid)
		}
		return nil
	}
	if err := checkText(c.Identity, 128); err != nil {
		return fmt.Errorf("%w: identity %v", ErrInvalid, err)
	}
	if err := checkText(c.Name, 256); err != nil {
		return fmt.Errorf("%w: name %v", ErrInvalid, err)
	}
	if n := utf8.RuneCountInString(strings.TrimSpace(c.Name)); n == 0 || n > 64 {
		return fmt.Errorf("%w: name must be 1 to 64 characters, not counting surrounding spaces", ErrInvalid)
	}
	return nil
}

// AllowsRoom reports whether the claims grant access to the named room.
func (c Claims) AllowsRoom(room string) bool {
	return room != "" && (c.Room == "*" || c.Room == room)
}

func checkText(s string, maxBytes int) error {
	switch {
	case s == "":
		return errors.New("is empty")
	case len(s) > maxBytes:
		return fmt.Errorf("is longer than %d bytes", maxBytes)
	case !utf8.ValidString(s):
		return errors.New("is not UTF-8")
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return errors.New("contains control characters")
	}
	return nil
}

func notLangChar(r rune) bool {
	return !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
}

func notTokenChar(r rune) bool { return notLangChar(r) && r != '_' && r != '.' }

// Key is one HS256 signing key and the id ("kid") that tokens name it by.
type Key struct {
	ID     string
	Secret []byte
}

// Keyring holds HS256 keys by id so they can be rotated: Sign uses the current key, Verify the key named by the
// token's "kid" header. It is immutable after construction and safe for concurrent use.
type Keyring struct {
	current string
	keys    map[string][]byte
}

// NewKeyring returns a ring that signs with current and also verifies tokens signed with older keys. Every id
// must be non-empty and unique and every secret at least MinSecretLen bytes. The secrets are copied.
func NewKeyring(current Key, older ...Key) (*Keyring, error) {
	k := &Keyring{current: current.ID, keys: make(map[string][]byte, 1+len(older))}
	for _, key := range append([]Key{current}, older...) {
		switch {
		case key.ID == "":
			return nil, errors.New("auth: key id is empty")
		case k.keys[key.ID] != nil:
			return nil, fmt.Errorf("auth: key id %q is used twice", key.ID)
		case len(key.Secret) < MinSecretLen:
			return nil, fmt.Errorf("auth: secret of key %q is shorter than %d bytes", key.ID, MinSecretLen)
		}
		k.keys[key.ID] = append([]byte(nil), key.Secret...)
	}
	return k, nil
}

// ParseKeys builds a Keyring from configuration text: either "kid1:secret1,kid2:secret2", where the first key
// is current, or a single bare secret, which gets kid "k1". A bare secret must therefore contain neither ':'
// nor ','; in the list form a secret may contain ':' but not ','. Secrets are used as raw bytes, not decoded.
// Spaces around ids and secrets are trimmed.
func ParseKeys(spec string) (*Keyring, error) {
	spec = strings.TrimSpace(spec)
	if !strings.ContainsAny(spec, ":,") {
		return NewKeyring(Key{ID: "k1", Secret: []byte(spec)})
	}
	var keys []Key
	for entry := range strings.SplitSeq(spec, ",") {
		id, secret, ok := strings.Cut(entry, ":")
		if !ok {
			return nil, fmt.Errorf("auth: key %q is not of the form kid:secret", strings.TrimSpace(entry))
		}
		keys = append(keys, Key{ID: strings.TrimSpace(id), Secret: []byte(strings.TrimSpace(secret))})
	}
	return NewKeyring(keys[0], keys[1:]...)
}

// GenerateKey returns a random 32-byte key with id "dev-" and 8 hex digits, for a node run without configured keys.
func GenerateKey() Key {
	b := make([]byte, MinSecretLen+4)
	_, _ = rand.Read(b) // never fails since Go 1.24
	return Key{ID: "dev-" + hex.EncodeToString(b[MinSecretLen:]), Secret: b[:MinSecretLen]}
}

// tokenClaims is the JWT body: registered claims plus liveforum's own.
type tokenClaims struct {
	jwt.RegisteredClaims
	Room    string           `json:"room"`
	Name    string           `json:"name"`
	Role    Role             `json:"role"`
	Lang    string           `json:"lang,omitempty"`
	Invite  bool             `json:"inv,omitempty"`
	Session bool             `json:"ses,omitempty"`
	Until   *jwt.NumericDate `json:"until,omitempty"`
}

// Sign validates c and returns it as a JWT signed with the ring's current key. Times are kept to the second.
func (k *Keyring) Sign(c Claims) (string, error) {
	if err := c.Validate(); err != nil {
		return "", err
	}
	tc := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: c.Identity, ExpiresAt: jwt.NewNumericDate(c.Expires)},
		Room:             c.Room, Name: c.Name, Role: c.Role, Lang: c.Lang, Invite: c.Invite,
		Session: c.Session,
	}
	if !c.Until.IsZero() {
		tc.Until = jwt.NewNumericDate(c.Until)
	}
	if !c.IssuedAt.IsZero() {
		tc.IssuedAt = jwt.NewNumericDate(c.IssuedAt)
	}
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, tc)
	t.Header["kid"] = k.current
	s, err := t.SignedString(k.keys[k.current])
	if err != nil {
		return "", fmt.Errorf("auth: sign token: %w", err)
	}
	return s, nil
}

// Verify checks token's signature, expiry and not-before (with Leeway) against now and returns its claims.
// A token without a "kid" header is checked against the current key only. Errors wrap ErrExpired for an
// expired but otherwise sound token and ErrInvalid for anything else.
func (k *Keyring) Verify(token string, now time.Time) (Claims, error) {
	if len(token) > MaxTokenLen {
		return Claims{}, fmt.Errorf("%w: longer than %d bytes", ErrInvalid, MaxTokenLen)
	}
	// base64 decoding skips CR and LF even when strict; rejecting them here keeps one spelling per token.
	if strings.IndexFunc(token, notTokenChar) >= 0 {
		return Claims{}, fmt.Errorf("%w: characters outside base64url and '.'", ErrInvalid)
	}
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithLeeway(Leeway),
		jwt.WithStrictDecoding(), // one encoding per token: no malleable signatures
	)
	var tc tokenClaims
	if _, err := p.ParseWithClaims(token, &tc, k.keyFor); err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return Claims{}, fmt.Errorf("%w: %v", ErrExpired, err)
		}
		return Claims{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	c := Claims{
		Room: tc.Room, Identity: tc.Subject, Name: tc.Name, Role: tc.Role, Lang: tc.Lang, Invite: tc.Invite,
		Session: tc.Session,
		Expires: tc.ExpiresAt.UTC(), // WithExpirationRequired guarantees ExpiresAt
	}
	if tc.Until != nil {
		c.Until = tc.Until.UTC()
	}
	if tc.IssuedAt != nil {
		c.IssuedAt = tc.IssuedAt.UTC()
	}
	if err := c.Validate(); err != nil {
		return Claims{}, err
	}
	return c, nil
}

func (k *Keyring) keyFor(t *jwt.Token) (any, error) {
	kid, ok := t.Header["kid"]
	if !ok {
		return k.keys[k.current], nil
	}
	id, _ := kid.(string)
	if secret, ok := k.keys[id]; ok {
		return secret, nil
	}
	return nil, fmt.Errorf("unknown key id %v", kid)
}
