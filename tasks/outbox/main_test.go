package outbox_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Run must leave no goroutine behind once its context is cancelled.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
