package signaling

import "net"

// sendBatch gathers the packets one fan-out goroutine sends directly (direct.go) to a chunk of
// subscribers, and sends them with one system call per batchMax of them (sendmmsg on Linux,
// batch_linux.go): on a virtual machine a system call's entry and exit cost nearly as much as what it
// does for one packet (measured in docs/benchmarks.md). A batch belongs to one goroutine; its buffers
// are reused from packet to packet.
type sendBatch struct {
	conn  *net.UDPConn
	slots []batchSlot
	n     int
	sys   batchSys // what the system's send needs beside the slots (batch_linux.go, batch_other.go)
}

// batchSlot is one message: its packet buffer and where it goes.
type batchSlot struct {
	buf []byte
	pkt []byte // buf as filled (the first n slots are queued)
	to  *peerAddr
}

// batchMax is how many messages a batch holds before pushAll sends it: few enough that the kernel copies
// the packets while they are still in the cache (a chunk of 128 was 190 KB of buffers per packet), many
// enough that the system calls are few. The media bench measured 32 a few per cent cheaper than 128
// (docs/benchmarks.md).
var batchMax = 32

func newSendBatch(conn *net.UDPConn) *sendBatch {
	b := &sendBatch{conn: conn}
	b.sys.init(conn)
	return b
}

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
func (b *sendBatch) add(pkt []byte, to *peerAddr) {
	s := &b.slots[b.n]
	s.pkt, s.to = pkt, to
	b.n++
}

// flush sends what is queued. A message the kernel refuses (an unreachable address) is skipped: the
// others still go.
func (b *sendBatch) flush() {
	if b.n == 0 {
		return
	}
	b.send(b.slots[:b.n])
	for i := range b.n {
		b.slots[i].to = nil // keep no address of a subscriber that leaves
	}
	b.n = 0
}

// sendEach sends the messages one system call each: where the system has no batch send, or the socket
// gives no access to its descriptor.
func (b *sendBatch) sendEach(ms []batchSlot) {
	for _, m := range ms {
		_, _ = b.conn.WriteToUDPAddrPort(m.pkt, m.to.ap)
	}
}
