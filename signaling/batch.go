package signaling

import (
	"net"

	"golang.org/x/net/ipv4"
)

// sendBatch gathers the packets one fan-out goroutine sends directly (direct.go) to a chunk of
// subscribers, and sends them with one system call (sendmmsg on Linux): on a virtual machine a system
// call's entry and exit cost nearly as much as what it does for one packet (measured in
// docs/benchmarks.md). A batch belongs to one goroutine; its buffers are reused from packet to packet.
type sendBatch struct {
	conn  *ipv4.PacketConn
	msgs  []ipv4.Message
	slots []batchSlot
	n     int
}

// batchSlot is one message's storage: its packet buffer and the one-element buffer list that points to it.
type batchSlot struct {
	buf  []byte
	bufs [1][]byte
}

func newSendBatch(conn *ipv4.PacketConn) *sendBatch { return &sendBatch{conn: conn} }

// buffer returns the next message's buffer, with room for size bytes.
func (b *sendBatch) buffer(size int) []byte {
	if b.n == len(b.slots) {
		b.slots = append(b.slots, batchSlot{})
	}
	s := &b.slots[b.n]
	if cap(s.buf) < size {
		s.buf = make([]byte, 0, max(size, 1500))
	}
	return s.buf[:size]
}

// add queues pkt (the slice buffer returned, as filled) for to.
func (b *sendBatch) add(pkt []byte, to *net.UDPAddr) {
	s := &b.slots[b.n]
	s.bufs[0] = pkt
	if b.n == len(b.msgs) {
		b.msgs = append(b.msgs, ipv4.Message{})
	}
	b.msgs[b.n] = ipv4.Message{Buffers: s.bufs[:], Addr: to}
	b.n++
}

// flush sends what is queued. A message the kernel refuses (an unreachable address) is skipped: the
// others still go.
func (b *sendBatch) flush() {
	ms := b.msgs[:b.n]
	for len(ms) > 0 {
		n, err := b.conn.WriteBatch(ms, 0)
		if err != nil && n <= 0 { // the first refused (x/net passes the system call's -1 on)
			n = 1
		}
		ms = ms[n:]
	}
	for i := range b.n {
		b.msgs[i] = ipv4.Message{} // keep no address of a subscriber that leaves
	}
	b.n = 0
}
