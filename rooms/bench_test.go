package rooms

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/liveforum/liveforum/broker"
	"github.com/liveforum/liveforum/protocol"
)

// countSink counts what a room hands it, as fast as a sink can: the benchmark measures the room's side of
// the fan-out (fold, encode once, batch, enqueue), not sockets.
type countSink struct{ frames, bytes atomic.Int64 }

func (c *countSink) Send(f []byte) bool       { c.frames.Add(1); c.bytes.Add(int64(len(f))); return true }
func (c *countSink) Close(int, string)        {}
func (c *countSink) Kick(string, int, string) {}

// BenchmarkFanout sends chat messages into a room of n members and reports the cost per delivered
// message (one message to one member).
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{100, 1000, 5000} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			br := broker.NewMemory(broker.MemoryOptions{})
			reg := NewRegistry(br, Config{Logger: slog.New(slog.DiscardHandler)})
			defer br.Close()
			defer reg.Close(protocol.CloseShutdown, "")
			ctx := context.Background()
			if _, err := reg.Create(ctx, Settings{Name: "bench"}); err != nil {
				b.Fatal(err)
			}
			sink := &countSink{}
			var pub *Session
			for i := range n {
				a := Actor{Member: protocol.Member{Identity: fmt.Sprintf("m%d", i), Name: "M", Role: "participant"}}
				s, err := reg.Join(ctx, a, "bench", JoinParams{Presence: false}, sink)
				if err != nil {
					b.Fatal(err)
				}
				pub = s
			}
			before := sink.frames.Load()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, err := pub.Chat(ctx, fmt.Sprintf("message %d of the benchmark, about sixty bytes long", i), ""); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if got := sink.frames.Load() - before; got != int64(b.N*n) {
				b.Fatalf("%d frames delivered, want %d", got, b.N*n)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
		})
	}
}
