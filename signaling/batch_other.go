//go:build !linux

package signaling

import (
	"net"
	"net/netip"
)

type batchSys struct{}

func (*batchSys) init(*net.UDPConn) {}

func (b *sendBatch) send(ms []batchSlot) { b.sendEach(ms) }

// sockaddr is nothing where sends take the address as a netip.AddrPort.
type sockaddr struct{}

func (*sockaddr) set(netip.AddrPort) {}
