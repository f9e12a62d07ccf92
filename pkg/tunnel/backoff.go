package tunnel

import (
	"math/rand/v2"
	"time"
)

// backoff yields reconnect delays that double from initial up to max, each
// with "equal jitter": half the delay fixed, half random, so that agents
// cut off together do not reconnect in lock step.
type backoff struct {
	initial, max time.Duration
	attempt      int
	rand         func() float64
}

func newBackoff(initial, max time.Duration) *backoff {
	return &backoff{initial: initial, max: max, rand: rand.Float64}
}

// next returns the delay before the next attempt.
func (b *backoff) next() time.Duration {
	d := b.initial
	for i := 0; i < b.attempt && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	b.attempt++
	half := d / 2
	return half + time.Duration(b.rand()*float64(d-half))
}

// reset starts again from initial.
func (b *backoff) reset() { b.attempt = 0 }
