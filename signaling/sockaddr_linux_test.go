package signaling

import (
	"net"
	"net/netip"
	"testing"
	"time"
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

// A zone no interface has is looked up in the table of interfaces at most once a minute: a peer's
// candidates can carry any zone, and a netlink dump per packet sent to them would be the peer's to order.
// A zone that is a number is that index; any other unknown one is 0.
func TestZoneTableReadsInterfacesAtMostOnceAMinute(t *testing.T) {
	var z zoneTable
	if !z.refresh() {
		t.Fatal("a table never read was not read")
	}
	first := z.read
	for _, name := range []string{"no-such-interface", "12345", "another"} {
		want := map[string]uint32{"12345": 12345}[name]
		if got := z.index(name); got != want {
			t.Errorf("zone %q is index %d, want %d", name, got, want)
		}
	}
	if got := z.name(999999); got != "999999" {
		t.Errorf("index 999999 is named %q", got)
	}
	if z.read != first {
		t.Error("unknown zones read the table again within the minute")
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatalf("no loopback interface: %v", err)
	}
	z.byName, z.byIndex = nil, nil // an interface that appeared since the table was read
	z.read = first.Add(-2 * time.Minute)
	if got := z.index("lo"); got != uint32(lo.Index) {
		t.Errorf("zone lo, new since the last read a while ago, is index %d, want %d", got, lo.Index)
	}
	if z.read == first {
		t.Error("a zone not in a table over a minute old did not read it again")
	}
}
