package signaling

import (
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// What the batch does with sendmmsg's answers: a partial send goes on from where it stopped, EINTR tries
// again, a refused first message is skipped, and EAGAIN hands back to RawConn.Write (which waits for
// the socket to be writable) and goes on from there when called again.
func TestSendPendingFollowsTheKernel(t *testing.T) {
	type answer struct {
		n     int
		errno unix.Errno
	}
	var s batchSys
	var calls []int // how many messages each call was given
	var answers []answer
	s.sys = func(_ uintptr, hdrs []unix.Mmsghdr) (int, unix.Errno) {
		calls = append(calls, len(hdrs))
		a := answers[0]
		answers = answers[1:]
		return a.n, a.errno
	}
	s.pending = make([]unix.Mmsghdr, 10)
	answers = []answer{{3, 0}, {0, unix.EINTR}, {0, unix.ENETUNREACH}, {2, 0}, {0, unix.EAGAIN}}
	if s.sendPending(0) {
		t.Fatal("done although the socket buffer was full")
	}
	if len(s.pending) != 4 {
		t.Fatalf("%d messages pending after the buffer filled, want 4 (3 sent, 1 refused, 2 sent)", len(s.pending))
	}
	answers = []answer{{4, 0}}
	if !s.sendPending(0) || len(s.pending) != 0 {
		t.Fatalf("called again: done %v with %d pending", len(s.pending) == 0, len(s.pending))
	}
	if want := []int{10, 7, 7, 6, 4, 4}; !slices.Equal(calls, want) {
		t.Errorf("calls were given %v messages, want %v", calls, want)
	}
}
