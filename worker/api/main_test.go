package api_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Serve must leave no goroutine behind after its graceful shutdown. go-redis's
// background redial after a failed dial (tests that stop Redis) sleeps a second
// between attempts and ends once its pool is closed: not ours, ignored.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}
