package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/liveforum/liveforum/auth"
	"github.com/liveforum/liveforum/client"
	"github.com/liveforum/liveforum/protocol"
)

// call makes an HTTP request to the test server; key "" sends no Authorization header.
func (ts *testServer) call(t *testing.T, method, path, key, contentType, body string) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, ts.http.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := ts.http.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, data
}

// admin calls the admin API with the admin key and a JSON body, and checks the status.
func (ts *testServer) admin(t *testing.T, method, path, body string, want int) []byte {
	t.Helper()
	resp, data := ts.call(t, method, path, testAdminKey, "application/json", body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s %s: status %d, want %d: %s", method, path, body, resp.StatusCode, want, data)
	}
	return data
}

func decodeJSON[T any](t *testing.T, data []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	return v
}

// roomStatus is a room as GET /api/rooms shows it.
type roomStatus struct {
	Name       string   `json:"name"`
	Title      string   `json:"title"`
	Languages  []string `json:"languages"`
	Guests     bool     `json:"guests"`
	MaxMembers int      `json:"max_members"`
	Members    int      `json:"members"`
	Local      int      `json:"local_connections"`
	Loaded     bool     `json:"loaded"`

	EmptyTTLSeconds int64     `json:"empty_ttl_seconds"`
	Created         time.Time `json:"created"`
}

func TestAdminAPIRequiresTheKey(t *testing.T) {
	ts := newTestServer(t, nil)
	for _, route := range []struct{ method, path string }{
		{"GET", "/api/rooms"}, {"POST", "/api/rooms"}, {"GET", "/api/rooms/x"}, {"DELETE", "/api/rooms/x"},
		{"POST", "/api/rooms/x/invites"}, {"POST", "/api/tokens"}, {"GET", "/metrics"},
	} {
		for _, authz := range []string{"", "Bearer wrong-key-0123456789", "Basic " + testAdminKey,
			"Bearer " + testAdminKey + "x", "Bearer", testAdminKey} {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			req, _ := http.NewRequestWithContext(ctx, route.method, ts.http.URL+route.path, strings.NewReader(`{"name":"x"}`))
			if authz != "" {
				req.Header.Set("Authorization", authz)
			}
			resp, err := ts.http.Client().Do(req)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s %s with %q: %d, WWW-Authenticate %q", route.method, route.path, authz, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
			}
		}
	}
	if _, err := ts.reg.Get(context.Background(), "x"); err == nil {
		t.Fatal("an unauthorized request created a room")
	}
	ts.admin(t, "GET", "/api/rooms", "", http.StatusOK)
	// The scheme is matched without regard to case.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.http.URL+"/api/rooms", nil)
	req.Header.Set("Authorization", "bearer "+testAdminKey)
	if resp, err := ts.http.Client().Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("lower-case scheme: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}

func TestAdminAPICreateListGet(t *testing.T) {
	ts := newTestServer(t, nil)
	resp, data := ts.call(t, "POST", "/api/rooms", testAdminKey, "application/json",
		`{"name":"agora","title":" Agora ","languages":["pt","en"],"guests":true,"max_members":50,"empty_ttl_seconds":3600}`)
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Location") != "/api/rooms/agora" {
		t.Fatalf("create: %d, Location %q: %s", resp.StatusCode, resp.Header.Get("Location"), data)
	}
	info := decodeJSON[roomStatus](t, data)
	if info.Name != "agora" || info.Title != "Agora" || !info.Guests || info.MaxMembers != 50 ||
		strings.Join(info.Languages, ",") != "pt,en" || info.Created.IsZero() || info.EmptyTTLSeconds != 3600 {
		t.Fatalf("created %+v", info)
	}
	// Without empty_ttl_seconds an API room lives a week while empty: long enough to prepare an assembly.
	plain := decodeJSON[roomStatus](t, ts.admin(t, "POST", "/api/rooms", `{"name":"week"}`, http.StatusCreated))
	if plain.EmptyTTLSeconds != int64(DefaultAPIRoomTTL/time.Second) {
		t.Fatalf("default API room TTL %d s", plain.EmptyTTLSeconds)
	}
	ts.admin(t, "POST", "/api/rooms", `{"name":"agora"}`, http.StatusConflict)
	// No Content-Type is taken as JSON.
	if resp, data := ts.call(t, "POST", "/api/rooms", testAdminKey, "", `{"name":"plain"}`); resp.StatusCode != http.StatusCreated {
		t.Fatalf("create without content type: %d %s", resp.StatusCode, data)
	}

	for _, c := range []struct {
		name, contentType, body string
		want                    int
	}{
		{"bad name", "application/json", `{"name":"no spaces please"}`, http.StatusBadRequest},
		{"empty name", "application/json", `{"name":""}`, http.StatusBadRequest},
		{"dot name", "application/json", `{"name":".env"}`, http.StatusBadRequest},
		{"bad json", "application/json", `{"name":`, http.StatusBadRequest},
		{"not an object", "application/json", `["agora2"]`, http.StatusBadRequest},
		{"unknown field", "application/json", `{"name":"agora2","colour":"red"}`, http.StatusBadRequest},
		{"trailing data", "application/json", `{"name":"agora2"} {"name":"agora3"}`, http.StatusBadRequest},
		{"negative ttl", "application/json", `{"name":"agora2","empty_ttl_seconds":-1}`, http.StatusBadRequest},
		{"negative max", "application/json", `{"name":"agora2","max_members":-1}`, http.StatusBadRequest},
		{"bad language", "application/json", `{"name":"agora2","languages":["pt BR"]}`, http.StatusBadRequest},
		{"long title", "application/json", `{"name":"agora2","title":"` + strings.Repeat("t", 201) + `"}`, http.StatusBadRequest},
		{"empty body", "application/json", ``, http.StatusBadRequest},
		{"oversized body", "application/json", `{"name":"agora2","title":"` + strings.Repeat("a", 70<<10) + `"}`, http.StatusRequestEntityTooLarge},
		{"wrong content type", "text/plain", `{"name":"agora2"}`, http.StatusUnsupportedMediaType},
		{"form", "application/x-www-form-urlencoded", `name=agora2`, http.StatusUnsupportedMediaType},
	} {
		resp, data := ts.call(t, "POST", "/api/rooms", testAdminKey, c.contentType, c.body)
		if resp.StatusCode != c.want {
			t.Errorf("%s: %d, want %d: %s", c.name, resp.StatusCode, c.want, data)
			continue
		}
		if e := decodeJSON[map[string]string](t, data); e["error"] == "" || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: error body %s (%s)", c.name, data, resp.Header.Get("Content-Type"))
		}
	}

	list := decodeJSON[struct{ Rooms []roomStatus }](t, ts.admin(t, "GET", "/api/rooms", "", http.StatusOK))
	if len(list.Rooms) != 3 || list.Rooms[0].Name != "agora" || list.Rooms[1].Name != "plain" || list.Rooms[0].Members != 0 {
		t.Fatalf("list: %+v", list.Rooms)
	}

	m := ts.dial(client.Options{Token: ts.token("agora", "ana", "Ana", auth.RoleParticipant)})
	join(t, m, "agora")
	st := decodeJSON[roomStatus](t, ts.admin(t, "GET", "/api/rooms/agora", "", http.StatusOK))
	if st.Name != "agora" || st.Members != 1 || st.Local != 1 || !st.Loaded || st.MaxMembers != 50 {
		t.Fatalf("status with a member: %+v", st)
	}
	list = decodeJSON[struct{ Rooms []roomStatus }](t, ts.admin(t, "GET", "/api/rooms", "", http.StatusOK))
	if list.Rooms[0].Members != 1 {
		t.Fatalf("list with a member: %+v", list.Rooms)
	}
	ts.admin(t, "GET", "/api/rooms/nowhere", "", http.StatusNotFound)
}

