package api_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Serve must leave no goroutine behind after its graceful shutdown.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
