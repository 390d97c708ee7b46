package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/liveforum/liveforum/server"
	"github.com/liveforum/liveforum/signaling"
)

// startMediaServer runs a real server with an SFU whose media stays on loopback, and returns its base URL.
func startMediaServer(t *testing.T) string {
	t.Helper()
	_, lo, _ := net.ParseCIDR("127.0.0.0/8")
	e, err := signaling.New(signaling.Config{ICE: signaling.ICEConfig{UDPAddr: "127.0.0.1:0", Interfaces: []string{"lo"},
		IPs: []*net.IPNet{lo}}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() }) // after the server's cleanup, registered later
	ws := startServer(t, func(c *server.Config) { c.Media = e })
	base, err := httpBase(ws)
	if err != nil {
		t.Fatal(err)
	}
	return base
}

// mediaSummary is the part of the JSON line the tests check.
type mediaSummary struct {
	Connected     int      `json:"connected"`
	ConnectFailed int      `json:"connect_failed"`
	VideoSent     int64    `json:"video_sent"`
	AudioSent     int64    `json:"audio_sent"`
	VideoKbpsSent float64  `json:"video_kbps_sent"`
	Expected      int64    `json:"expected"`
	Received      int64    `json:"received"`
	LossPct       float64  `json:"loss_pct"`
	Silent        int      `json:"silent"`
	Dropped       int      `json:"dropped"`
	PacketsPerSec float64  `json:"packets_per_sec"`
	BytesPerSec   float64  `json:"bytes_per_sec"`
	TTFPP50       float64  `json:"ttfp_p50_ms"`
	TTFPP99       float64  `json:"ttfp_p99_ms"`
	LatencyP50    float64  `json:"latency_p50_ms"`
	JitterP50     *float64 `json:"jitter_p50_ms"`
	ServerCores   *float64 `json:"server_cores"`
	Per100        *float64 `json:"server_cores_per_100_subs"`
	ServerRSSMB   *float64 `json:"server_rss_mb"`
	BenchCores    float64  `json:"bench_cores"`
	Keyframes     int64    `json:"keyframes"`
	N             int      `json:"n"`
	Client        string   `json:"client"`
	Undecrypted   int64    `json:"undecrypted"`
}

// TestMedia runs the bench against a real server with each receive path: lean (the default) and pion's.
func TestMedia(t *testing.T) {
	for _, client := range []string{"lean", "pion"} {
		t.Run(client, func(t *testing.T) { testMedia(t, client) })
	}
}

func testMedia(t *testing.T, client string) {
	base := startMediaServer(t)
	var out, errb bytes.Buffer
	args := []string{"-url", base, "-room", "media", "-secret", testSecret, "-n", "5", "-duration", "3s",
		"-video-kbps", "800", "-max-loss", "2", "-server-pid", fmt.Sprint(os.Getpid()), "-client", client}
	if err := runMedia(t.Context(), args, &out, &errb, func(string) string { return "" }); err != nil {
		t.Fatalf("media: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
	}
	t.Log("\n" + out.String())
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	var s mediaSummary
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &s); err != nil {
		t.Fatalf("last line is not JSON: %v\n%s", err, out.String())
	}
	// 3 s of 30 frames of 800 kbit/s (3 packets of ~1111 bytes) and 50 audio packets a second: 270 and
	// 150, less what a loaded test machine makes the publisher skip.
	if s.Client != client || s.Undecrypted != 0 {
		t.Errorf("client %q, %d packets not decrypted; want %q and 0", s.Client, s.Undecrypted, client)
	}
	if s.N != 5 || s.Connected != 5 || s.ConnectFailed != 0 || s.Silent != 0 || s.Dropped != 0 {
		t.Errorf("connections: %+v", s)
	}
	if s.VideoSent < 160 || s.AudioSent < 90 || s.VideoKbpsSent < 480 || s.Keyframes < 1 {
		t.Errorf("the publisher sent too little: %+v", s)
	}
	if s.Expected != 5*(s.VideoSent+s.AudioSent) || s.Received == 0 || s.LossPct > 2 {
		t.Errorf("delivery: %+v", s)
	}
	if s.PacketsPerSec <= 0 || s.BytesPerSec <= 0 || s.TTFPP50 <= 0 || s.TTFPP99 < s.TTFPP50 || s.LatencyP50 <= 0 ||
		s.JitterP50 == nil || s.BenchCores <= 0 {
		t.Errorf("figures missing: %s", lines[len(lines)-1])
	}
	if s.ServerCores == nil || *s.ServerCores <= 0 || s.Per100 == nil || s.ServerRSSMB == nil {
		t.Errorf("server CPU missing: %s", lines[len(lines)-1])
	}
}