// An invite link lets anyone in with its role under a name they choose; the session token they get back
// keeps their identity when they reconnect.
func TestInviteLinks(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.admin(t, "POST", "/api/rooms", `{"name":"agora"}`, http.StatusCreated)
	before := time.Now()
	inv := decodeJSON[Invite](t, ts.admin(t, "POST", "/api/rooms/agora/invites", `{"role":"speaker","ttl_seconds":600}`, http.StatusCreated))
	if inv.Role != "speaker" || inv.Token == "" || inv.URL != ts.http.URL+"/r/agora#invite="+inv.Token ||
		inv.Expires.Before(before.Add(590*time.Second)) || inv.Expires.After(time.Now().Add(601*time.Second)) {
		t.Fatalf("invite: %+v", inv)
	}

	authWith := func(data string) protocol.AuthReply {
		t.Helper()
		r := ts.raw(t, nil)
		r.send(`{"type":"auth","id":1,"data":` + data + `}`)
		m := r.next()
		if m.Type != protocol.TypeReply {
			t.Fatalf("auth %s: %s %s", data, m.Type, m.Data)
		}
		ar := decodeJSON[protocol.AuthReply](t, m.Data)
		r.send(`{"type":"join","id":2,"room":"agora","data":{"presence":false}}`)
		if m := r.next(); m.Type != protocol.TypeReply || m.ID != 2 {
			t.Fatalf("join with %s: %s %s", data, m.Type, m.Data)
		}
		r.send(`{"type":"join","id":3,"room":"elsewhere","data":{}}`)
		if code := errCode(t, r.next()); code != protocol.CodeForbidden {
			t.Fatalf("invitee joining another room: %s", code)
		}
		return ar
	}
	first := authWith(`{"token":"` + inv.Token + `","name":"  Zoé \u0007 ","lang":"pt-BR"}`)
	if !strings.HasPrefix(first.Member.Identity, "inv-") || first.Member.Role != "speaker" || first.Member.Name != "Zoé" ||
		first.Member.Lang != "pt-BR" || first.Room != "agora" || first.Token == "" {
		t.Fatalf("invitee: %+v", first)
	}
	again := authWith(`{"token":"` + first.Token + `"}`)
	if again.Member != first.Member || again.Room != "agora" {
		t.Fatalf("reconnect with the session token: %+v, was %+v", again.Member, first.Member)
	}
	other := authWith(`{"token":"` + inv.Token + `","name":"Yuri"}`)
	if other.Member.Identity == first.Member.Identity || other.Member.Role != "speaker" {
		t.Fatalf("second invitee: %+v", other.Member)
	}

	// The Go client does the same.
	c := ts.dial(client.Options{Token: inv.Token, Name: "Xia"})
	if m := c.Member(); !strings.HasPrefix(m.Identity, "inv-") || m.Role != "speaker" || m.Name != "Xia" {
		t.Fatalf("client invitee: %+v", m)
	}
	if r := join(t, c, "agora"); r.Self.Role != "speaker" {
		t.Fatalf("invitee's join: %+v", r.Self)
	}

	// An invite without a name is refused; a default invite is for participants.
	r := ts.raw(t, nil)
	r.send(`{"type":"auth","id":1,"data":{"token":"` + inv.Token + `"}}`)
	if code := errCode(t, r.next()); code != protocol.CodeBadRequest {
		t.Fatalf("invite without a name: %s", code)
	}
	def := decodeJSON[Invite](t, ts.admin(t, "POST", "/api/rooms/agora/invites", `{}`, http.StatusCreated))
	if def.Role != "participant" {
		t.Fatalf("default invite role %q", def.Role)
	}

	for _, body := range []string{`{"role":"guest"}`, `{"role":"bot"}`, `{"role":"admin"}`, `{"role":"Moderator"}`,
		`{"ttl_seconds":7776001}`, `{"ttl_seconds":9223372036854775807}`, `{"ttl_seconds":-1}`, `{"role":"speaker","extra":1}`} {
		ts.admin(t, "POST", "/api/rooms/agora/invites", body, http.StatusBadRequest)
	}
	ts.admin(t, "POST", "/api/rooms/nowhere/invites", `{}`, http.StatusNotFound)
}

