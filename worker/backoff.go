package worker

import (
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Backoff is the n-th (from 0) delay of an exponential backoff from initial, doubling
// up to max, with ±50% jitter (cenkalti/backoff), and never more than max: the retry
// delay of the worker's retried errors and of webhook deliveries (worker/webhook).
// cenkalti/backoff jitters around the capped interval, so its delays at the cap reach
// 1.5 × max; the cap is what README promises ("at most 1 h apart"), so they are cut
// to it.
func Backoff(initial, max time.Duration, n int) time.Duration {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     initial,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         max,
		Stop:                backoff.Stop,
		Clock:               backoff.SystemClock,
	}
	b.Reset()
	d := b.NextBackOff()
	for i := 0; i < min(n, 64); i++ {
		d = b.NextBackOff()
	}
	return min(d, max)
}
