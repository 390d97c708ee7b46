package signaling

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func rawOf(t *testing.T, c *net.UDPConn) *rawUDPConn {
	t.Helper()
	r, ok := muxConn(c).(*rawUDPConn)
	if !ok {
		t.Fatalf("muxConn gave %T, want *rawUDPConn", muxConn(c))
	}
	return r
}

func addrOf(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// The raw reads and writes are the net package's: the same bytes, and the same sender's address as
// ReadFromUDPAddrPort gives on the same kind of socket (IPv4; dual stack, where an IPv4 peer is an
// IPv4-mapped address; IPv6), and a reply reaches the peer whether its address is given mapped or not.
func TestMuxConnReadsAndWritesAsNetDoes(t *testing.T) {
	cases := []struct {
		name, network, listen, peerNetwork, peerListen string
	}{
		{"IPv4", "udp4", "127.0.0.1:0", "udp4", "127.0.0.1:0"},
		{"dual stack, IPv4 peer", "udp", "[::]:0", "udp4", "127.0.0.1:0"},
		{"dual stack, IPv6 peer", "udp", "[::]:0", "udp6", "[::1]:0"},
		{"IPv6", "udp6", "[::1]:0", "udp6", "[::1]:0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			plain, wrapped := listenUDP(t, tc.network, tc.listen), listenUDP(t, tc.network, tc.listen)
			raw := rawOf(t, wrapped)
			peer := listenUDP(t, tc.peerNetwork, tc.peerListen)
			to := func(c *net.UDPConn) *net.UDPAddr {
				port := addrOf(c).Port()
				if tc.peerNetwork == "udp4" {
					return net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port))
				}
				return net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.IPv6Loopback(), port))
			}
			for _, c := range []*net.UDPConn{plain, wrapped} {
				if _, err := peer.WriteToUDP([]byte("hello"), to(c)); err != nil {
					t.Fatal(err)
				}
			}
			_ = plain.SetReadDeadline(time.Now().Add(2 * time.Second))
			_ = raw.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 64)
			_, want, err := plain.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatal(err)
			}
			n, got, err := raw.ReadFromAddrPort(buf)
			if err != nil || string(buf[:n]) != "hello" || got != want {
				t.Fatalf("raw read %q from %v, %v; net reads it from %v", buf[:n], got, err, want)
			}
			// Replies: to the address as read, unmapped (as pion's mux gives it), through WriteTo, and mapped.
			replies := []func() (int, error){
				func() (int, error) { return raw.WriteToAddrPort([]byte("r0"), got) },
				func() (int, error) {
					return raw.WriteToAddrPort([]byte("r1"), netip.AddrPortFrom(got.Addr().Unmap(), got.Port()))
				},
				func() (int, error) { return raw.WriteTo([]byte("r2"), net.UDPAddrFromAddrPort(got)) },
				func() (int, error) { // an IPv4 peer as an IPv4-mapped address, on any socket
					return raw.WriteToAddrPort([]byte("r3"), netip.AddrPortFrom(netip.AddrFrom16(got.Addr().As16()), got.Port()))
				},
			}
			for i, reply := range replies {
				if n, err := reply(); n != 2 || err != nil {
					t.Fatalf("reply %d: wrote %d, %v", i, n, err)
				}
			}
			expectPackets(t, "replies", []*net.UDPConn{peer, peer, peer, peer},
				[][]byte{[]byte("r0"), []byte("r1"), []byte("r2"), []byte("r3")})
			if _, err := peer.WriteToUDP([]byte("again"), to(wrapped)); err != nil {
				t.Fatal(err)
			}
			n, from, err := raw.ReadFrom(buf)
			if err != nil || string(buf[:n]) != "again" || from.(*net.UDPAddr).AddrPort() != want {
				t.Fatalf("ReadFrom: %q from %v, %v", buf[:n], from, err)
			}
		})
	}
}

// A read waits for a datagram without holding anything but its goroutine, ends at the deadline with
// the net package's timeout error (pion's mux goes on reading after one), and ends with net.ErrClosed
// when the socket is closed under it (the mux then stops).
func TestMuxConnDeadlineAndClose(t *testing.T) {
	raw := rawOf(t, listenUDP(t, "udp4", "127.0.0.1:0"))
	_ = raw.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	buf := make([]byte, 64)
	start := time.Now()
	if _, _, err := raw.ReadFromAddrPort(buf); !os.IsTimeout(err) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	if waited := time.Since(start); waited < 40*time.Millisecond {
		t.Fatalf("read returned after %v, before its deadline", waited)
	}
	_ = raw.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, _, err := raw.ReadFromAddrPort(buf)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	_ = raw.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read on a closed socket: %v, want net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a read blocked on the socket did not end when it was closed")
	}
}

