package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"time"
)

// mediaResult is what a media run measured; its JSON is the summary's last line. Rates are over the
// window (packets sent within it, by the publisher's clock), summed over subscribers.
type mediaResult struct {
	Connected     int            `json:"connected"`
	ConnectFailed int            `json:"connect_failed"`
	ConnectErrors map[string]int `json:"connect_errors,omitempty"`
	ConnectS      float64        `json:"connect_s"` // first WHEP POST to every subscriber connected
	WindowS       float64        `json:"window_s"`

	VideoSent      int64   `json:"video_sent"` // packets the publisher sent in the window
	AudioSent      int64   `json:"audio_sent"`
	VideoKbpsSent  float64 `json:"video_kbps_sent"` // payload bitrate achieved
	Keyframes      int64   `json:"keyframes"`
	KeyframesAsked int64   `json:"keyframes_asked"` // of those, sent in answer to a PLI or FIR
	PLIs           int64   `json:"plis"`            // PLIs and FIRs the publisher got from the server
	PubWriteErrors int64   `json:"pub_write_errors,omitempty"`

	Expected     int64   `json:"expected"` // (video_sent + audio_sent) × connected
	Received     int64   `json:"received"` // distinct packets sent in the window that arrived
	LossPct      float64 `json:"loss_pct"`
	VideoLossPct float64 `json:"video_loss_pct"`
	AudioLossPct float64 `json:"audio_loss_pct"`
	SubsWithLoss int     `json:"subs_with_loss"`
	MaxSubLoss   float64 `json:"max_sub_loss_pct"`
	Silent       int     `json:"silent"`  // connected subscribers that got no packet of the window on some track
	Dropped      int     `json:"dropped"` // subscribers whose connection failed after it was up
	Gaps         int64   `json:"gaps"`    // jumps in the packet counters (runs of consecutive losses)
	Dups         int64   `json:"dups"`
	Late         int64   `json:"late"`
	Foreign      int64   `json:"foreign,omitempty"`
	Undecrypted  int64   `json:"undecrypted,omitempty"` // lean client: RTP it could not decrypt

	PacketsPerSec float64 `json:"packets_per_sec"` // forwarded, over subscribers
	BytesPerSec   float64 `json:"bytes_per_sec"`   // RTP bytes (header and payload) forwarded, over subscribers
	Mbps          float64 `json:"mbps"`

	JitterP50ms      float64 `json:"jitter_p50_ms"` // video, over subscribers (see print)
	JitterP99ms      float64 `json:"jitter_p99_ms"`
	AudioJitterP50ms float64 `json:"audio_jitter_p50_ms"`
	AudioJitterP99ms float64 `json:"audio_jitter_p99_ms"`
	LatencyP50ms     float64 `json:"latency_p50_ms"` // every packet: send to arrival
	LatencyP99ms     float64 `json:"latency_p99_ms"`
	LatencyMaxms     float64 `json:"latency_max_ms"`
	TTFPP50ms        float64 `json:"ttfp_p50_ms"` // WHEP POST to the first packet, over subscribers
	TTFPP99ms        float64 `json:"ttfp_p99_ms"`
	TTFPMaxms        float64 `json:"ttfp_max_ms"`
	TTFVP50ms        float64 `json:"ttfv_p50_ms"` // WHEP POST to the first video packet
	TTFVP99ms        float64 `json:"ttfv_p99_ms"`

	ServerCores       *float64 `json:"server_cores,omitempty"`
	ServerCoresPer100 *float64 `json:"server_cores_per_100_subs,omitempty"`
	ServerUsPerPacket *float64 `json:"server_us_per_packet,omitempty"` // server CPU per forwarded packet
	ServerRSSMB       *float64 `json:"server_rss_mb,omitempty"`        // the server's resident memory at the end of the window
	BenchCores        float64  `json:"bench_cores"`
	BenchProcs        int      `json:"bench_procs"` // GOMAXPROCS: the cores the bench may use
	BenchSaturated    bool     `json:"bench_saturated"`
	// CoreBusy is each core's busy fraction over the window (softirq included), whatever ran on it.
	CoreBusy []float64 `json:"core_busy,omitempty"`
	// SoftirqCores is the kernel's softirq time over all cores (for loopback, mostly packet delivery).
	SoftirqCores float64 `json:"softirq_cores"`
	// OtherCores is the machine's busy time outside softirq not charged to the server or the bench: more
	// than a few hundredths means another process disturbed the run.
	OtherCores *float64 `json:"other_cores,omitempty"`
	// Datagrams the kernel dropped over the window because a receive buffer was full: on the server's
	// UDP sockets (publisher media and subscribers' RTCP arrive there) and on the bench's.
	UDPDropsServer *int64 `json:"udp_drops_server,omitempty"`
	UDPDropsBench  *int64 `json:"udp_drops_bench,omitempty"`

	N          int     `json:"n"`
	VideoKbps  int     `json:"video_kbps"`
	NACK       bool    `json:"nack"`
	Client     string  `json:"client"` // the subscribers' receive path: lean or pion
	MaxLossPct float64 `json:"max_loss_pct"`
	URL        string  `json:"url"`
	Room       string  `json:"room"`
	Run        string  `json:"run"`

	serverCPUErr error
}

