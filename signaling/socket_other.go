//go:build !linux

package signaling

import "net"

// tuneMediaSocket has nothing to set outside Linux (see socket_linux.go).
func tuneMediaSocket(*net.UDPConn) {}
