package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"unicode/utf8"
)

// Seeds in code are the well-formed messages; testdata/fuzz holds the tricky ones and every regression.

func FuzzDecodeClient(f *testing.F) {
	for _, s := range []string{
		`{"type":"auth","data":{"token":"abc"}}`,
		`{"type":"join","id":2,"room":"lobby","data":{"since":{"epoch":"e1","offset":5}}}`,
		`{"type":"chat","id":3,"room":"lobby","data":{"text":"olá","nonce":"n"}}`,
		`{"type":"pong","data":null}`,
		` {"type":"leave","room":"a.b"} `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		env, err := DecodeClient(frame)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			if !reflect.DeepEqual(env, Envelope{}) {
				t.Fatalf("error %v with a non-zero envelope %+v", err, env)
			}
			return
		}
		if !utf8.Valid(frame) {
			t.Fatalf("accepted invalid utf-8 %q", frame)
		}
		if env.Type == "" || len(env.Type) > MaxTypeLen {
			t.Fatalf("accepted type %q", env.Type)
		}
		if env.Room != "" && ValidRoomName(env.Room) != nil {
			t.Fatalf("accepted room %q", env.Room)
		}
		if d := env.Data; len(d) != 0 && string(d) != "null" {
			var obj map[string]any
			if d[0] != '{' || json.Unmarshal(d, &obj) != nil {
				t.Fatalf("accepted data %q that is not an object", d)
			}
		}
		// Whatever was accepted decodes into a payload struct or fails cleanly.
		var v JoinRequest
		if err := DecodeData(env.Data, &v); err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("DecodeData: %v is not ErrMalformed", err)
		}
	})
}

func FuzzDecodeServer(f *testing.F) {
	f.Add(AppendEvent(nil, "lobby", 1, []byte(`{"kind":"chat","time":1,"text":"hi"}`)))
	f.Add(AppendEvent(nil, "r", 18446744073709551615, []byte(`{}`)))
	f.Add(Marshal(TypeReply, 4, "lobby", ChatSent{Offset: 12}))
	f.Add(MarshalError(0, "", CodeRateLimited, "slow down"))
	f.Add(Marshal(TypePing, 0, "", nil))
	f.Fuzz(func(t *testing.T, msg []byte) {
		m, err := DecodeServer(msg)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
		} else if m.Type == "" {
			t.Fatalf("decoded a message without a type: %+v", m)
		}

		fast, ok := decodeEventFast(msg)
		if !ok {
			return
		}
		// The fast path must read exactly what encoding/json reads.
		if err != nil {
			t.Fatalf("fast path accepted %q but DecodeServer failed: %v", msg, err)
		}
		var slow ServerMessage
		if err := json.Unmarshal(msg, &slow); err != nil {
			t.Fatalf("fast path accepted %q, encoding/json rejects it: %v", msg, err)
		}
		if fast.Type != slow.Type || fast.ID != slow.ID || fast.Room != slow.Room || fast.Offset != slow.Offset {
			t.Fatalf("%q: fast path read type %q id %d room %q offset %d; encoding/json read %q %d %q %d",
				msg, fast.Type, fast.ID, fast.Room, fast.Offset, slow.Type, slow.ID, slow.Room, slow.Offset)
		}
		var fd, sd any
		if err := json.Unmarshal(fast.Data, &fd); err != nil {
			t.Fatalf("%q: fast path data %q is not JSON: %v", msg, fast.Data, err)
		}
		if err := json.Unmarshal(slow.Data, &sd); err != nil {
			t.Fatalf("%q: encoding/json data %q: %v", msg, slow.Data, err)
		}
		if !reflect.DeepEqual(fd, sd) {
			t.Fatalf("%q: fast path data %q, encoding/json data %q", msg, fast.Data, slow.Data)
		}
	})
}

// FuzzAppendEvent checks the encoder against both decoders: what AppendEvent writes for a valid room and
// an object payload is read back exactly, by the fast path.
func FuzzAppendEvent(f *testing.F) {
	f.Add("lobby", uint64(1), []byte(`{"kind":"chat","text":"hi"}`))
	f.Add("a.b-c_D", uint64(9999999999999999999), []byte(`{"a":[1,{"b":"}\""}]}`))
	f.Add("r", uint64(0), []byte(`{}`))
	f.Fuzz(func(t *testing.T, room string, offset uint64, data []byte) {
		if ValidRoomName(room) != nil || len(data) == 0 || data[0] != '{' || !json.Valid(data) {
			return
		}
		msg := AppendEvent(nil, room, offset, data)
		m, err := DecodeServer(msg)
		if err != nil {
			t.Fatalf("DecodeServer(%q): %v", msg, err)
		}
		// Data is the payload itself, up to the spacing around it that encoding/json drops.
		if m.Type != TypeEvent || m.Room != room || m.Offset != offset || !bytes.Equal(bytes.TrimSpace(m.Data), bytes.TrimSpace(data)) {
			t.Fatalf("DecodeServer(%q) = %+v (data %q)", msg, m, m.Data)
		}
		if _, ok := decodeEventFast(msg); !ok && offset < 1e19 {
			t.Fatalf("fast path refused its own encoder's %q", msg)
		}
	})
}

func FuzzSplitFrame(f *testing.F) {
	f.Add([]byte("{\"a\":1}\n{\"b\":2}"))
	f.Add([]byte("\n\nx\n\ny\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, frame []byte) {
		var pieces [][]byte
		err := SplitFrame(frame, func(msg []byte) error {
			if len(msg) == 0 || bytes.IndexByte(msg, '\n') >= 0 {
				t.Fatalf("piece %q is empty or holds a newline", msg)
			}
			pieces = append(pieces, msg)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var lines [][]byte
		for _, l := range bytes.Split(frame, []byte("\n")) {
			if len(l) > 0 {
				lines = append(lines, l)
			}
		}
		if got, want := bytes.Join(pieces, []byte("\n")), bytes.Join(lines, []byte("\n")); !bytes.Equal(got, want) {
			t.Fatalf("SplitFrame(%q) pieces joined = %q, want %q", frame, got, want)
		}
		// Stopping early: fn's error comes back and nothing after it is read.
		stop := errors.New("stop")
		calls := 0
		if err := SplitFrame(frame, func([]byte) error { calls++; return stop }); len(lines) > 0 && (!errors.Is(err, stop) || calls != 1) {
			t.Fatalf("SplitFrame with an erring fn: %v after %d calls", err, calls)
		} else if len(lines) == 0 && (err != nil || calls != 0) {
			t.Fatalf("SplitFrame of %q with no messages: %v after %d calls", frame, err, calls)
		}
	})
}
