package outbox_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/viberq/viberq/provider"
)

// Run must leave no goroutine behind once its context is cancelled.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func validMessage() provider.Message {
	return provider.Message{
		SourceAddr:      "Shop",
		DestinationAddr: "380501234567",
		MessageType:     provider.TypeText,
		Text:            "Your code is 1234",
		TextSMS:         "Code 1234",
		SourceType:      provider.SourceTransactional,
	}
}
