//go:build !linux

package signaling

import "net"

// muxConn is the media socket itself where the mux's reads and writes are not made as raw system calls
// (see muxconn_linux.go).
func muxConn(c *net.UDPConn) net.PacketConn { return c }
