package worker_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/worker"
)

// Each delay is the doubled one with ±50% jitter, and never more than max: the cap
// README promises between two webhook attempts ("at most 1 h apart").
func TestBackoffJitteredAndCapped(t *testing.T) {
	t.Parallel()
	const initial, max = 5 * time.Second, time.Hour
	for range 200 {
		for n := range 20 {
			d := worker.Backoff(initial, max, n)
			want := min(initial<<n, max) // the interval before jitter
			require.GreaterOrEqual(t, d, want/2, "retry %d", n)
			require.LessOrEqual(t, d, min(want*3/2, max), "retry %d", n)
		}
	}
}
