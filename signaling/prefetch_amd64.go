package signaling

import "unsafe"

// prefetch asks the processor to bring the cache line at p in, without waiting for it (PREFETCHT0): a
// hint, which never faults, whatever p is.
//
//go:noescape
func prefetch(p unsafe.Pointer)