// What the kernel refuses comes back as the net package's error, and the socket goes on working: an
// IPv6 peer on an IPv4 socket, an invalid address, and an address of another kind.
func TestMuxConnRefusedWrites(t *testing.T) {
	raw := rawOf(t, listenUDP(t, "udp4", "127.0.0.1:0"))
	peer := listenUDP(t, "udp4", "127.0.0.1:0")
	var op *net.OpError
	if _, err := raw.WriteToAddrPort([]byte("x"), netip.MustParseAddrPort("[::1]:9")); !errors.As(err, &op) ||
		op.Op != "write" || !errors.Is(err, unix.EAFNOSUPPORT) {
		t.Errorf("IPv6 peer on an IPv4 socket: %v, want a write error EAFNOSUPPORT", err)
	}
	if _, err := raw.WriteToAddrPort([]byte("x"), netip.AddrPort{}); err == nil {
		t.Error("the zero address was written to")
	}
	if _, err := raw.WriteTo([]byte("x"), &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); err == nil {
		t.Error("a TCP address was written to")
	}
	if _, err := raw.WriteToAddrPort([]byte("ok"), addrOf(peer)); err != nil {
		t.Fatal(err)
	}
	expectPackets(t, "after refusals", []*net.UDPConn{peer}, [][]byte{[]byte("ok")})
}

// A datagram larger than the buffer is cut to the buffer, as the net package's read cuts it, and the
// next read starts at the next datagram.
func TestMuxConnShortBuffer(t *testing.T) {
	c := listenUDP(t, "udp4", "127.0.0.1:0")
	raw, peer := rawOf(t, c), listenUDP(t, "udp4", "127.0.0.1:0")
	for _, p := range []string{"0123456789", "ab"} {
		if _, err := peer.WriteToUDPAddrPort([]byte(p), addrOf(c)); err != nil {
			t.Fatal(err)
		}
	}
	_ = raw.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 4)
	for _, want := range []string{"0123", "ab"} {
		n, _, err := raw.ReadFromAddrPort(buf)
		if err != nil || !bytes.Equal(buf[:n], []byte(want)) {
			t.Fatalf("read %q, %v; want %q", buf[:n], err, want)
		}
	}
}

// The mux reads every publisher's packet and writes every RTCP packet through these: neither allocates.
func TestMuxConnDoesNotAllocate(t *testing.T) {
	c := listenUDP(t, "udp4", "127.0.0.1:0")
	raw := rawOf(t, c)
	to := addrOf(c)
	pkt, buf := []byte("packet"), make([]byte, 64)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := raw.WriteToAddrPort(pkt, to); err != nil {
			t.Fatal(err)
		}
		if _, _, err := raw.ReadFromAddrPort(buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("a write and a read allocate %v times", allocs)
	}
}

// A scope id is read back as its interface's name, or its number when no interface has it; either way
// sockaddr.set turns it into the same scope id.
func TestSockaddrZoneRoundTrip(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatalf("no loopback interface: %v", err)
	}
	for _, tc := range []struct {
		id   uint32
		zone string
	}{{uint32(lo.Index), "lo"}, {999999, "999999"}, {0, ""}} {
		sa := unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: netip.MustParseAddr("fe80::2").As16(), Scope_id: tc.id}
		*(*[2]byte)(unsafe.Pointer(&sa.Port)) = [2]byte{0x13, 0x88}
		ap := sockaddrToAddrPort(&sa)
		if want := netip.AddrPortFrom(netip.MustParseAddr("fe80::2").WithZone(tc.zone), 5000); ap != want {
			t.Errorf("scope %d read as %v, want %v", tc.id, ap, want)
		}
		var s sockaddr
		s.set(ap)
		if back := (*unix.RawSockaddrInet6)(unsafe.Pointer(&s.b[0])); back.Scope_id != tc.id {
			t.Errorf("scope %d read as %v and set as %d", tc.id, ap, back.Scope_id)
		}
	}
	var other unix.RawSockaddrInet6 // AF_UNSPEC: not an address
	if ap := sockaddrToAddrPort(&other); ap.IsValid() {
		t.Errorf("an unknown family read as %v", ap)
	}
}
