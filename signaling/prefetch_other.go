//go:build !amd64

package signaling

import "unsafe"

// prefetch is a hint that costs nothing where it is not implemented.
func prefetch(unsafe.Pointer) {}
