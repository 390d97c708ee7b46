package signaling

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// On Linux a batch is one sendmmsg, made with the message headers and the addresses (sockaddr) already
// in the kernel's form, and made as a raw system call: one that the Go scheduler is not told of.
//
// Told of a system call, the scheduler takes the goroutine's P away when the call lasts more than 20 µs,
// and gives it to another thread to run other goroutines meanwhile; with one P (GOMAXPROCS=1, a server
// given one core) that is a thread woken and put to sleep again for every batch, since a batch of tens
// of messages lasts longer than that. The media bench measured the raw call at 0.74–0.80 of the
// server's CPU with x/net's WriteBatch (docs/benchmarks.md). The call cannot block: it is made with
// MSG_DONTWAIT, and a full socket buffer returns EAGAIN, on which the batch waits for the socket to be
// writable as any write does. It holds its P for as long as the kernel takes to send the batch (batchMax
// messages at most), which is also CPU work the P's other goroutines would wait for.

type batchSys struct {
	rc      syscall.RawConn // nil: sendEach
	hdrs    []unix.Mmsghdr
	iovs    []unix.Iovec
	pending []unix.Mmsghdr        // what write has still to send
	write   func(fd uintptr) bool // made once: a closure made per batch would be allocated per batch
	sys     sendmmsgFunc
}

// sendmmsgFunc is the system call (a variable for tests of what sendPending does with its results).
type sendmmsgFunc func(fd uintptr, hdrs []unix.Mmsghdr) (int, unix.Errno)

func rawSendmmsg(fd uintptr, hdrs []unix.Mmsghdr) (int, unix.Errno) {
	n, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)),
		unix.MSG_DONTWAIT, 0, 0)
	return int(n), errno
}

func (s *batchSys) init(conn *net.UDPConn) {
	if rc, err := conn.SyscallConn(); err == nil {
		s.rc = rc
	}
	s.sys = rawSendmmsg
	s.write = s.sendPending
}

// sendPending sends the pending messages on fd, for RawConn.Write: false when the socket buffer is full
// (Write then waits until the socket is writable and calls again), true when none is left. A message
// the kernel refuses (an address the socket cannot reach) is skipped.
func (s *batchSys) sendPending(fd uintptr) bool {
	for len(s.pending) > 0 {
		n, errno := s.sys(fd, s.pending)
		switch errno {
		case 0:
			s.pending = s.pending[n:]
		case unix.EAGAIN:
			return false
		case unix.EINTR:
		default:
			s.pending = s.pending[1:] // sendmmsg fails only when the first message does
		}
	}
	return true
}

func (b *sendBatch) send(ms []batchSlot) {
	s := &b.sys
	if s.rc == nil {
		b.sendEach(ms)
		return
	}
	if len(s.hdrs) < len(ms) {
		s.hdrs = make([]unix.Mmsghdr, len(ms))
		s.iovs = make([]unix.Iovec, len(ms))
	}
	for i := range ms {
		m, iov, h := &ms[i], &s.iovs[i], &s.hdrs[i]
		iov.Base = unsafe.SliceData(m.pkt)
		iov.SetLen(len(m.pkt))
		h.Hdr = unix.Msghdr{Name: &m.to.sa.b[0], Namelen: m.to.sa.n, Iov: iov}
		h.Hdr.SetIovlen(1)
	}
	s.pending = s.hdrs[:len(ms)]
	// An error is the socket closed: what is left goes nowhere, as any write to a closed socket.
	_ = s.rc.Write(s.write)
	s.pending = nil
	// No pointer to a subscriber's address outlives the batch (the iovecs point into its own buffers).
	clear(s.hdrs[:len(ms)])
}
