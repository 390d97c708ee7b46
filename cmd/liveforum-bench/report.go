package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// chatResult is what a chat run measured; its JSON is the summary's last line. Server figures come from the
// first URL's /metrics and are absent without an admin key.
type chatResult struct {
	Expected     int64   `json:"expected"`  // n·m
	Delivered    int64   `json:"delivered"` // distinct (subscriber, message) pairs received
	Lost         int64   `json:"lost"`
	Dups         int64   `json:"dups"`
	OutOfOrder   int64   `json:"out_of_order"`
	OffsetErrors int64   `json:"offset_errors"` // events whose offset did not increase
	MsgsPerSec   float64 `json:"msgs_per_sec"`  // delivered / (last receive − first send)
	P50ms        float64 `json:"p50_ms"`
	P99ms        float64 `json:"p99_ms"`
	MaxMs        float64 `json:"max_ms"`
	MeanMs       float64 `json:"mean_ms"`
	ConnectS     float64 `json:"connect_s"`  // first dial to every subscriber joined
	DurationS    float64 `json:"duration_s"` // first send to last receive
	PublishS     float64 `json:"publish_s"`  // first send to the last publisher's last answer
	SendRate     float64 `json:"send_rate"`  // messages per second the publishers achieved
	AckP50ms     float64 `json:"ack_p50_ms"` // send to the server's answer, as a publisher sees it
	AckP99ms     float64 `json:"ack_p99_ms"`

	HeapPerConn         *int64   `json:"heap_per_conn_bytes,omitempty"`
	HeapInusePerConn    *int64   `json:"heap_inuse_per_conn_bytes,omitempty"`
	StackPerConn        *int64   `json:"stack_per_conn_bytes,omitempty"`
	GoroutinesPerConn   *float64 `json:"goroutines_per_conn,omitempty"`
	ServerSlowConsumers *int64   `json:"server_slow_consumers,omitempty"`
	ServerRateLimited   *int64   `json:"server_rate_limited,omitempty"`
	ServerMsgsPerFrame  *float64 `json:"server_msgs_per_frame,omitempty"`

	Sent              int64          `json:"sent"`
	PublishErrors     []string       `json:"publish_errors,omitempty"`
	Disconnects       int            `json:"disconnects"`
	DisconnectReasons map[string]int `json:"disconnect_reasons,omitempty"`
	Resets            int64          `json:"resets,omitempty"`
	Foreign           int64          `json:"foreign,omitempty"`
	TimedOut          bool           `json:"timed_out"`

	N          int      `json:"n"`
	M          int      `json:"m"`
	Publishers int      `json:"publishers"`
	Size       int      `json:"size"`
	Rate       float64  `json:"rate"`
	URLs       []string `json:"urls"`
	Room       string   `json:"room"`
	Run        string   `json:"run"`
	Tokens     string   `json:"tokens"` // "minted" or "guest"

	firstSend, lastRecv time.Time
}

// ok reports whether every message that arrived arrived once and in order, and none was lost.
func (r *chatResult) ok() bool {
	return r.Lost == 0 && r.Dups == 0 && r.OutOfOrder == 0 && r.OffsetErrors == 0
}

// setHeap derives per-connection server memory from /metrics read (after a GC) before connecting and
// after everyone joined; conns is how many connections that server took.
func (r *chatResult) setHeap(before, after map[string]float64, conns int) {
	per := func(name string) *int64 {
		b, ok1 := before[name]
		a, ok2 := after[name]
		if !ok1 || !ok2 || conns == 0 {
			return nil
		}
		v := int64((a - b) / float64(conns))
		return &v
	}
	r.HeapPerConn = per("go_memstats_heap_alloc_bytes")
	r.HeapInusePerConn = per("go_memstats_heap_inuse_bytes")
	r.StackPerConn = per("go_memstats_stack_inuse_bytes")
	if b, ok := before["go_goroutines"]; ok {
		if a, ok := after["go_goroutines"]; ok {
			g := round((a-b)/float64(conns), 2)
			r.GoroutinesPerConn = &g
		}
	}
}

// setServerCounters records what the server counted during the publishing phase.
func (r *chatResult) setServerCounters(before, after map[string]float64) {
	delta := func(name string) *int64 {
		b, ok1 := before[name]
		a, ok2 := after[name]
		if !ok1 || !ok2 {
			return nil
		}
		v := int64(a - b)
		return &v
	}
	r.ServerSlowConsumers = delta("liveforum_slow_consumers_total")
	r.ServerRateLimited = delta("liveforum_rate_limited_total")
	msgs, frames := delta("liveforum_messages_out_total"), delta("liveforum_frames_out_total")
	if msgs != nil && frames != nil && *frames > 0 {
		v := round(float64(*msgs)/float64(*frames), 2)
		r.ServerMsgsPerFrame = &v
	}
}

