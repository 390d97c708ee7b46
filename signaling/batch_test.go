package signaling

import (
	"bytes"
	"net"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
)

// A batch sends its packets to their addresses in one go; one the kernel refuses (an IPv6 address on an
// IPv4 socket) is skipped and the others still arrive; the batch is empty afterwards and is reused.
func TestSendBatch(t *testing.T) {
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	from, a, b := listen(), listen(), listen()
	batch := newSendBatch(ipv4.NewPacketConn(from))
	refused := &net.UDPAddr{IP: net.ParseIP("::1"), Port: 9}
	for round := range 2 {
		for i, to := range []*net.UDPAddr{a.LocalAddr().(*net.UDPAddr), refused, b.LocalAddr().(*net.UDPAddr)} {
			buf := batch.buffer(4)
			copy(buf, []byte{byte(round), byte(i), 'p', 'k'})
			batch.add(buf, to)
		}
		batch.flush()
		if batch.n != 0 {
			t.Fatalf("%d messages left after a flush", batch.n)
		}
		for i, c := range []*net.UDPConn{a, b} {
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			got := make([]byte, 16)
			n, err := c.Read(got)
			want := []byte{byte(round), byte(2 * i), 'p', 'k'}
			if err != nil || !bytes.Equal(got[:n], want) {
				t.Fatalf("round %d: receiver %d got %x, %v; want %x", round, i, got[:n], err, want)
			}
		}
	}
}