func TestAdminAPITokens(t *testing.T) {
	ts := newTestServer(t, nil)
	out := decodeJSON[struct {
		Token   string    `json:"token"`
		Expires time.Time `json:"expires"`
	}](t, ts.admin(t, "POST", "/api/tokens", `{"room":"agora","identity":"u-1","name":"Una","role":"moderator","lang":"en","ttl_seconds":60}`, http.StatusCreated))
	if out.Token == "" || out.Expires.After(time.Now().Add(61*time.Second)) || out.Expires.Before(time.Now()) {
		t.Fatalf("token answer %+v", out)
	}
	c := ts.dial(client.Options{Token: out.Token})
	if m := c.Member(); m.Identity != "u-1" || m.Name != "Una" || m.Role != "moderator" || m.Lang != "en" {
		t.Fatalf("member %+v", m)
	}
	if r := join(t, c, "agora"); r.Room.Name != "agora" { // the token names the room: it is created
		t.Fatalf("join %+v", r)
	}
	any := decodeJSON[map[string]any](t, ts.admin(t, "POST", "/api/tokens", `{"room":"*","identity":"u-2","name":"Ugo","role":"participant"}`, http.StatusCreated))
	c2 := ts.dial(client.Options{Token: any["token"].(string)})
	join(t, c2, "agora")

	for _, body := range []string{
		`{"room":"agora","identity":"u-3","name":"X","role":"king"}`,
		`{"room":"bad room","identity":"u-3","name":"X","role":"participant"}`,
		`{"room":"","identity":"u-3","name":"X","role":"participant"}`,
		`{"room":"agora","identity":"","name":"X","role":"participant"}`,
		`{"room":"agora","identity":"u-3","name":"","role":"participant"}`,
		`{"room":"agora","identity":"u-3","name":"X","role":"participant","lang":"not a tag"}`,
		`{"room":"agora","identity":"u-3","name":"X","role":"participant","admin":true}`,
		`{"room":"agora","identity":"u-3","name":"X","ttl_seconds":9223372036854775807}`,
	} {
		ts.admin(t, "POST", "/api/tokens", body, http.StatusBadRequest)
	}
	// Without a role, a token is a participant's.
	noRole := decodeJSON[map[string]string](t, ts.admin(t, "POST", "/api/tokens", `{"room":"agora","identity":"u-4","name":"Y"}`, http.StatusCreated))
	if cl, err := ts.keys.Verify(noRole["token"], time.Now()); err != nil || cl.Role != auth.RoleParticipant {
		t.Fatalf("token without role: %+v %v", cl, err)
	}
}

