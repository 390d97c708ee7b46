package signaling

import "strings"

// isKeyframe reports whether an RTP payload starts a keyframe, for the codecs whose keyframes a downTrack
// waits for when it switches sources (VP8, H.264); other codecs are not waited for.
func isKeyframe(mime string, payload []byte) bool {
	switch strings.ToLower(mime) {
	case "video/vp8":
		return vp8Keyframe(payload)
	case "video/h264":
		return h264Keyframe(payload)
	}
	return true
}

// vp8Keyframe reads the VP8 payload descriptor (RFC 7741 §4.2) and the first byte of the VP8 payload
// header: a keyframe is the start of partition 0 with the P bit clear.
func vp8Keyframe(b []byte) bool {
	if len(b) < 1 {
		return false
	}
	x, s, pid := b[0]&0x80 != 0, b[0]&0x10 != 0, b[0]&0x0f
	if !s || pid != 0 {
		return false
	}
	i := 1
	if x {
		if len(b) < 2 {
			return false
		}
		ext := b[1]
		i = 2
		if ext&0x80 != 0 { // I: PictureID, 7 or 15 bits
			if len(b) <= i {
				return false
			}
			if b[i]&0x80 != 0 {
				i++
			}
			i++
		}
		if ext&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if ext&0x30 != 0 { // T or K: TID/Y/KEYIDX
			i++
		}
	}
	return len(b) > i && b[i]&0x01 == 0
}

// h264Keyframe reports whether the payload holds (or starts) an IDR slice or a sequence parameter set
// (RFC 6184: single NAL unit, STAP-A, FU-A).
func h264Keyframe(b []byte) bool {
	if len(b) < 1 {
		return false
	}
	switch n := b[0] & 0x1f; {
	case n == 5 || n == 7:
		return true
	case n == 24: // STAP-A: 16-bit sizes, then NAL units
		for i := 1; i+2 < len(b); {
			size := int(b[i])<<8 | int(b[i+1])
			i += 2
			if i >= len(b) {
				return false
			}
			if t := b[i] & 0x1f; t == 5 || t == 7 {
				return true
			}
			i += size
		}
	case n == 28: // FU-A: the start fragment of an IDR
		return len(b) > 1 && b[1]&0x80 != 0 && b[1]&0x1f == 5
	}
	return false
}
