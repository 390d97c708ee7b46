package signaling

import (
	"testing"

	"golang.org/x/sys/unix"
)

// The media socket sends IPv4 with DF set and no fragmentation (so no per-packet IP identification),
// whether it listens on IPv4 or on both stacks.
func TestMediaSocketSendsWithoutFragmenting(t *testing.T) {
	for _, tc := range []struct{ network, addr string }{{"udp4", "127.0.0.1:0"}, {"udp", "[::]:0"}} {
		c := listenUDP(t, tc.network, tc.addr)
		tuneMediaSocket(c)
		rc, err := c.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var got int
		var gerr error
		_ = rc.Control(func(fd uintptr) { got, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER) })
		if gerr != nil || got != unix.IP_PMTUDISC_PROBE {
			t.Errorf("%s %s: IP_MTU_DISCOVER is %d (%v), want IP_PMTUDISC_PROBE (%d)", tc.network, tc.addr, got, gerr, unix.IP_PMTUDISC_PROBE)
		}
	}
}
