package signaling

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A peer's sockaddr is what the kernel's struct sockaddr_in / sockaddr_in6 say it is: family, port in
// network order, address, and for an IPv6 address with a zone, the zone's interface index.
func TestSockaddrLayout(t *testing.T) {
	var s sockaddr
	s.set(netip.MustParseAddrPort("192.0.2.7:5004"))
	v4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&s.b[0]))
	if s.n != unix.SizeofSockaddrInet4 || v4.Family != unix.AF_INET || v4.Addr != [4]byte{192, 0, 2, 7} ||
		s.b[2] != 5004>>8 || s.b[3] != 5004&0xff {
		t.Errorf("IPv4: %d bytes, family %d, address %v, port bytes %x", s.n, v4.Family, v4.Addr, s.b[2:4])
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatalf("no loopback interface: %v", err)
	}
	for _, zone := range []string{"lo", "7", ""} {
		s.set(netip.AddrPortFrom(netip.MustParseAddr("fe80::1").WithZone(zone), 443))
		v6 := (*unix.RawSockaddrInet6)(unsafe.Pointer(&s.b[0]))
		want := map[string]uint32{"lo": uint32(lo.Index), "7": 7, "": 0}[zone]
		if s.n != unix.SizeofSockaddrInet6 || v6.Family != unix.AF_INET6 || v6.Addr != netip.MustParseAddr("fe80::1").As16() ||
			s.b[2] != 443>>8 || s.b[3] != 443&0xff || v6.Scope_id != want || v6.Flowinfo != 0 {
			t.Errorf("IPv6 zone %q: %d bytes, family %d, address %x, port bytes %x, scope %d (want %d)",
				zone, s.n, v6.Family, v6.Addr, s.b[2:4], v6.Scope_id, want)
		}
	}
}

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