// Deleting a room closes its members' connections with 4006, after telling them why.
func TestAdminAPIDeleteRoom(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.admin(t, "POST", "/api/rooms", `{"name":"agora"}`, http.StatusCreated)
	m := ts.dial(client.Options{Token: ts.token("agora", "ana", "Ana", auth.RoleParticipant), Reconnect: true})
	join(t, m, "agora")
	ts.admin(t, "DELETE", "/api/rooms/agora", `{"reason":"session over"}`, http.StatusNoContent)

	var last protocol.Event
	timeout := time.After(10 * time.Second)
	for done := false; !done; {
		select {
		case ev, ok := <-m.Events():
			if !ok {
				done = true
				break
			}
			if d, err := ev.Decode(); err == nil {
				last = d
			}
		case <-timeout:
			t.Fatal("member not closed")
		}
	}
	if ce, ok := m.Err().(*client.CloseError); !ok || ce.Code != protocol.CloseRoomClosed {
		t.Fatalf("member ended with %v, want close %d", m.Err(), protocol.CloseRoomClosed)
	}
	if last.Kind != protocol.KindRoomClosed || last.Reason != "session over" {
		t.Fatalf("last event before the close: %+v", last)
	}
	ts.admin(t, "GET", "/api/rooms/agora", "", http.StatusNotFound)
	ts.admin(t, "DELETE", "/api/rooms/agora", "", http.StatusNotFound)
	if list := decodeJSON[struct{ Rooms []roomStatus }](t, ts.admin(t, "GET", "/api/rooms", "", http.StatusOK)); len(list.Rooms) != 0 {
		t.Fatalf("rooms after delete: %+v", list.Rooms)
	}
	// Without a body.
	ts.admin(t, "POST", "/api/rooms", `{"name":"again"}`, http.StatusCreated)
	ts.admin(t, "DELETE", "/api/rooms/again", "", http.StatusNoContent)
}

func TestHealthReadinessMetrics(t *testing.T) {
	ts := newTestServer(t, nil)
	if resp, body := ts.call(t, "GET", "/healthz", "", "", ""); resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		t.Fatalf("healthz %d %q", resp.StatusCode, body)
	}
	if resp, _ := ts.call(t, "GET", "/readyz", "", "", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz %d", resp.StatusCode)
	}
	if resp, _ := ts.call(t, "GET", "/metrics", "", "", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("metrics without key: %d", resp.StatusCode)
	}
	c := ts.dial(client.Options{Token: ts.token("r", "ana", "Ana", auth.RoleParticipant)})
	join(t, c, "r")
	resp, body := ts.call(t, "GET", "/metrics", testAdminKey, "", "")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("metrics: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{"\nliveforum_connections 1\n", "# TYPE liveforum_connections gauge", "\nliveforum_connections_total 1\n",
		"\nliveforum_media_subscribers_direct 0\n", "\nliveforum_media_subscribers_pion 0\n"} {
		if !strings.Contains("\n"+string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
}

// Once shutdown has begun the node is not ready and takes no new connections, though it is alive.
func TestReadyzFailsOnceShutdownBegins(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial(client.Options{Token: ts.token("r", "ana", "Ana", auth.RoleParticipant)})
	join(t, c, "r")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if code := waitClosed(t, c); code != protocol.CloseShutdown {
		t.Fatalf("client closed with %d", code)
	}
	if resp, _ := ts.call(t, "GET", "/readyz", "", "", ""); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz during shutdown: %d", resp.StatusCode)
	}
	if resp, _ := ts.call(t, "GET", "/healthz", "", "", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz during shutdown: %d", resp.StatusCode)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer dcancel()
	if late, err := client.Dial(dctx, client.Options{URL: ts.wsURL, Token: ts.token("r", "bob", "Bob", auth.RoleParticipant)}); err == nil {
		late.Close()
		t.Fatal("a new connection was accepted during shutdown")
	}
}
