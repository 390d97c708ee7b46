package signaling

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

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
	var op *net.OpError
	if _, _, err := raw.ReadFromAddrPort(buf); !os.IsTimeout(err) || !errors.Is(err, os.ErrDeadlineExceeded) ||
		!errors.As(err, &op) || op.Op != "read" {
		t.Fatalf("read past the deadline: %v, want a timeout as net's read gives", err)
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
	eventually(t, "the read waits on the socket", func() bool {
		stacks := make([]byte, 1<<20)
		stacks = stacks[:runtime.Stack(stacks, true)]
		for _, g := range bytes.Split(stacks, []byte("\n\n")) {
			if bytes.Contains(g, []byte("[IO wait")) && bytes.Contains(g, []byte("rawUDPConn).ReadFromAddrPort")) {
				return true
			}
		}
		return false
	})
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
	if _, err := raw.WriteTo([]byte("x"), &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("write to a TCP address: %v, want EINVAL as net gives", err)
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

// A write past the socket's write deadline ends at once with a timeout (pion's mux cancels a write by
// setting the deadline to now), and the socket writes again once the deadline is cleared.
func TestMuxConnWriteDeadline(t *testing.T) {
	raw := rawOf(t, listenUDP(t, "udp4", "127.0.0.1:0"))
	peer := listenUDP(t, "udp4", "127.0.0.1:0")
	_ = raw.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := raw.WriteToAddrPort([]byte("late"), addrOf(peer)); !os.IsTimeout(err) {
		t.Fatalf("write past the deadline: %v, want a timeout", err)
	}
	var op *net.OpError
	if _, err := raw.WriteToAddrPort([]byte("late"), addrOf(peer)); !errors.As(err, &op) || op.Op != "write" {
		t.Errorf("write past the deadline: %#v, want a *net.OpError for write, as net gives", err)
	}
	_ = raw.SetWriteDeadline(time.Time{})
	if _, err := raw.WriteToAddrPort([]byte("on time"), addrOf(peer)); err != nil {
		t.Fatal(err)
	}
	expectPackets(t, "after the deadline was cleared", []*net.UDPConn{peer}, [][]byte{[]byte("on time")})
}

// Many goroutines write at once (pion's connections each write their own ICE, DTLS and RTCP): every
// datagram arrives whole, from the one socket.
func TestMuxConnConcurrentWriters(t *testing.T) {
	raw := rawOf(t, listenUDP(t, "udp4", "127.0.0.1:0"))
	peer := listenUDP(t, "udp4", "127.0.0.1:0")
	_ = peer.SetReadBuffer(1 << 20)
	const writers, each = 8, 50
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			for i := range each {
				if _, err := raw.WriteToAddrPort([]byte{'w', byte(w), byte(i)}, addrOf(peer)); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	seen := map[[2]byte]bool{}
	buf := make([]byte, 16)
	_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
	for range writers * each {
		n, err := peer.Read(buf)
		if err != nil || n != 3 || buf[0] != 'w' {
			t.Fatalf("after %d datagrams: %x, %v", len(seen), buf[:n], err)
		}
		seen[[2]byte{buf[1], buf[2]}] = true
	}
	if len(seen) != writers*each {
		t.Errorf("%d distinct datagrams of %d", len(seen), writers*each)
	}
}

// An empty datagram is read as one: 0 bytes from its sender, not an end of stream.
func TestMuxConnEmptyDatagram(t *testing.T) {
	c := listenUDP(t, "udp4", "127.0.0.1:0")
	raw, peer := rawOf(t, c), listenUDP(t, "udp4", "127.0.0.1:0")
	for _, p := range [][]byte{{}, []byte("next")} {
		if _, err := peer.WriteToUDPAddrPort(p, addrOf(c)); err != nil {
			t.Fatal(err)
		}
	}
	_ = raw.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 16)
	for _, want := range []string{"", "next"} {
		n, from, err := raw.ReadFromAddrPort(buf)
		if err != nil || string(buf[:n]) != want || from != addrOf(peer) {
			t.Fatalf("read %q from %v, %v; want %q from %v", buf[:n], from, err, want, addrOf(peer))
		}
	}
}