// TestMediaRefused: a viewer token minted with another secret is refused (401), and the run says so.
func TestMediaRefused(t *testing.T) {
	base := startMediaServer(t)
	var out, errb bytes.Buffer
	args := []string{"-url", base, "-secret", "k1:some-other-secret-0123456789abcdefgh", "-n", "2", "-duration", "1s"}
	err := runMedia(t.Context(), args, &out, &errb, func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("media with a wrong secret: %v, want a 401\n%s%s", err, out.String(), errb.String())
	}
}

func TestMediaFlags(t *testing.T) {
	for _, args := range [][]string{
		{},                   // no secret
		{"-secret", "short"}, // not a key
		{"-n", "0", "-secret", testSecret},
		{"-duration", "0s", "-secret", testSecret},
		{"-url", "ftp://x", "-secret", testSecret},
		{"-room", "bad room", "-secret", testSecret},
		{"-video-kbps", "-1", "-secret", testSecret},
		{"-secret", testSecret, "extra"},
		{"-client", "browser", "-secret", testSecret},
	} {
		t.Run(fmt.Sprint(args), func(t *testing.T) {
			var errb bytes.Buffer
			if _, err := parseMedia(args, &errb, func(string) string { return "" }); err == nil {
				t.Errorf("parseMedia(%q) accepted", args)
			}
		})
	}
	c, err := parseMedia(nil, &bytes.Buffer{}, func(k string) string {
		if k == "LIVEFORUM_SECRET" {
			return testSecret
		}
		return ""
	})
	if err != nil || c.keys == nil || c.base != "http://127.0.0.1:8080" || c.n != 100 || c.videoKbps != 1500 ||
		len(c.iceInterfaces) != 1 || c.iceInterfaces[0] != "lo" || c.client != "lean" {
		t.Errorf("defaults with the secret from the environment: %+v, %v", c, err)
	}
}

func TestFramePayloads(t *testing.T) {
	for _, tc := range []struct {
		kbps int
		want []int
	}{
		{1500, []int{1042, 1042, 1042, 1042, 1041, 1041}}, // 6250 bytes a frame
		{800, []int{1111, 1111, 1111}},
		{288, []int{1200}},
		{0, []int{markLen}},
	} {
		got := framePayloads(tc.kbps)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("framePayloads(%d) = %v, want %v", tc.kbps, got, tc.want)
		}
	}
}

func TestRTPPayload(t *testing.T) {
	pay := []byte("0123456789abcdefghij")
	ext := rtp.Header{Version: 2}
	if err := ext.SetExtension(1, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	for _, h := range []rtp.Header{
		{Version: 2, SequenceNumber: 1},
		{Version: 2, CSRC: []uint32{1, 2}},
		ext,
	} {
		b, err := (&rtp.Packet{Header: h, Payload: pay}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := rtpPayload(b); !ok || !bytes.Equal(got, pay) {
			t.Errorf("header %+v: payload %q, %v", h, got, ok)
		}
	}
	padded, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, Padding: true}, Payload: pay, PaddingSize: 4}).Marshal()
	if got, ok := rtpPayload(padded); !ok || !bytes.Equal(got, pay) {
		t.Errorf("padded: payload %q, %v", got, ok)
	}
	for _, bad := range [][]byte{nil, make([]byte, 11), {0x80 | 0x0f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, {0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}} {
		if _, ok := rtpPayload(bad); ok {
			t.Errorf("rtpPayload(%x) accepted", bad)
		}
	}
}

func TestStreamStatsFresh(t *testing.T) {
	var s streamStats
	seq := []uint32{10, 11, 13, 12, 12, 14, 14 + ringBits + 5, 14, 14 + ringBits + 4}
	want := []bool{true, true, true, true, false, true, true, false, true}
	for i, c := range seq {
		if got := s.fresh(c); got != want[i] {
			t.Errorf("packet %d (counter %d): fresh %v, want %v", i, c, got, want[i])
		}
	}
	if s.gaps != 2 || s.dups != 1 || s.late != 2 || s.tooLate != 1 {
		t.Errorf("gaps %d dups %d late %d tooLate %d, want 2 1 2 1", s.gaps, s.dups, s.late, s.tooLate)
	}
	// Counters wrap.
	var w streamStats
	for _, c := range []uint32{1<<32 - 2, 1<<32 - 1, 0, 1} {
		if !w.fresh(c) {
			t.Errorf("counter %d across the wrap not fresh", c)
		}
	}
	if w.gaps != 0 {
		t.Errorf("gaps across the wrap: %d", w.gaps)
	}
}

func TestPutMarks(t *testing.T) {
	b := make([]byte, markLen)
	putMarks(b, 7, 1234567890123, [4]byte{1, 2, 3, 4})
	if binary.BigEndian.Uint32(b[offCounter:]) != 7 || binary.BigEndian.Uint64(b[offSentNs:]) != 1234567890123 ||
		!bytes.Equal(b[offRun:], []byte{1, 2, 3, 4}) {
		t.Errorf("marks %x", b)
	}
}

