package signaling

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sockaddr is a peer's address as the kernel takes it (struct sockaddr_in or sockaddr_in6).
type sockaddr struct {
	b [unix.SizeofSockaddrInet6]byte
	n uint32
}

func (s *sockaddr) set(ap netip.AddrPort) {
	*s = sockaddr{}
	ip := ap.Addr().Unmap() // an IPv4-mapped address goes as IPv4, which an IPv4 socket takes too
	if ip.Is4() {
		binary.NativeEndian.PutUint16(s.b[0:], unix.AF_INET)
		binary.BigEndian.PutUint16(s.b[2:], ap.Port())
		a := ip.As4()
		copy(s.b[4:], a[:])
		s.n = unix.SizeofSockaddrInet4
		return
	}
	binary.NativeEndian.PutUint16(s.b[0:], unix.AF_INET6)
	binary.BigEndian.PutUint16(s.b[2:], ap.Port())
	a := ip.As16()
	copy(s.b[8:], a[:])
	if z := ip.Zone(); z != "" {
		binary.NativeEndian.PutUint32(s.b[24:], zones.index(z))
	}
	s.n = unix.SizeofSockaddrInet6
}

// sockaddrToAddrPort reads a struct sockaddr_in or sockaddr_in6 as the net package does: an IPv4 peer
// of a dual-stack socket comes as an IPv4-mapped IPv6 address, and a scope id becomes its interface's
// name as the zone. Another family gives the zero AddrPort.
func sockaddrToAddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case unix.AF_INET6:
		ip := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			ip = ip.WithZone(zones.name(sa.Scope_id))
		}
		return netip.AddrPortFrom(ip, port)
	}
	return netip.AddrPort{}
}

// zones maps IPv6 zones (interface names) to scope ids and back, as the net package's own cache does:
// the table of interfaces is read again when a name or an index is not in it, at most once a minute, so
// a zone no interface has (a peer's ICE candidate can carry any) costs a map lookup, not a netlink dump
// per packet. A zone that is no interface's name but a number is that index; any other is 0.
var zones zoneTable

type zoneTable struct {
	mu      sync.RWMutex
	byName  map[string]uint32
	byIndex map[uint32]string
	read    time.Time // when the table was last read (zero: never)
}

func (z *zoneTable) index(name string) uint32 {
	if id, ok := lookup(z, func() map[string]uint32 { return z.byName }, name); ok {
		return id
	}
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		return uint32(n)
	}
	return 0
}

func (z *zoneTable) name(id uint32) string {
	if name, ok := lookup(z, func() map[uint32]string { return z.byIndex }, id); ok {
		return name
	}
	return strconv.FormatUint(uint64(id), 10)
}

// lookup finds key in the map that table gives (z.byName or z.byIndex), and if it is not there, once
// more after reading the table of interfaces again (when it is over a minute old).
func lookup[K comparable, V any](z *zoneTable, table func() map[K]V, key K) (V, bool) {
	for again := false; ; again = true {
		z.mu.RLock()
		v, ok := table()[key]
		z.mu.RUnlock()
		if ok || again || !z.refresh() {
			return v, ok
		}
	}
}

// refresh reads the table of interfaces if it was last read over a minute ago, and reports whether it did.
func (z *zoneTable) refresh() bool {
	z.mu.Lock()
	defer z.mu.Unlock()
	if !z.read.IsZero() && time.Since(z.read) < time.Minute {
		return false
	}
	z.read = time.Now()
	ifs, err := net.Interfaces()
	if err != nil {
		return false
	}
	z.byName, z.byIndex = make(map[string]uint32, len(ifs)), make(map[uint32]string, len(ifs))
	for _, ifi := range ifs {
		z.byName[ifi.Name], z.byIndex[uint32(ifi.Index)] = uint32(ifi.Index), ifi.Name
	}
	return true
}
