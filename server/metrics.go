package server

import (
	"fmt"
	"net/http"
	"runtime"
	"sync/atomic"
)

// metrics are the server's counters, exported in Prometheus text format at /metrics.
type metrics struct {
	connsTotal    atomic.Int64
	messagesIn    atomic.Int64
	messagesOut   atomic.Int64
	framesOut     atomic.Int64
	bytesOut      atomic.Int64
	slowConsumers atomic.Int64
	rateLimited   atomic.Int64
}

// serveMetrics writes the metrics. With ?gc=1 it runs a garbage collection first, so that heap figures
// measure live memory (the bench uses it to report heap per connection).
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("gc") == "1" {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	m := &s.metrics
	var direct, pion int
	if s.cfg.Media != nil {
		direct, pion = s.cfg.Media.SendPaths()
	}
	for _, v := range []struct {
		name, typ, help string
		val             int64
	}{
		{"liveforum_connections", "gauge", "Open websocket connections.", s.nconns.Load()},
		{"liveforum_connections_total", "counter", "Websocket connections accepted.", m.connsTotal.Load()},
		{"liveforum_messages_in_total", "counter", "Client messages received.", m.messagesIn.Load()},
		{"liveforum_messages_out_total", "counter", "Queue entries written to clients (a room batch of several events counts once).", m.messagesOut.Load()},
		{"liveforum_frames_out_total", "counter", "Websocket frames sent (messages are coalesced).", m.framesOut.Load()},
		{"liveforum_bytes_out_total", "counter", "Payload bytes sent.", m.bytesOut.Load()},
		{"liveforum_slow_consumers_total", "counter", "Connections closed as slow consumers.", m.slowConsumers.Load()},
		{"liveforum_rate_limited_total", "counter", "Messages refused or connections closed by rate limits.", m.rateLimited.Load()},
		{"liveforum_media_subscribers_direct", "gauge", "Media subscribers on this node sent to by the direct path (docs/design.md).", int64(direct)},
		{"liveforum_media_subscribers_pion", "gauge", "Media subscribers on this node sent to through pion (ICE-TCP, or a peer that is the DTLS server).", int64(pion)},
		{"go_goroutines", "gauge", "Goroutines.", int64(runtime.NumGoroutine())},
		{"go_memstats_heap_alloc_bytes", "gauge", "Bytes of allocated heap objects.", int64(ms.HeapAlloc)},
		{"go_memstats_heap_inuse_bytes", "gauge", "Bytes in in-use heap spans.", int64(ms.HeapInuse)},
		{"go_memstats_stack_inuse_bytes", "gauge", "Bytes of goroutine stacks.", int64(ms.StackInuse)},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %d\n", v.name, v.help, v.name, v.typ, v.name, v.val)
	}
}