// The lean client NACKs a gap at once, again every nackEvery while it lasts, forgets a packet that comes,
// and gives up after nackTries.
func TestTapNacks(t *testing.T) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tp := newTap(conn, &mediaSub{nack: true}, newWindow(), [4]byte{})
	defer tp.close()
	var sent [][]uint16
	tp.writeRTCP = func(ps []rtcp.Packet) error {
		for _, p := range ps {
			n := p.(*rtcp.TransportLayerNack)
			if n.MediaSSRC != 9 {
				t.Errorf("NACK for SSRC %d", n.MediaSSRC)
			}
			var seqs []uint16
			for _, pair := range n.Nacks {
				seqs = append(seqs, pair.PacketList()...)
			}
			sent = append(sent, seqs)
		}
		return nil
	}
	for _, seq := range []uint16{65534, 65535, 2} { // a gap across the wrap: 0 and 1 are missing
		tp.noteSeq(9, seq, true)
	}
	if len(sent) != 1 || !slices.Equal(sent[0], []uint16{0, 1}) {
		t.Fatalf("NACKs after the gap: %v", sent)
	}
	now := time.Now()
	tp.nackRetry(now) // too soon
	tp.nackRetry(now.Add(nackEvery))
	if len(sent) != 2 || !slices.Equal(sent[1], []uint16{0, 1}) {
		t.Fatalf("NACKs after %v: %v", nackEvery, sent)
	}
	tp.noteSeq(9, 0, true) // the retransmission
	for i := range nackTries + 2 {
		tp.nackRetry(now.Add(time.Duration(i+2) * nackEvery))
	}
	for _, s := range sent[2:] {
		if !slices.Equal(s, []uint16{1}) {
			t.Fatalf("NACKs after 0 came: %v", sent)
		}
	}
	if len(sent) != nackTries {
		t.Fatalf("%d NACKs for 1, want %d: %v", len(sent), nackTries, sent)
	}
	if high := uint16(tp.streams[9].ext); high != 2 {
		t.Errorf("highest %d after a retransmission, want 2", high)
	}
	before := len(sent)
	tp.noteSeq(50, 1, false) // a stream without NACK feedback (audio): a gap is noted, not NACKed
	tp.noteSeq(50, 5, false)
	if high := uint16(tp.streams[50].ext); len(sent) != before || high != 5 {
		t.Errorf("a gap in a stream without NACKs: %d NACKs sent, highest %d", len(sent)-before, high)
	}
	for ssrc := range uint32(3 * maxStreams) { // a sender of many streams is followed on a few
		tp.noteSeq(100+ssrc, 1, true)
	}
	if len(tp.streams) != maxStreams {
		t.Errorf("%d streams followed, want at most %d", len(tp.streams), maxStreams)
	}
}

// The lean client's receiver reports count loss as RFC 3550 A.3 does: the highest sequence number extended
// over a wrap, the packets lost since the first, and the fraction lost since the last report; a
// retransmission counts as received, and more packets than expected (duplicates) are no loss.
func TestTapReceiverReports(t *testing.T) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tp := newTap(conn, &mediaSub{}, newWindow(), [4]byte{})
	defer tp.close()
	var got []rtcp.ReceptionReport
	tp.writeRTCP = func(ps []rtcp.Packet) error {
		got = append(got, ps[0].(*rtcp.ReceiverReport).Reports...)
		return nil
	}
	report := func() rtcp.ReceptionReport {
		t.Helper()
		got = nil
		tp.sendReport()
		if len(got) != 1 || got[0].SSRC != 7 {
			t.Fatalf("reports %+v, want one of SSRC 7", got)
		}
		return got[0]
	}
	// 65530..65535, then 0..9 without 2, 3, 4 and 5: 16 expected, 12 received.
	for seq := uint16(65530); seq != 10; seq++ {
		if seq < 2 || seq > 5 {
			tp.noteSeq(7, seq, false)
		}
	}
	if r := report(); r.LastSequenceNumber != 1<<16|9 || r.TotalLost != 4 || r.FractionLost != 4*256/16 {
		t.Errorf("first report: highest %#x, lost %d, fraction %d/256; want 0x10009, 4, 64", r.LastSequenceNumber, r.TotalLost, r.FractionLost)
	}
	tp.noteSeq(7, 2, false) // a retransmission, late
	for seq := uint16(10); seq < 14; seq++ {
		tp.noteSeq(7, seq, false)
	}
	if r := report(); r.TotalLost != 3 || r.FractionLost != 0 || r.LastSequenceNumber != 1<<16|13 {
		t.Errorf("after a retransmission and 4 in order: %+v, want 3 lost in all, none in the interval", r)
	}
	for range 3 { // the same packet three more times: more received than expected
		tp.noteSeq(7, 13, false)
	}
	tp.noteSeq(7, 15, false) // 14 lost
	if r := report(); r.FractionLost != 0 || r.TotalLost != 1 {
		t.Errorf("duplicates and one lost: %+v, want fraction 0 (more came than were expected), 1 lost in all", r)
	}
}
