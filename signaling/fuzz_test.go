package signaling

import (
	"errors"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"
)

const fuzzOffer = `v=0
o=- 1 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
m=audio 9 UDP/TLS/RTP/SAVPF 111
c=IN IP4 0.0.0.0
a=mid:0
a=rtpmap:111 opus/48000/2
a=sendonly
m=video 9 UDP/TLS/RTP/SAVPF 96
c=IN IP4 0.0.0.0
a=mid:1
a=rtpmap:96 VP8/90000
a=sendonly
`

// Session descriptions come from clients (websocket, WHIP and WHEP bodies): whatever their bytes, the
// checks before pion sees them return a result or ErrBadSDP / ErrTooManyTracks, and never panic.
func FuzzSessionDescription(f *testing.F) {
	f.Add(strings.ReplaceAll(fuzzOffer, "\n", "\r\n"))
	f.Add(fuzzOffer)
	f.Add("v=0\r\nm=video 9 RTP/AVP 96\r\na=rtpmap:96 H264\r\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, sdp string) {
		if err := checkOffer(sdp, 4); err != nil && !errors.Is(err, ErrBadSDP) && !errors.Is(err, ErrTooManyTracks) {
			t.Fatalf("checkOffer: %v", err)
		}
		kinds, err := offerKinds(sdp)
		if err != nil && !errors.Is(err, ErrBadSDP) {
			t.Fatalf("offerKinds: %v", err)
		}
		if err == nil && (len(kinds) == 0 || len(kinds) > 2) {
			t.Fatalf("offerKinds: %v", kinds)
		}
		_ = offerCodecs(sdp)
	})
}

// Payloads come from publishers: keyframe detection reads any bytes without panicking.
func FuzzIsKeyframe(f *testing.F) {
	f.Add([]byte{0x10, 0x00, 0x9d, 0x01, 0x2a})
	f.Add([]byte{0x18, 0x00, 0x05, 0x65})
	f.Add([]byte{0x7c, 0x85})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, payload []byte) {
		for _, mime := range []string{webrtc.MimeTypeVP8, webrtc.MimeTypeH264, webrtc.MimeTypeOpus} {
			_ = isKeyframe(mime, payload)
		}
	})
}
