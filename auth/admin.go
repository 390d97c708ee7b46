package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"strings"
	"unicode"
)

// AdminKey checks the admin API bearer key in constant time. The zero AdminKey accepts nothing.
type AdminKey struct {
	// Comparing digests keeps the time Check takes independent of the key's length too.
	sum [sha256.Size]byte
	set bool
}

// NewAdminKey returns a checker for key, which must be at least 16 bytes of printable characters without
// spaces, so that it survives an Authorization header.
func NewAdminKey(key string) (AdminKey, error) {
	if len(key) < 16 {
		return AdminKey{}, errors.New("auth: admin key is shorter than 16 bytes")
	}
	if strings.IndexFunc(key, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0 {
		return AdminKey{}, errors.New("auth: admin key contains spaces or unprintable characters")
	}
	return AdminKey{sum: sha256.Sum256([]byte(key)), set: true}, nil
}

// GenerateAdminKey returns 32 random bytes as unpadded base64url, for a node run without a configured key.
func GenerateAdminKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails since Go 1.24
	return base64.RawURLEncoding.EncodeToString(b)
}

// Check reports whether presented is the admin key.
func (a AdminKey) Check(presented string) bool {
	sum := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(sum[:], a.sum[:]) == 1 && a.set
}

// BearerToken returns the token of an Authorization header value "Bearer <token>"; the scheme is matched
// without regard to case. It reports false for any other scheme or an empty token.
func BearerToken(authorizationHeader string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(authorizationHeader), " ")
	token = strings.TrimLeft(token, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || strings.ContainsAny(token, " \t") {
		return "", false
	}
	return token, true
}
