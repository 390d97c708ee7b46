package signaling

import (
	"net"

	"golang.org/x/sys/unix"
)

// tuneMediaSocket sets what the media socket needs beyond its buffer sizes (best effort: a socket that
// refuses still works).
//
// IPv4 packets are sent with "don't fragment" and without a path-MTU check (IP_PMTUDISC_PROBE). Linux's
// default (IP_PMTUDISC_WANT) sets the DF bit too, but lets the kernel fragment, and so it gives every
// packet an IP identification from a shared, hashed counter: 4 % of the server's CPU at N=300 in the
// media bench (__ip_select_ident; docs/benchmarks.md). With PROBE the identification is 0, as RFC 6864
// allows for atomic datagrams. What it gives up is fragmentation of a packet larger than the path's MTU:
// media packets are at most ~1250 bytes (pion's 1200-byte payloads), smaller than any path WebRTC works
// on. On a dual-stack socket the option applies to its IPv4 peers; IPv6 has no identification to set.
func tuneMediaSocket(c *net.UDPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_PROBE)
	})
}
