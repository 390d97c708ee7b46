package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	now    = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	keyOld = Key{ID: "old", Secret: []byte("old-secret-old-secret-old-secret")}
	keyNew = Key{ID: "new", Secret: []byte("new-secret-new-secret-new-secret")}
)

func newRing(t *testing.T, current Key, older ...Key) *Keyring {
	t.Helper()
	k, err := NewKeyring(current, older...)
	if err != nil {
		t.Fatalf("NewKeyring: %v", err)
	}
	return k
}

func validClaims() Claims {
	return Claims{
		Room: "assembly", Identity: "u-42", Name: "Ana Souza", Role: RoleParticipant, Lang: "pt-BR",
		Expires: now.Add(time.Hour), IssuedAt: now.Add(-time.Minute),
	}
}

// rawToken signs arbitrary claims and headers with jwt directly, to build tokens Sign would refuse to make.
func rawToken(t *testing.T, m jwt.SigningMethod, secret any, header map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	for k, v := range header {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	s, err := tok.SignedString(secret)
	if err != nil {
		t.Fatalf("SignedString: %v", err)
	}
	return s
}

func mapClaims(mod func(jwt.MapClaims)) jwt.MapClaims {
	m := jwt.MapClaims{"sub": "u-42", "room": "assembly", "name": "Ana", "role": "participant",
		"exp": now.Add(time.Hour).Unix()}
	if mod != nil {
		mod(m)
	}
	return m
}

func TestSignVerifyRoundTrip(t *testing.T) {
	ring := newRing(t, keyNew, keyOld)
	for name, mod := range map[string]func(*Claims){
		"full":           func(*Claims) {},
		"any room":       func(c *Claims) { c.Room = "*" },
		"no lang no iat": func(c *Claims) { c.Lang, c.IssuedAt = "", time.Time{} },
		"moderator":      func(c *Claims) { c.Role = RoleModerator },
		"unicode name":   func(c *Claims) { c.Name = "Çiğdem Øystein 李" },
		"sub-second":     func(c *Claims) { c.Expires = c.Expires.Add(700 * time.Millisecond) },
	} {
		t.Run(name, func(t *testing.T) {
			c := validClaims()
			mod(&c)
			tok, err := ring.Sign(c)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			got, err := ring.Verify(tok, now)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := c
			want.Expires = c.Expires.Truncate(time.Second)
			if got.Room != want.Room || got.Identity != want.Identity || got.Name != want.Name ||
				got.Role != want.Role || got.Lang != want.Lang ||
				!got.Expires.Equal(want.Expires) || !got.IssuedAt.Equal(want.IssuedAt) {
				t.Errorf("Verify = %+v, want %+v", got, want)
			}
		})
	}
}

func TestSignHeader(t *testing.T) {
	tok, err := newRing(t, keyNew, keyOld).Sign(validClaims())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	if h["alg"] != "HS256" || h["typ"] != "JWT" || h["kid"] != "new" || len(h) != 3 {
		t.Errorf("header = %v, want alg HS256, typ JWT, kid new", h)
	}
}

func TestSignRejectsInvalidClaims(t *testing.T) {
	c := validClaims()
	c.Identity = ""
	if _, err := newRing(t, keyNew).Sign(c); !errors.Is(err, ErrInvalid) {
		t.Errorf("Sign(no identity) error = %v, want ErrInvalid", err)
	}
}

func TestVerifyRejects(t *testing.T) {
	ring := newRing(t, keyNew, keyOld)
	good, err := ring.Sign(validClaims())
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	kidNew := map[string]any{"kid": "new"}
	moderator := func() string { // payload granting moderator, spliced onto a participant's signature
		c := validClaims()
		c.Role = RoleModerator
		tok, err := ring.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Split(tok, ".")[1]
	}()
	// HS256's 32-byte signature leaves 2 spare bits in its last base64 character; setting one gives another
	// spelling of the same signature, which lenient decoding would accept.
	const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(b64, good[len(good)-1])
	malleable := good[:len(good)-1] + string(b64[last^1])
	rsHeader := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","kid":"new","typ":"JWT"}`))
	rsBody := rsHeader + "." + parts[1]
	rsSig, err := jwt.SigningMethodHS256.Sign(rsBody, keyNew.Secret)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		token string
		now   time.Time
		want  error
	}{
		{"expired", good, now.Add(time.Hour + time.Minute), ErrExpired},
		{"not yet valid", rawToken(t, jwt.SigningMethodHS256, keyNew.Secret, kidNew,
			mapClaims(func(m jwt.MapClaims) { m["nbf"] = now.Add(time.Minute).Unix() })), now, ErrInvalid},
		{"wrong secret", rawToken(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-00"), kidNew,
			mapClaims(nil)), now, ErrInvalid},
		{"alg none", rawToken(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, kidNew,
			mapClaims(nil)), now, ErrInvalid},
		{"alg RS256 with HMAC signature", rsBody + "." + base64.RawURLEncoding.EncodeToString(rsSig), now, ErrInvalid},
		{"alg HS512", rawToken(t, jwt.SigningMethodHS512, keyNew.Secret, kidNew, mapClaims(nil)), now, ErrInvalid},
		{"tampered payload", parts[0] + "." + moderator + "." + parts[2], now, ErrInvalid},
		{"tampered signature", parts[0] + "." + parts[1] + "." + parts[2][:10] + "A" + parts[2][11:], now, ErrInvalid},
		{"non-canonical signature encoding", malleable, now, ErrInvalid},
		{"CR in signature", good[:len(good)-4] + "\r" + good[len(good)-4:], now, ErrInvalid},
		{"LF in signature", good[:len(good)-4] + "\n" + good[len(good)-4:], now, ErrInvalid},
		{"space after token", good + " ", now, ErrInvalid},
		{"unsigned", parts[0] + "." + parts[1] + ".", now, ErrInvalid},
		{"empty", "", now, ErrInvalid},
		{"garbage", "not a token", now, ErrInvalid},
		{"garbage segments", "a.b.c", now, ErrInvalid},
		{"oversized", rawToken(t, jwt.SigningMethodHS256, keyNew.Secret, kidNew, mapClaims(func(m jwt.MapClaims) {
			m["pad"] = strings.Repeat("x", MaxTokenLen)
		})), now, ErrInvalid},
		{"no exp", rawToken(t, jwt.SigningMethodHS256, keyNew.Secret, kidNew,
			mapClaims(func(m jwt.MapClaims) { delete(m, "exp") })), now, ErrInvalid},
		{"no sub", rawToken(t, jwt.SigningMethodHS256, keyNew.Secret, kidNew,
			mapClaims(func(m jwt.MapClaims) { delete(m, "sub") })), now, ErrInvalid},
		{"unknown role", rawToken(t, jwt.SigningMethodHS256, keyNew.Secret, kidNew,
			mapClaims(func(m jwt.MapClaims) { m["role"] = "admin" })), now, ErrBadRole},
		{"room not a string", rawToken(t, jwt.SigningMethodHS256, keyNew.Secret, kidNew,
			mapClaims(func(m jwt.MapClaims) { m["room"] = 7 })), now, ErrInvalid},
		{"unknown kid", rawToken(t, jwt.SigningMethodHS256, keyNew.Secret, map[string]any{"kid": "nope"},
			mapClaims(nil)), now, ErrInvalid},
		{"kid not a string", rawToken(t, jwt.SigningMethodHS256, keyNew.Secret, map[string]any{"kid": 1},
			mapClaims(nil)), now, ErrInvalid},
		{"no kid, older key", rawToken(t, jwt.SigningMethodHS256, keyOld.Secret, map[string]any{"kid": nil},
			mapClaims(nil)), now, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ring.Verify(tt.token, tt.now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify error = %v, want %v", err, tt.want)
			}
			if tt.want != ErrExpired && errors.Is(err, ErrExpired) {
				t.Errorf("Verify error = %v, should not be ErrExpired", err)
			}
			if c != (Claims{}) {
				t.Errorf("Verify returned claims %+v with an error", c)
			}
		})
	}
}

