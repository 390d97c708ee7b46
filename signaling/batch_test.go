package signaling

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

func listenUDP(t *testing.T, network, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatalf("listen %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func peerOf(c *net.UDPConn) *peerAddr {
	return newPeerAddr(c.LocalAddr().(*net.UDPAddr).AddrPort())
}

// A batch sends its packets to their addresses in one go; one the kernel refuses (an IPv6 address on an
// IPv4 socket) is skipped and the others still arrive; the batch is empty afterwards and is reused.
func TestSendBatch(t *testing.T) {
	from, a, b := listenUDP(t, "udp4", "127.0.0.1:0"), listenUDP(t, "udp4", "127.0.0.1:0"), listenUDP(t, "udp4", "127.0.0.1:0")
	batch := newSendBatch(from)
	refused := newPeerAddr(netip.MustParseAddrPort("[::1]:9"))
	for round := range 2 {
		for i, to := range []*peerAddr{peerOf(a), refused, peerOf(b)} {
			buf := batch.buffer(4)
			copy(buf, []byte{byte(round), byte(i), 'p', 'k'})
			batch.add(buf, to)
		}
		batch.flush()
		if batch.n != 0 {
			t.Fatalf("%d messages left after a flush", batch.n)
		}
		expectPackets(t, fmt.Sprintf("round %d", round), []*net.UDPConn{a, b}, [][]byte{{byte(round), 0, 'p', 'k'}, {byte(round), 2, 'p', 'k'}})
	}
}

// A dual-stack socket (the media socket listening on all addresses) sends to IPv4 and IPv6 peers in one
// batch, and to an IPv6 peer given with its zone.
func TestSendBatchDualStack(t *testing.T) {
	from := listenUDP(t, "udp", "[::]:0")
	v4, v6 := listenUDP(t, "udp4", "127.0.0.1:0"), listenUDP(t, "udp6", "[::1]:0")
	zoned := newPeerAddr(netip.AddrPortFrom(netip.MustParseAddr("::1").WithZone("lo"), peerOf(v6).ap.Port()))
	batch := newSendBatch(from)
	for i, to := range []*peerAddr{peerOf(v4), peerOf(v6), zoned} {
		buf := batch.buffer(2)
		copy(buf, []byte{'m', byte(i)})
		batch.add(buf, to)
	}
	batch.flush()
	expectPackets(t, "dual stack", []*net.UDPConn{v4, v6, v6}, [][]byte{{'m', 0}, {'m', 1}, {'m', 2}})
}

func expectPackets(t *testing.T, what string, at []*net.UDPConn, want [][]byte) {
	t.Helper()
	for i, c := range at {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		got := make([]byte, 16)
		n, err := c.Read(got)
		if err != nil || !bytes.Equal(got[:n], want[i]) {
			t.Fatalf("%s: receiver %d got %x, %v; want %x", what, i, got[:n], err, want[i])
		}
	}
}

// A fan-out chunk is sent in batches of at most batchMax messages (the packets are copied out by the
// kernel while they are still in the cache), and every subscriber gets its packet.
func TestPushAllSendsInBatchesOfBatchMax(t *testing.T) {
	n := batchMax
	t.Cleanup(func() { batchMax = n })
	batchMax = 2
	from := listenUDP(t, "udp4", "127.0.0.1:0")
	var downs []*downTrack
	var to []*net.UDPConn
	u := &upTrack{}
	for i := range 5 {
		c := listenUDP(t, "udp4", "127.0.0.1:0")
		seal, err := newSealer(srtp.ProtectionProfileAeadAes128Gcm, make([]byte, 16), make([]byte, 12))
		if err != nil {
			t.Fatal(err)
		}
		d := directDownTrack(t, from, seal, peerOf(c).ap, uint32(100+i))
		d.src.Store(u)
		downs, to = append(downs, d), append(to, c)
	}
	batch := newSendBatch(from)
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 7, SequenceNumber: 1, Timestamp: 1},
		Payload: []byte{0x10, 0, 0, 0}}
	pushAll(pkt, u, downs, batch)
	if len(batch.slots) > batchMax {
		t.Errorf("the batch grew to %d messages; it holds at most batchMax (%d)", len(batch.slots), batchMax)
	}
	for i, c := range to {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		got := make([]byte, 1500)
		n, err := c.Read(got)
		var h rtp.Header
		if _, herr := h.Unmarshal(got[:n]); err != nil || herr != nil || h.SSRC != uint32(100+i) {
			t.Fatalf("subscriber %d: %d bytes, %v, %v, SSRC %d", i, n, err, herr, h.SSRC)
		}
	}
}
