package rooms

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

// Of many concurrent creations of one room, exactly one succeeds; the others get ErrExists.
func TestConcurrentCreateOfOneRoom(t *testing.T) {
	for range 20 {
		e := newEnv(t, nil)
		var ok, exists atomic.Int32
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				_, err := e.reg.Create(context.Background(), Settings{Name: "dup"})
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, ErrExists):
					exists.Add(1)
				default:
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if ok.Load() != 1 {
			t.Fatalf("%d creations succeeded, %d got ErrExists", ok.Load(), exists.Load())
		}
	}
}
