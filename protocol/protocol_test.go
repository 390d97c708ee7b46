package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

// jsonEqual reports whether a and b are the same JSON value (key order and spacing aside).
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("not json: %q: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("not json: %q: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

func TestDecodeClient(t *testing.T) {
	type32 := strings.Repeat("t", MaxTypeLen)
	room64 := strings.Repeat("r", MaxRoomNameLen)
	tests := []struct {
		name  string
		frame string
		want  Envelope
	}{
		{"full", `{"type":"chat","id":7,"room":"lobby","data":{"text":"hi"}}`,
			Envelope{Type: "chat", ID: 7, Room: "lobby", Data: json.RawMessage(`{"text":"hi"}`)}},
		{"type only", `{"type":"pong"}`, Envelope{Type: "pong"}},
		{"surrounding whitespace", " \t\r\n{\"type\":\"auth\"}\n ", Envelope{Type: "auth"}},
		{"null data", `{"type":"leave","room":"a","data":null}`, Envelope{Type: "leave", Room: "a", Data: json.RawMessage(`null`)}},
		{"empty object data", `{"type":"join","room":"a","data":{}}`, Envelope{Type: "join", Room: "a", Data: json.RawMessage(`{}`)}},
		{"empty room is no room", `{"type":"auth","room":""}`, Envelope{Type: "auth"}},
		{"room of every allowed character", `{"type":"join","room":"aZ09-_.x"}`, Envelope{Type: "join", Room: "aZ09-_.x"}},
		{"longest room", `{"type":"join","room":"` + room64 + `"}`, Envelope{Type: "join", Room: room64}},
		{"longest type", `{"type":"` + type32 + `"}`, Envelope{Type: type32}},
		{"unknown type is the handler's business", `{"type":"nope"}`, Envelope{Type: "nope"}},
		{"unknown fields ignored", `{"type":"chat","extra":[1,2],"room":"a"}`, Envelope{Type: "chat", Room: "a"}},
		{"escaped type", `{"type":"c\u0068at"}`, Envelope{Type: "chat"}},
		{"non-ascii in data", `{"type":"chat","data":{"text":"olá, мир"}}`, Envelope{Type: "chat", Data: json.RawMessage(`{"text":"olá, мир"}`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeClient([]byte(tt.frame))
			if err != nil {
				t.Fatalf("DecodeClient(%q): %v", tt.frame, err)
			}
			if got.Type != tt.want.Type || got.ID != tt.want.ID || got.Room != tt.want.Room || !bytes.Equal(got.Data, tt.want.Data) {
				t.Fatalf("DecodeClient(%q) = %+v (data %q), want %+v (data %q)", tt.frame, got, got.Data, tt.want, tt.want.Data)
			}
		})
	}
}

func TestDecodeClientRejects(t *testing.T) {
	tests := []struct {
		name  string
		frame string
	}{
		{"not utf-8 in a string", "{\"type\":\"chat\xff\"}"},
		{"not utf-8 in data", "{\"type\":\"chat\",\"data\":{\"text\":\"\xc3\x28\"}}"},
		{"truncated utf-8", "{\"type\":\"chat\"}\xe2\x82"},
		{"empty", ""},
		{"blank", " \n\t"},
		{"array", `[{"type":"chat"}]`},
		{"string", `"chat"`},
		{"number", `42`},
		{"null", `null`},
		{"true", `true`},
		{"truncated object", `{"type":"chat"`},
		{"trailing garbage", `{"type":"chat"}x`},
		{"two objects", `{"type":"chat"}{"type":"chat"}`},
		{"missing type", `{"room":"a"}`},
		{"empty type", `{"type":""}`},
		{"null type", `{"type":null}`},
		{"type not a string", `{"type":1}`},
		{"long type", `{"type":"` + strings.Repeat("t", MaxTypeLen+1) + `"}`},
		{"id not a number", `{"type":"chat","id":"1"}`},
		{"negative id", `{"type":"chat","id":-1}`},
		{"room not a string", `{"type":"join","room":5}`},
		{"room starting with a dot", `{"type":"join","room":".a"}`},
		{"room with a space", `{"type":"join","room":"a b"}`},
		{"room with an escaped space", `{"type":"join","room":"a\u0020b"}`},
		{"room with a slash", `{"type":"join","room":"a/b"}`},
		{"room with a colon", `{"type":"join","room":"a:b"}`},
		{"room non-ascii", `{"type":"join","room":"sala-ã"}`},
		{"room with a NUL", `{"type":"join","room":"a\u0000"}`},
		{"long room", `{"type":"join","room":"` + strings.Repeat("r", MaxRoomNameLen+1) + `"}`},
		{"data array", `{"type":"chat","data":[1]}`},
		{"data string", `{"type":"chat","data":"hi"}`},
		{"data number", `{"type":"chat","data":1}`},
		{"data bool", `{"type":"chat","data":false}`},
		{"data invalid", `{"type":"chat","data":{"text":}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, err := DecodeClient([]byte(tt.frame))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeClient(%q) = %+v, %v; want ErrMalformed", tt.frame, env, err)
			}
			if !reflect.DeepEqual(env, Envelope{}) {
				t.Fatalf("DecodeClient(%q) returned %+v with its error, want the zero Envelope", tt.frame, env)
			}
		})
	}
}

func TestDecodeData(t *testing.T) {
	for _, data := range []string{"", "null"} {
		v := ChatSend{Text: "kept"}
		if err := DecodeData(json.RawMessage(data), &v); err != nil || v.Text != "kept" {
			t.Errorf("DecodeData(%q) = %v, %+v; want nil, untouched", data, err, v)
		}
	}
	var v ChatSend
	if err := DecodeData(json.RawMessage(`{"text":"hi","nonce":"n1"}`), &v); err != nil || v != (ChatSend{Text: "hi", Nonce: "n1"}) {
		t.Errorf("DecodeData = %v, %+v", err, v)
	}
	if err := DecodeData(json.RawMessage(`{"text":1}`), &v); !errors.Is(err, ErrMalformed) {
		t.Errorf("DecodeData of a wrong field type: %v, want ErrMalformed", err)
	}
}

func TestValidRoomName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"0", true},
		{"lobby", true},
		{"Assembly-2026_pt.BR", true},
		{"a.", true},
		{"a..b", true},
		{"-", true},
		{"_x", true},
		{strings.Repeat("x", MaxRoomNameLen), true},
		{"", false},
		{".", false},
		{".hidden", false},
		{strings.Repeat("x", MaxRoomNameLen+1), false},
		{"a b", false},
		{"a/b", false},
		{"a\\b", false},
		{"a:b", false},
		{"a*", false},
		{`a"b`, false},
		{"a\x00", false},
		{"a\n", false},
		{"é", false},
		{"\xff", false},
	}
	for _, tt := range tests {
		err := ValidRoomName(tt.name)
		if tt.ok && err != nil {
			t.Errorf("ValidRoomName(%q) = %v, want nil", tt.name, err)
		}
		if !tt.ok && !errors.Is(err, ErrMalformed) {
			t.Errorf("ValidRoomName(%q) = %v, want ErrMalformed", tt.name, err)
		}
	}
}

func TestMarshal(t *testing.T) {
	tests := []struct {
		name     string
		msg      []byte
		wantType string
		wantID   uint64
		wantRoom string
		wantData string // "" for none
	}{
		{"ping", Marshal(TypePing, 0, "", nil), TypePing, 0, "", ""},
		{"reply", Marshal(TypeReply, 5, "room1", ChatSent{Offset: 9}), TypeReply, 5, "room1", `{"offset":9}`},
		{"max id", Marshal(TypeReply, math.MaxUint64, "", struct{}{}), TypeReply, math.MaxUint64, "", `{}`},
		{"raw payload", Marshal(TypeReply, 1, "r", json.RawMessage(`{"a":[1,2,{"b":null}]}`)), TypeReply, 1, "r", `{"a":[1,2,{"b":null}]}`},
		{"nil raw payload", Marshal(TypeReply, 1, "r", json.RawMessage(nil)), TypeReply, 1, "r", `null`},
		{"room needing quotes", Marshal(TypeReply, 2, "a\"b\\c\n\u2028<", nil), TypeReply, 2, "a\"b\\c\n\u2028<", ""},
		{"type needing quotes", Marshal("x\x00\x7f\"é\u2028", 3, "", nil), "x\x00\x7f\"é\u2028", 3, "", ""},
		{"payload with text", Marshal(TypeEvent, 0, "r", Event{Kind: KindChat, Time: 1, Text: "<b>&\n\"</b> 🙂"}), TypeEvent, 0, "r",
			`{"kind":"chat","time":1,"text":"<b>&\n\"</b> 🙂"}`},
		{"error", MarshalError(3, "r", CodeForbidden, "not <allowed>"), TypeError, 3, "r", `{"code":"forbidden","message":"not <allowed>"}`},
		{"error notice", MarshalError(0, "", CodeRateLimited, ""), TypeError, 0, "", `{"code":"rate_limited","message":""}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !json.Valid(tt.msg) {
				t.Fatalf("not valid JSON: %q", tt.msg)
			}
			if bytes.IndexByte(tt.msg, '\n') >= 0 {
				t.Fatalf("raw newline in %q: frames could not be split", tt.msg)
			}
			m, err := DecodeServer(tt.msg)
			if err != nil {
				t.Fatalf("DecodeServer(%q): %v", tt.msg, err)
			}
			if m.Type != tt.wantType || m.ID != tt.wantID || m.Room != tt.wantRoom || m.Offset != 0 {
				t.Fatalf("DecodeServer(%q) = %+v, want type %q id %d room %q", tt.msg, m, tt.wantType, tt.wantID, tt.wantRoom)
			}
			if !jsonEqual(t, m.Data, []byte(tt.wantData)) {
				t.Fatalf("DecodeServer(%q) data %q, want %q", tt.msg, m.Data, tt.wantData)
			}
		})
	}
}

func TestMarshalErrorPayload(t *testing.T) {
	m, err := DecodeServer(MarshalError(9, "lobby", CodeNotJoined, "join first"))
	if err != nil {
		t.Fatal(err)
	}
	var e Error
	if err := DecodeData(m.Data, &e); err != nil {
		t.Fatal(err)
	}
	if e != (Error{Code: CodeNotJoined, Message: "join first"}) {
		t.Fatalf("error payload %+v", e)
	}
}

func TestMarshalPanicsOnUnencodable(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Marshal of a channel did not panic")
		}
	}()
	Marshal(TypeReply, 1, "", make(chan int))
}

func TestAppendEventRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		room   string
		offset uint64
		data   string
		fast   bool // whether the fast path must take it
	}{
		{"chat", "lobby", 1, `{"kind":"chat","time":1700000000000,"text":"hi"}`, true},
		{"empty object", "r", 0, `{}`, true},
		{"nested", "a.b-c_D", 42, `{"kind":"member.joined","member":{"identity":"u1","name":"Ana","role":"member"}}`, true},
		{"braces and quotes in strings", "r", 7, `{"text":"}\"{,\"offset\":1}","x":"\\"}`, true},
		{"unicode", "r", 8, `{"text":"olá 🙂 \u2028"}`, true},
		{"19 digits", "r", 9999999999999999999, `{}`, true},
		{"max offset", "r", math.MaxUint64, `{"k":1}`, false},
		{"room needing quotes", "a\"b", 3, `{}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("kept\n")
			buf := AppendEvent(bytes.Clone(prefix), tt.room, tt.offset, []byte(tt.data))
			if !bytes.HasPrefix(buf, prefix) {
				t.Fatalf("AppendEvent lost the buffer's contents: %q", buf)
			}
			msg := buf[len(prefix):]
			if !json.Valid(msg) {
				t.Fatalf("not valid JSON: %q", msg)
			}
			if _, ok := decodeEventFast(msg); ok != tt.fast {
				t.Errorf("decodeEventFast(%q) ok = %v, want %v", msg, ok, tt.fast)
			}
			m, err := DecodeServer(msg)
			if err != nil {
				t.Fatalf("DecodeServer(%q): %v", msg, err)
			}
			want := ServerMessage{Type: TypeEvent, Room: tt.room, Offset: tt.offset}
			if m.Type != want.Type || m.ID != 0 || m.Room != want.Room || m.Offset != want.Offset || string(m.Data) != tt.data {
				t.Fatalf("DecodeServer(%q) = %+v (data %q), want %+v (data %q)", msg, m, m.Data, want, tt.data)
			}
			var slow ServerMessage
			if err := json.Unmarshal(msg, &slow); err != nil || !reflect.DeepEqual(slow, m) {
				t.Fatalf("encoding/json reads %+v, %v; DecodeServer read %+v", slow, err, m)
			}
		})
	}
}

func TestDecodeServerRejects(t *testing.T) {
	for _, msg := range []string{``, `{}`, `{"type":""}`, `{"id":1}`, `[1]`, `{"type":"event"`, `{"type":"event","offset":-1}`,
		`{"type":"event","room":"r","offset":1,"data":{}`} {
		if m, err := DecodeServer([]byte(msg)); !errors.Is(err, ErrMalformed) {
			t.Errorf("DecodeServer(%q) = %+v, %v; want ErrMalformed", msg, m, err)
		}
	}
}

func TestCloseReconnect(t *testing.T) {
	tests := []struct {
		code      int
		reconnect bool
	}{
		{CloseNormal, false}, // the server is done with this client
		{CloseTooBig, false},
		{CloseInternal, true},
		{CloseShutdown, true},
		{CloseBadRequest, false},
		{CloseUnauthorized, false},
		{CloseSlowConsumer, true},
		{CloseRateLimited, true},
		{CloseRemoved, false},
		{CloseReplaced, false},
		{CloseRoomClosed, false},
		{ClosePingTimeout, true},
		{CloseAuthTimeout, true}, // a slow network: try again
		{CloseTokenExpired, false},
		{1006, true}, // abnormal closure (network): reconnect
		{4999, true},
	}
	for _, tt := range tests {
		if got := CloseReconnect(tt.code); got != tt.reconnect {
			t.Errorf("CloseReconnect(%d) = %v, want %v", tt.code, got, tt.reconnect)
		}
	}
}

func TestSplitFrame(t *testing.T) {
	tests := []struct {
		name  string
		frame string
		want  []string
	}{
		{"empty", "", nil},
		{"only newlines", "\n\n\n", nil},
		{"one", `{"type":"ping"}`, []string{`{"type":"ping"}`}},
		{"one with trailing newline", "{\"a\":1}\n", []string{`{"a":1}`}},
		{"several", "{\"a\":1}\n{\"b\":2}\n{\"c\":3}", []string{`{"a":1}`, `{"b":2}`, `{"c":3}`}},
		{"empty lines", "\n{\"a\":1}\n\n\n{\"b\":2}\n\n", []string{`{"a":1}`, `{"b":2}`}},
		{"no trailing newline", "x\ny", []string{"x", "y"}},
		{"carriage returns are content", "x\r\ny\r", []string{"x\r", "y\r"}},
		{"spaces are content", " \n ", []string{" ", " "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			err := SplitFrame([]byte(tt.frame), func(msg []byte) error {
				if len(msg) == 0 {
					t.Error("fn called with an empty message")
				}
				got = append(got, string(msg))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("SplitFrame(%q) gave %q, want %q", tt.frame, got, tt.want)
			}
		})
	}
}

func TestSplitFrameStopsAtError(t *testing.T) {
	stop := errors.New("stop")
	var got []string
	err := SplitFrame([]byte("a\nb\nc"), func(msg []byte) error {
		got = append(got, string(msg))
		if string(msg) == "b" {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("SplitFrame = %v after %q; want stop after a, b", err, got)
	}
}

func TestSplitFrameOfCoalescedEvents(t *testing.T) {
	var frame []byte
	for i := range uint64(3) {
		frame = AppendEvent(frame, "lobby", i+1, []byte(`{"kind":"chat","text":"line\nbreak"}`))
		frame = append(frame, '\n')
	}
	var offsets []uint64
	err := SplitFrame(frame, func(msg []byte) error {
		m, err := DecodeServer(msg)
		offsets = append(offsets, m.Offset)
		return err
	})
	if err != nil || !reflect.DeepEqual(offsets, []uint64{1, 2, 3}) {
		t.Fatalf("SplitFrame of coalesced events: %v, offsets %v", err, offsets)
	}
}
