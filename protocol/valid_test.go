package protocol

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestValidJSONMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{
		`{}`, `[]`, `""`, `0`, `-0`, `1.5e+10`, `true`, `false`, `null`, ` {"a" : [1, 2, {"b": null}]} `,
		`{"kind":"chat","time":1,"from":{"identity":"a","name":"Zoë \u00e9\n"},"text":"\"hi\" \\ \/"}`,
		`{`, `}`, `{"a"}`, `{"a":}`, `{"a":1,}`, `[1,]`, `[,]`, `01`, `1.`, `.5`, `1e`, `-`, `+1`, `tru`, `nul`,
		`"\x"`, `"\u12"`, `"\u12g4"`, "\"\x01\"", "\"\xff\"", `{"a":1}{"b":2}`, `{"a":1},"x":{}`, ``, ` `,
		`{"a":1 "b":2}`, `[1 2]`, `"unterminated`, `{"a":"b"`, strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
		strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	} {
		if got, want := validJSON([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("validJSON(%.40q) = %v, encoding/json says %v", s, got, want)
		}
	}
}

func FuzzValidJSON(f *testing.F) {
	for _, s := range []string{`{"a":[1,2.5e3,"x\u00e9"],"b":{"c":null}}`, `[true,false]`, `"\\\""`, `-0.0E-0`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, encoding/json says %v", b, got, want)
		}
	})
}

func BenchmarkValidJSON(b *testing.B) {
	ev := []byte(`{"kind":"chat","time":1795735927626,"from":{"identity":"bench-1a2b3c4d-p0","name":"bench p0","role":"bot"},"text":"r1a2b3c4dp0:17:1795735927626000000:xxxxxxxxxxxxxxxxxxxxxxx"}`)
	b.Run("validJSON", func(b *testing.B) {
		for range b.N {
			validJSON(ev)
		}
	})
	b.Run("encoding/json.Valid", func(b *testing.B) {
		for range b.N {
			json.Valid(ev)
		}
	})
}