// print writes the human summary and, as the last line, the JSON object.
func (r *chatResult) print(w io.Writer) {
	rate := "unlimited: each publisher sends when the server has answered its previous message"
	if r.Rate > 0 {
		rate = fmt.Sprintf("%g messages/s across publishers", r.Rate)
	}
	tokens := "guests (no -secret): publishers are held to the per-person chat rate limit"
	if r.Tokens == "minted" {
		tokens = "minted with -secret: subscribers participant, publishers bot (bots are exempt from the per-person chat rate limit)"
	}
	fmt.Fprintf(w, "liveforum-bench chat (run %s)\n", r.Run)
	fmt.Fprintf(w, "  servers      %s\n", strings.Join(r.URLs, ", "))
	fmt.Fprintf(w, "  room         %s\n", r.Room)
	fmt.Fprintf(w, "  members      %d subscribers + %d publishers, without presence events\n", r.N, r.Publishers)
	fmt.Fprintf(w, "  messages     %d in all, %d bytes of text each\n", r.M, r.Size)
	fmt.Fprintf(w, "  rate         %s\n", rate)
	fmt.Fprintf(w, "  tokens       %s\n", tokens)
	fmt.Fprintln(w, "results")
	fmt.Fprintf(w, "  connect      %d subscribers joined in %.3f s\n", r.N, r.ConnectS)
	fmt.Fprintf(w, "  sent         %d of %d in %.3f s (%.0f/s); server answered in p50 %.3f ms, p99 %.3f ms\n",
		r.Sent, r.M, r.PublishS, r.SendRate, r.AckP50ms, r.AckP99ms)
	if r.Rate > 0 && r.SendRate < 0.95*r.Rate {
		fmt.Fprintf(w, "    publishers fell behind the requested %g/s: each waits for the server's answer before its next message\n", r.Rate)
	}
	for _, e := range r.PublishErrors {
		fmt.Fprintf(w, "    %s\n", e)
	}
	fmt.Fprintf(w, "  delivered    %d of %d: lost %d, duplicated %d, out of order %d, offset errors %d\n",
		r.Delivered, r.Expected, r.Lost, r.Dups, r.OutOfOrder, r.OffsetErrors)
	if r.TimedOut {
		fmt.Fprintln(w, "  timed out    before every subscriber had every message")
	}
	if r.Resets > 0 || r.Foreign > 0 {
		fmt.Fprintf(w, "  other        %d resets, %d chat messages from elsewhere ignored\n", r.Resets, r.Foreign)
	}
	fmt.Fprintf(w, "  throughput   %.0f messages/s delivered over %.3f s (first send to last receive)\n", r.MsgsPerSec, r.DurationS)
	fmt.Fprintf(w, "  latency      p50 %.3f ms, p99 %.3f ms, max %.3f ms, mean %.3f ms\n", r.P50ms, r.P99ms, r.MaxMs, r.MeanMs)
	fmt.Fprintf(w, "  disconnects  %d\n", r.Disconnects)
	for _, reason := range slices.Sorted(maps.Keys(r.DisconnectReasons)) {
		fmt.Fprintf(w, "    %d× %s\n", r.DisconnectReasons[reason], reason)
	}
	if r.HeapPerConn != nil {
		fmt.Fprintf(w, "  server mem   heap %d B/conn (in use %s), stack %s B/conn, %s goroutines/conn\n",
			*r.HeapPerConn, optInt(r.HeapInusePerConn), optInt(r.StackPerConn), optFloat(r.GoroutinesPerConn))
	}
	if r.ServerSlowConsumers != nil {
		fmt.Fprintf(w, "  server       %s slow consumers, %s rate limited, %s messages per frame\n",
			optInt(r.ServerSlowConsumers), optInt(r.ServerRateLimited), optFloat(r.ServerMsgsPerFrame))
	}
	if r.ok() {
		fmt.Fprintln(w, "  checks       ok")
	} else {
		fmt.Fprintln(w, "  checks       FAILED")
	}
	line, _ := json.Marshal(r)
	fmt.Fprintf(w, "%s\n", line)
}

func optInt(v *int64) string {
	if v == nil {
		return "?"
	}
	return fmt.Sprint(*v)
}

func optFloat(v *float64) string {
	if v == nil {
		return "?"
	}
	return fmt.Sprint(*v)
}