// ok reports whether every subscriber connected, stayed connected and received both tracks, and loss
// stayed within the limit.
func (r *mediaResult) ok() bool {
	return r.ConnectFailed == 0 && r.Silent == 0 && r.Dropped == 0 && r.VideoSent > 0 && r.AudioSent > 0 &&
		r.LossPct <= r.MaxLossPct
}

// setCPU derives cores used from CPU times read at both ends of the window.
func (r *mediaResult) setCPU(a, b cpus, serverPID int, warn io.Writer) {
	if a.self.err == nil && b.self.err == nil {
		if wall := b.self.at.Sub(a.self.at); wall > 0 {
			r.BenchCores = round(float64(b.self.cpu-a.self.cpu)/float64(wall), 3)
			r.BenchSaturated = r.BenchCores >= 0.85*float64(r.BenchProcs)
		}
	}
	if a.selfDrops >= 0 && b.selfDrops >= 0 {
		d := b.selfDrops - a.selfDrops
		r.UDPDropsBench = &d
	}
	if a.serverDrops >= 0 && b.serverDrops >= 0 {
		d := b.serverDrops - a.serverDrops
		r.UDPDropsServer = &d
	}
	var softirq float64
	if len(a.cores) == len(b.cores) {
		for i := range a.cores {
			busy, total := b.cores[i].busy-a.cores[i].busy, b.cores[i].total-a.cores[i].total
			if total <= 0 {
				r.CoreBusy, softirq = nil, 0
				break
			}
			r.CoreBusy = append(r.CoreBusy, round(float64(busy)/float64(total), 3))
			softirq += float64(b.cores[i].softirq-a.cores[i].softirq) / float64(total)
		}
		r.SoftirqCores = round(softirq, 3)
	}
	if serverPID == 0 {
		return
	}
	if err := cmpErr(a.server.err, b.server.err); err != nil {
		r.serverCPUErr = err
		fmt.Fprintf(warn, "warning: no server CPU: %v\n", err)
		return
	}
	if wall := b.server.at.Sub(a.server.at); wall > 0 {
		c := round(float64(b.server.cpu-a.server.cpu)/float64(wall), 3)
		r.ServerCores = &c
		if r.N > 0 {
			p := round(c*100/float64(r.N), 3)
			r.ServerCoresPer100 = &p
		}
		if len(r.CoreBusy) > 0 {
			o := -c - r.BenchCores - softirq
			for _, x := range r.CoreBusy {
				o += x
			}
			o = round(max(o, 0), 3)
			r.OtherCores = &o
		}
	}
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// collect merges what the publisher and the subscribers measured; every reader and the sender have
// stopped.
func (r *mediaResult) collect(b *mediaBench, window time.Duration) {
	r.WindowS = round(window.Seconds(), 3)
	p := b.pub
	r.VideoSent, r.AudioSent = p.videoSent, p.audioSent
	r.VideoKbpsSent = round(float64(p.videoBytes)*8/1000/window.Seconds(), 1)
	r.Keyframes, r.KeyframesAsked, r.PLIs, r.PubWriteErrors = p.keyframes, p.keyframesAsked, p.pliRead.Load(), p.writeErrors

	var lat histogram
	var jit, ajit, ttfp, ttfv []float64
	var bytes, vRecv, aRecv int64
	for _, s := range b.subs {
		if s == nil || s.err != nil {
			continue
		}
		r.Connected++
		if s.dropped.Load() {
			r.Dropped++
		}
		if s.video.packets == 0 || s.audio.packets == 0 {
			r.Silent++
		}
		got := s.video.packets + s.audio.packets
		want := r.VideoSent + r.AudioSent
		if got < want {
			r.SubsWithLoss++
			r.MaxSubLoss = max(r.MaxSubLoss, pct(want-got, want))
		}
		vRecv += s.video.packets
		aRecv += s.audio.packets
		bytes += s.video.bytes + s.audio.bytes
		for _, st := range []*streamStats{&s.video, &s.audio} {
			r.Gaps += st.gaps
			r.Dups += st.dups
			r.Late += st.late
			r.Foreign += st.foreign
			lat.merge(&st.lat)
		}
		if s.tap != nil {
			r.Undecrypted += s.tap.undecrypt
		}
		if s.video.jitterN > 0 {
			jit = append(jit, s.video.jitterSum/float64(s.video.jitterN))
		}
		if s.audio.jitterN > 0 {
			ajit = append(ajit, s.audio.jitterSum/float64(s.audio.jitterN))
		}
		if f := s.firstNs.Load(); f > 0 {
			ttfp = append(ttfp, float64(f-s.posted.UnixNano()))
		}
		if f := s.firstVideoNs.Load(); f > 0 {
			ttfv = append(ttfv, float64(f-s.posted.UnixNano()))
		}
	}
	c := int64(r.Connected)
	r.Expected = (r.VideoSent + r.AudioSent) * c
	r.Received = vRecv + aRecv
	r.LossPct = round(pct(r.Expected-r.Received, r.Expected), 4)
	r.VideoLossPct = round(pct(r.VideoSent*c-vRecv, r.VideoSent*c), 4)
	r.AudioLossPct = round(pct(r.AudioSent*c-aRecv, r.AudioSent*c), 4)
	r.MaxSubLoss = round(r.MaxSubLoss, 4)
	secs := window.Seconds()
	r.PacketsPerSec = round(float64(r.Received)/secs, 1)
	r.BytesPerSec = round(float64(bytes)/secs, 0)
	r.Mbps = round(float64(bytes)*8/1e6/secs, 2)
	if r.ServerCores != nil && r.PacketsPerSec > 0 {
		us := round(*r.ServerCores*1e6/r.PacketsPerSec, 3)
		r.ServerUsPerPacket = &us
	}
	r.LatencyP50ms, r.LatencyP99ms, r.LatencyMaxms = ms(lat.quantile(0.5)), ms(lat.quantile(0.99)), ms(lat.maximum())
	nsToMs := func(v float64) float64 { return round(v/1e6, 3) }
	r.JitterP50ms, r.JitterP99ms = nsToMs(quantile(jit, 0.5)), nsToMs(quantile(jit, 0.99))
	r.AudioJitterP50ms, r.AudioJitterP99ms = nsToMs(quantile(ajit, 0.5)), nsToMs(quantile(ajit, 0.99))
	r.TTFPP50ms, r.TTFPP99ms, r.TTFPMaxms = nsToMs(quantile(ttfp, 0.5)), nsToMs(quantile(ttfp, 0.99)), nsToMs(quantile(ttfp, 1))
	r.TTFVP50ms, r.TTFVP99ms = nsToMs(quantile(ttfv, 0.5)), nsToMs(quantile(ttfv, 0.99))
}

// pct is part/whole in percent (0 for an empty whole; never negative).
func pct(part, whole int64) float64 {
	if whole <= 0 || part <= 0 {
		return 0
	}
	return 100 * float64(part) / float64(whole)
}

// quantile returns the nearest-rank q-quantile of vs (which it sorts), 0 for none.
func quantile(vs []float64, q float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	slices.Sort(vs)
	i := int(math.Ceil(q*float64(len(vs)))) - 1
	return vs[min(max(i, 0), len(vs)-1)]
}

// print writes the human summary (unless jsonOnly) and, as the last line, the JSON object.
func (r *mediaResult) print(w io.Writer, jsonOnly bool) {
	if !jsonOnly {
		r.printHuman(w)
	}
	line, _ := json.Marshal(r)
	fmt.Fprintf(w, "%s\n", line)
}

func (r *mediaResult) printHuman(w io.Writer) {
	nack := "subscribers send NACKs"
	if !r.NACK {
		nack = "no NACKs"
	}
	fmt.Fprintf(w, "liveforum-bench media (run %s)\n", r.Run)
	fmt.Fprintf(w, "  server       %s, room %s\n", r.URL, r.Room)
	fmt.Fprintf(w, "  publisher    1 over WHIP: VP8 %d kbit/s (30 frames/s, a keyframe every 2 s or on PLI) + Opus 50×80 B/s\n", r.VideoKbps)
	fmt.Fprintf(w, "  subscribers  %d over WHEP, %s, %s receive path\n", r.N, nack, r.Client)
	fmt.Fprintln(w, "results")
	fmt.Fprintf(w, "  connect      %d of %d connected in %.3f s\n", r.Connected, r.N, r.ConnectS)
	for _, e := range slices.Sorted(maps.Keys(r.ConnectErrors)) {
		fmt.Fprintf(w, "    %d× %s\n", r.ConnectErrors[e], e)
	}
	fmt.Fprintf(w, "  window       %.3f s: sent %d video packets (%.0f kbit/s payload), %d audio; %d keyframes (%d on PLI, %d PLIs)\n",
		r.WindowS, r.VideoSent, r.VideoKbpsSent, r.AudioSent, r.Keyframes, r.KeyframesAsked, r.PLIs)
	fmt.Fprintf(w, "  forwarded    %.0f packets/s, %.2f Mbit/s (RTP) over all subscribers\n", r.PacketsPerSec, r.Mbps)
	fmt.Fprintf(w, "  loss         %.3f %% (video %.3f %%, audio %.3f %%): %d of %d; %d subscribers lost some, at most %.3f %%\n",
		r.LossPct, r.VideoLossPct, r.AudioLossPct, r.Expected-r.Received, r.Expected, r.SubsWithLoss, r.MaxSubLoss)
	fmt.Fprintf(w, "               %d gaps, %d late, %d duplicates; %d silent, %d dropped\n", r.Gaps, r.Late, r.Dups, r.Silent, r.Dropped)
	if r.UDPDropsServer != nil || r.UDPDropsBench != nil {
		fmt.Fprintf(w, "  UDP drops    server sockets %s, bench sockets %s (the kernel's, receive buffer full)\n",
			optInt(r.UDPDropsServer), optInt(r.UDPDropsBench))
	}
	if r.Foreign > 0 {
		fmt.Fprintf(w, "  foreign      %d packets not from this run's publisher (another speaker on the stage?)\n", r.Foreign)
	}
	if r.Undecrypted > 0 {
		fmt.Fprintf(w, "  undecrypted  %d RTP packets the lean client could not decrypt\n", r.Undecrypted)
	}
	fmt.Fprintf(w, "  jitter       video p50 %.3f ms, p99 %.3f ms; audio p50 %.3f ms, p99 %.3f ms (RFC 3550 estimate, mean over the window, per subscriber)\n",
		r.JitterP50ms, r.JitterP99ms, r.AudioJitterP50ms, r.AudioJitterP99ms)
	fmt.Fprintf(w, "  latency      p50 %.3f ms, p99 %.3f ms, max %.3f ms (send to arrival, every packet)\n", r.LatencyP50ms, r.LatencyP99ms, r.LatencyMaxms)
	fmt.Fprintf(w, "  first packet p50 %.1f ms, p99 %.1f ms, max %.1f ms after the WHEP POST (video: p50 %.1f ms, p99 %.1f ms)\n",
		r.TTFPP50ms, r.TTFPP99ms, r.TTFPMaxms, r.TTFVP50ms, r.TTFVP99ms)
	if r.ServerCores != nil {
		fmt.Fprintf(w, "  server CPU   %.3f cores, %.3f cores per 100 subscribers, %s µs per forwarded packet\n",
			*r.ServerCores, *r.ServerCoresPer100, optFloat(r.ServerUsPerPacket))
	} else {
		fmt.Fprintln(w, "  server CPU   not measured (-server-pid)")
	}
	if r.ServerRSSMB != nil {
		fmt.Fprintf(w, "  server mem   %.1f MiB resident at the end of the window\n", *r.ServerRSSMB)
	}
	fmt.Fprintf(w, "  bench CPU    %.3f cores of %d", r.BenchCores, r.BenchProcs)
	if r.BenchSaturated {
		fmt.Fprint(w, ": SATURATED, the bench itself may be what loses or delays packets")
	}
	fmt.Fprintln(w)
	if len(r.CoreBusy) > 0 {
		fmt.Fprint(w, "  cores busy  ")
		for i, c := range r.CoreBusy {
			fmt.Fprintf(w, " cpu%d %.0f %%", i, 100*c)
		}
		fmt.Fprintf(w, " (everything on the machine; softirq %.3f cores)", r.SoftirqCores)
		if r.OtherCores != nil {
			fmt.Fprintf(w, "; %.3f cores other processes", *r.OtherCores)
			if *r.OtherCores > 0.15 {
				fmt.Fprint(w, ": something else ran, the figures are disturbed")
			}
		}
		fmt.Fprintln(w)
	}
	if r.ok() {
		fmt.Fprintln(w, "  checks       ok")
	} else {
		fmt.Fprintf(w, "  checks       FAILED (every subscriber connected, stayed up and received both tracks; loss ≤ %g %%)\n", r.MaxLossPct)
	}
}