func TestVerifyAccepts(t *testing.T) {
	ring := newRing(t, keyNew, keyOld)
	tests := []struct {
		name  string
		token string
	}{
		{"expired within leeway", rawToken(t, jwt.SigningMethodHS256, keyNew.Secret, map[string]any{"kid": "new"},
			mapClaims(func(m jwt.MapClaims) { m["exp"] = now.Add(-20 * time.Second).Unix() }))},
		{"not before within leeway", rawToken(t, jwt.SigningMethodHS256, keyNew.Secret, map[string]any{"kid": "new"},
			mapClaims(func(m jwt.MapClaims) { m["nbf"] = now.Add(20 * time.Second).Unix() }))},
		{"no kid, current key", rawToken(t, jwt.SigningMethodHS256, keyNew.Secret, map[string]any{"kid": nil},
			mapClaims(nil))},
		{"unknown claims ignored", rawToken(t, jwt.SigningMethodHS256, keyNew.Secret, map[string]any{"kid": "new"},
			mapClaims(func(m jwt.MapClaims) { m["extra"] = []int{1, 2} }))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ring.Verify(tt.token, now)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if c.Identity != "u-42" || c.Role != RoleParticipant {
				t.Errorf("Verify = %+v", c)
			}
		})
	}
}

func TestKeyRotation(t *testing.T) {
	oldTok, err := newRing(t, keyOld).Sign(validClaims())
	if err != nil {
		t.Fatal(err)
	}
	rotated := newRing(t, keyNew, keyOld)
	if _, err := rotated.Verify(oldTok, now); err != nil {
		t.Errorf("ring(new, old).Verify(old token): %v", err)
	}
	if _, err := newRing(t, keyNew).Verify(oldTok, now); !errors.Is(err, ErrInvalid) {
		t.Errorf("ring(new).Verify(old token) error = %v, want ErrInvalid", err)
	}
	newTok, err := rotated.Sign(validClaims())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newRing(t, keyOld).Verify(newTok, now); !errors.Is(err, ErrInvalid) {
		t.Errorf("ring(old).Verify(token with kid new) error = %v, want ErrInvalid", err)
	}
	if _, err := newRing(t, keyNew).Verify(newTok, now); err != nil {
		t.Errorf("ring(new).Verify(new token): %v", err)
	}
}

func TestClaimsValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Claims)
		ok   bool
	}{
		{"valid", func(*Claims) {}, true},
		{"any room", func(c *Claims) { c.Room = "*" }, true},
		{"no room", func(c *Claims) { c.Room = "" }, false},
		{"room too long", func(c *Claims) { c.Room = strings.Repeat("r", 129) }, false},
		{"room control char", func(c *Claims) { c.Room = "a\nb" }, false},
		{"no identity", func(c *Claims) { c.Identity = "" }, false},
		{"identity 128 bytes", func(c *Claims) { c.Identity = strings.Repeat("i", 128) }, true},
		{"identity 129 bytes", func(c *Claims) { c.Identity = strings.Repeat("i", 129) }, false},
		{"identity control char", func(c *Claims) { c.Identity = "u\x00" }, false},
		{"identity DEL", func(c *Claims) { c.Identity = "u\x7f" }, false},
		{"identity not UTF-8", func(c *Claims) { c.Identity = "u\xff" }, false},
		{"no name", func(c *Claims) { c.Name = "" }, false},
		{"blank name", func(c *Claims) { c.Name = "   " }, false},
		{"name 64 runes", func(c *Claims) { c.Name = strings.Repeat("é", 64) }, true},
		{"name 64 runes plus spaces", func(c *Claims) { c.Name = "  " + strings.Repeat("é", 64) + " " }, true},
		{"name 65 runes", func(c *Claims) { c.Name = strings.Repeat("é", 65) }, false},
		{"name tab", func(c *Claims) { c.Name = "Ana\tB" }, false},
		{"name C1 control", func(c *Claims) { c.Name = "Ana\u0085" }, false},
		{"name padded past 256 bytes", func(c *Claims) { c.Name = strings.Repeat(" ", 300) + "Ana" }, false},
		{"no role", func(c *Claims) { c.Role = "" }, false},
		{"unknown role", func(c *Claims) { c.Role = "admin" }, false},
		{"no lang", func(c *Claims) { c.Lang = "" }, true},
		{"lang 16 bytes", func(c *Claims) { c.Lang = "zh-Hant-TW-x-abc" }, true},
		{"lang 17 bytes", func(c *Claims) { c.Lang = "zh-Hant-TW-x-abcd" }, false},
		{"lang underscore", func(c *Claims) { c.Lang = "pt_BR" }, false},
		{"lang space", func(c *Claims) { c.Lang = "pt BR" }, false},
		{"no expiry", func(c *Claims) { c.Expires = time.Time{} }, false},
		{"expiry before issue", func(c *Claims) { c.Expires = c.IssuedAt }, false},
		{"no issued at", func(c *Claims) { c.IssuedAt = time.Time{} }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validClaims()
			tt.mod(&c)
			err := c.Validate()
			if tt.ok && err != nil {
				t.Errorf("Validate: %v", err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalid) {
				t.Errorf("Validate error = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestAllowsRoom(t *testing.T) {
	tests := []struct {
		claim, room string
		want        bool
	}{
		{"assembly", "assembly", true},
		{"assembly", "other", false},
		{"assembly", "", false},
		{"*", "anything", true},
		{"*", "", false},
	}
	for _, tt := range tests {
		if got := (Claims{Room: tt.claim}).AllowsRoom(tt.room); got != tt.want {
			t.Errorf("Claims{Room: %q}.AllowsRoom(%q) = %v, want %v", tt.claim, tt.room, got, tt.want)
		}
	}
}

func TestRoles(t *testing.T) {
	want := []Role{"guest", "participant", "speaker", "interpreter", "moderator", "bot"}
	roles := Roles()
	if len(roles) != len(want) {
		t.Fatalf("Roles() = %v, want %v", roles, want)
	}
	for i, r := range roles {
		if r != want[i] {
			t.Errorf("Roles()[%d] = %q, want %q", i, r, want[i])
		}
		got, err := ParseRole(string(r))
		if err != nil || got != r || !r.Valid() {
			t.Errorf("ParseRole(%q) = %q, %v", r, got, err)
		}
		if r.CanModerate() != (r == RoleModerator) {
			t.Errorf("%q.CanModerate() = %v", r, r.CanModerate())
		}
		if r.RateExempt() != (r == RoleBot) {
			t.Errorf("%q.RateExempt() = %v", r, r.RateExempt())
		}
	}
	for _, s := range []string{"", "admin", "Moderator", " bot"} {
		if _, err := ParseRole(s); !errors.Is(err, ErrBadRole) {
			t.Errorf("ParseRole(%q) error = %v, want ErrBadRole", s, err)
		}
		if Role(s).Valid() || Role(s).CanModerate() || Role(s).RateExempt() {
			t.Errorf("Role(%q) is valid or privileged", s)
		}
	}
}

func TestNewKeyring(t *testing.T) {
	short := Key{ID: "s", Secret: make([]byte, MinSecretLen-1)}
	tests := []struct {
		name    string
		current Key
		older   []Key
		ok      bool
	}{
		{"one key", keyNew, nil, true},
		{"two keys", keyNew, []Key{keyOld}, true},
		{"short secret", short, nil, false},
		{"short older secret", keyNew, []Key{short}, false},
		{"empty kid", Key{Secret: keyNew.Secret}, nil, false},
		{"duplicate kid", keyNew, []Key{{ID: "new", Secret: keyOld.Secret}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewKeyring(tt.current, tt.older...)
			if (err == nil) != tt.ok {
				t.Errorf("NewKeyring error = %v, want ok %v", err, tt.ok)
			}
		})
	}

	t.Run("copies secrets", func(t *testing.T) {
		k := Key{ID: "c", Secret: []byte(string(keyNew.Secret))}
		ring := newRing(t, k)
		tok, err := ring.Sign(validClaims())
		if err != nil {
			t.Fatal(err)
		}
		k.Secret[0] ^= 1
		if _, err := ring.Verify(tok, now); err != nil {
			t.Errorf("Verify after caller changed its secret: %v", err)
		}
	})
}

func TestParseKeys(t *testing.T) {
	secret := string(keyNew.Secret)
	other := string(keyOld.Secret)
	tests := []struct {
		name    string
		spec    string
		current string // kid Sign uses; "" = want an error
		kids    []string
	}{
		{"bare secret", secret, "k1", []string{"k1"}},
		{"bare secret with spaces", "  " + secret + "\n", "k1", []string{"k1"}},
		{"one pair", "a:" + secret, "a", []string{"a"}},
		{"two pairs", "a:" + secret + ", b:" + other, "a", []string{"a", "b"}},
		{"spaces around", " a : " + secret + " , b : " + other + " ", "a", []string{"a", "b"}},
		{"colon in secret", "a:" + secret + ":x", "a", []string{"a"}},
		{"empty", "", "", nil},
		{"short bare secret", "too-short", "", nil},
		{"short secret", "a:short", "", nil},
		{"empty kid", ":" + secret, "", nil},
		{"missing colon", "a:" + secret + "," + other, "", nil},
		{"trailing comma", "a:" + secret + ",", "", nil},
		{"duplicate kid", "a:" + secret + ",a:" + other, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ring, err := ParseKeys(tt.spec)
			if tt.current == "" {
				if err == nil {
					t.Fatalf("ParseKeys(%q) succeeded, want an error", tt.spec)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseKeys: %v", err)
			}
			if ring.current != tt.current || len(ring.keys) != len(tt.kids) {
				t.Errorf("ring current %q with %d keys, want %q with %v", ring.current, len(ring.keys), tt.current, tt.kids)
			}
			for _, kid := range tt.kids {
				if len(ring.keys[kid]) < MinSecretLen || strings.TrimSpace(string(ring.keys[kid])) != string(ring.keys[kid]) {
					t.Errorf("key %q = %q", kid, ring.keys[kid])
				}
			}
		})
	}
}

func TestGenerateKey(t *testing.T) {
	a, b := GenerateKey(), GenerateKey()
	if len(a.Secret) != 32 || len(a.ID) != len("dev-")+8 || !strings.HasPrefix(a.ID, "dev-") {
		t.Errorf("GenerateKey() = id %q, %d-byte secret", a.ID, len(a.Secret))
	}
	if a.ID == b.ID || string(a.Secret) == string(b.Secret) {
		t.Error("GenerateKey returned the same key twice")
	}
	newRing(t, a, b)
}

func TestAdminKey(t *testing.T) {
	const key = "0123456789abcdef"
	for _, bad := range []string{"", "0123456789abcde", "0123456789 abcdef", "0123456789abcdef\n"} {
		if _, err := NewAdminKey(bad); err == nil {
			t.Errorf("NewAdminKey(%q) succeeded", bad)
		}
	}
	a, err := NewAdminKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for presented, want := range map[string]bool{
		key: true, "": false, key[:15]: false, key + "0": false, "0123456789ABCDEF": false, "x123456789abcdef": false,
	} {
		if got := a.Check(presented); got != want {
			t.Errorf("Check(%q) = %v, want %v", presented, got, want)
		}
	}
	if (AdminKey{}).Check("") {
		t.Error("zero AdminKey accepted the empty key")
	}

	g1, g2 := GenerateAdminKey(), GenerateAdminKey()
	if raw, err := base64.RawURLEncoding.DecodeString(g1); err != nil || len(raw) != 32 || g1 == g2 {
		t.Errorf("GenerateAdminKey() = %q, %q (decode error %v)", g1, g2, err)
	}
	if _, err := NewAdminKey(g1); err != nil {
		t.Errorf("NewAdminKey(generated): %v", err)
	}
}

func TestBearerToken(t *testing.T) {
	tests := []struct {
		header, token string
		ok            bool
	}{
		{"Bearer abc.def", "abc.def", true},
		{"bearer abc", "abc", true},
		{"BEARER abc", "abc", true},
		{"Bearer   abc  ", "abc", true},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Bearerabc", "", false},
		{"Basic YWxhZGRpbjpvcGVuc2VzYW1l", "", false},
		{"Bearer abc def", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := BearerToken(tt.header)
		if got != tt.token || ok != tt.ok {
			t.Errorf("BearerToken(%q) = %q, %v, want %q, %v", tt.header, got, ok, tt.token, tt.ok)
		}
	}
}

func TestInviteAndSessionClaimsRoundTrip(t *testing.T) {
	k, err := NewKeyring(GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	inv := Claims{Room: "assembly", Role: RoleSpeaker, Invite: true, Expires: now.Add(time.Hour)}
	tok, err := k.Sign(inv)
	if err != nil {
		t.Fatal(err)
	}
	got, err := k.Verify(tok, now)
	if err != nil || !got.Invite || got.Session || got.Role != RoleSpeaker || got.Identity != "" {
		t.Fatalf("invite: %+v, %v", got, err)
	}
	if _, err := k.Sign(Claims{Room: "a", Identity: "x", Name: "X", Role: RoleGuest, Invite: true, Expires: now.Add(time.Hour)}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("an invite naming an identity was signed: %v", err)
	}
	if _, err := k.Sign(Claims{Room: "a", Role: RoleGuest, Expires: now.Add(time.Hour)}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a non-invite without identity was signed: %v", err)
	}
	ses := Claims{Room: "*", Identity: "guest-1", Name: "Ana", Role: RoleGuest, Session: true, Expires: now.Add(time.Hour)}
	tok, err = k.Sign(ses)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k.Verify(tok, now); err != nil || !got.Session || got.Invite || got.Identity != "guest-1" {
		t.Fatalf("session: %+v, %v", got, err)
	}
}
