package signaling

import (
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"github.com/pion/ice/v4"
	"golang.org/x/sys/unix"
)

// The mux uses a connection's netip.AddrPort methods when it has them (pion's asAddrPortReaderWriter).
var _ ice.AddrPortReaderWriter = (*rawUDPConn)(nil)

// muxConn wraps the media socket for pion's ICE mux, whose reads (every packet from a publisher, every
// RTCP packet from a subscriber) and writes (ICE checks, DTLS, RTCP) go through it. On Linux they are
// made as raw system calls, as the fan-out's sendmmsg is (batch_linux.go): ones the Go scheduler is not
// told of.
//
// Told of a system call, the runtime wakes its monitor thread (sysmon) if it was asleep, and sysmon then
// polls every 20 µs until the process has been idle a while. A media server is idle between packets,
// so nearly every packet read woke it: at N=300 sysmon woke ~1500 times a second and used 0.05 of the
// server's core, and the worker it preempted on that core lost its caches each time (docs/benchmarks.md).
// The calls cannot block: they are made with MSG_DONTWAIT, and on EAGAIN they wait for the socket through
// the poller, with its deadlines, as the net package's calls do.
func muxConn(c *net.UDPConn) net.PacketConn {
	rc, err := c.SyscallConn()
	if err != nil {
		return c
	}
	q := &rawUDPConn{UDPConn: c, rc: rc}
	q.rd.read = q.rd.recv
	q.wr.New = func() any {
		w := &rawWrite{}
		w.write = w.send
		return w
	}
	return q
}

// rawUDPConn is a *net.UDPConn whose reads and writes are raw system calls. It implements pion's
// ice.AddrPortReaderWriter, so the mux uses its netip.AddrPort methods; ReadFrom and WriteTo are there
// for any other caller.
type rawUDPConn struct {
	*net.UDPConn
	rc syscall.RawConn

	rdMu sync.Mutex // one read at a time: the mux has one reader, and rd is its state
	rd   rawRead
	wr   sync.Pool // of *rawWrite: writes come from many goroutines
}

// rawRead is one recvfrom's arguments and results, with the callback made once: a closure made per read
// would be allocated per read.
type rawRead struct {
	buf   []byte
	from  unix.RawSockaddrInet6 // large enough for either family
	n     int
	errno unix.Errno
	read  func(fd uintptr) bool
}

func (r *rawRead) recv(fd uintptr) bool {
	for {
		fromLen := uint32(unsafe.Sizeof(r.from))
		n, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(unsafe.SliceData(r.buf))),
			uintptr(len(r.buf)), unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&r.from)), uintptr(unsafe.Pointer(&fromLen)))
		switch errno {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // RawConn.Read waits for the socket to be readable, then calls again
		}
		r.n, r.errno = int(n), errno
		return true
	}
}

type rawWrite struct {
	pkt   []byte
	to    sockaddr
	n     int
	errno unix.Errno
	write func(fd uintptr) bool
}

func (w *rawWrite) send(fd uintptr) bool {
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(unsafe.SliceData(w.pkt))),
			uintptr(len(w.pkt)), unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&w.to.b[0])), uintptr(w.to.n))
		switch errno {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		w.n, w.errno = int(n), errno
		return true
	}
}

func (c *rawUDPConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	c.rdMu.Lock()
	defer c.rdMu.Unlock()
	r := &c.rd
	defer func() { r.buf = nil }()
	r.buf = b
	for {
		if err := c.rc.Read(r.read); err != nil {
			return 0, netip.AddrPort{}, c.opError("read", unwrapOp(err), nil) // closed, or past the deadline
		}
		if r.errno != 0 {
			return 0, netip.AddrPort{}, c.opError("read", os.NewSyscallError("recvfrom", r.errno), nil)
		}
		if from := sockaddrToAddrPort(&r.from); from.IsValid() {
			return r.n, from, nil
		}
		// A family other than IPv4 or IPv6, which a UDP socket does not have: the datagram is dropped
		// rather than handed to the mux, which would stop reading at an invalid address.
	}
}

func (c *rawUDPConn) WriteToAddrPort(b []byte, to netip.AddrPort) (int, error) {
	if !to.IsValid() {
		return 0, c.opError("write", errInvalidAddr, nil)
	}
	w := c.wr.Get().(*rawWrite)
	defer c.wr.Put(w)
	w.pkt = b
	w.to.set(to)
	err := c.rc.Write(w.write)
	w.pkt = nil
	if err != nil {
		return 0, c.opError("write", unwrapOp(err), net.UDPAddrFromAddrPort(to))
	}
	if w.errno != 0 {
		return 0, c.opError("write", os.NewSyscallError("sendto", w.errno), net.UDPAddrFromAddrPort(to))
	}
	return w.n, nil
}

func (c *rawUDPConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := c.ReadFromAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

func (c *rawUDPConn) WriteTo(b []byte, to net.Addr) (int, error) {
	ua, ok := to.(*net.UDPAddr)
	if !ok {
		return 0, c.opError("write", syscall.EINVAL, to) // as net's WriteTo answers
	}
	return c.WriteToAddrPort(b, ua.AddrPort())
}

func (c *rawUDPConn) opError(op string, err error, addr net.Addr) error {
	return &net.OpError{Op: op, Net: "udp", Source: c.LocalAddr(), Addr: addr, Err: err}
}

// unwrapOp takes the error out of RawConn's *net.OpError ("raw-read", "raw-write"), to be wrapped as the
// net package wraps it ("read", "write"): net.ErrClosed, or os.ErrDeadlineExceeded.
func unwrapOp(err error) error {
	if op, ok := err.(*net.OpError); ok {
		return op.Err
	}
	return err
}

var errInvalidAddr = &net.AddrError{Err: "invalid address"}
