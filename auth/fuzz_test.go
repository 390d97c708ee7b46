package auth

import (
	"errors"
	"strings"
	"testing"
)

// FuzzVerify feeds Verify arbitrary strings. It must never panic, must fail with ErrInvalid or ErrExpired, and
// must accept nothing but the tokens the test itself signed: forging one would mean forging HMAC-SHA256.
func FuzzVerify(f *testing.F) {
	ring, err := NewKeyring(keyNew, keyOld)
	if err != nil {
		f.Fatal(err)
	}
	oldRing, err := NewKeyring(keyOld)
	if err != nil {
		f.Fatal(err)
	}
	signed := map[string]bool{}
	for _, r := range []*Keyring{ring, oldRing} {
		for _, role := range Roles() {
			c := validClaims()
			c.Role = role
			tok, err := r.Sign(c)
			if err != nil {
				f.Fatal(err)
			}
			signed[tok] = true
			f.Add(tok)
			parts := strings.Split(tok, ".")
			f.Add(parts[0] + "." + parts[1] + ".")
			f.Add(tok + "=")
		}
	}
	for _, s := range []string{"", ".", "..", "...", "a.b.c", "eyJ.eyJ.", strings.Repeat("A", MaxTokenLen+1)} {
		f.Add(s)
	}

	f.Fuzz(func(t *testing.T, token string) {
		c, err := ring.Verify(token, now)
		if err == nil {
			if !signed[token] {
				t.Fatalf("Verify accepted a token it did not sign: %q -> %+v", token, c)
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("Verify returned invalid claims %+v: %v", c, err)
			}
			return
		}
		if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrExpired) {
			t.Fatalf("Verify error %v wraps neither ErrInvalid nor ErrExpired", err)
		}
		if c != (Claims{}) {
			t.Fatalf("Verify returned claims %+v with error %v", c, err)
		}
	})
}
