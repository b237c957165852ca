package worker

import (
	"context"
	"time"
)

// writeTimeout bounds a finalisation write (record, alert, pause) made with a context
// detached from the task's: a cancelled task context must not lose a state change
// (as asynq's processor does for its own retry/archive writes).
const writeTimeout = 5 * time.Second

// detached returns a context that ignores ctx's cancellation, bounded by writeTimeout.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
}
