package outbox_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks/outbox"
)

// A reason is stored with its phone-like runs masked, whatever produced it: a rule, or
// an error from below quoted in one. The dead-letter stream never holds a number.
func TestRejectedValuesReasonsMasked(t *testing.T) {
	t.Parallel()
	v := outbox.RejectedValues(redis.XMessage{ID: "1-0", Values: map[string]any{"message": "{}"}},
		[]provider.FieldError{
			{Field: "webhook_events", Rule: `must be "final" or "all", got "380501234567"`},
			{Field: "entry", Rule: "not enqueued after 3 attempts: ERR key viberq:msg:380501234567"},
		}, time.Unix(0, 0))
	m := map[string]any{}
	for i := 0; i < len(v); i += 2 {
		m[v[i].(string)] = v[i+1]
	}
	var got []outbox.Reason
	require.NoError(t, json.Unmarshal([]byte(m["reasons"].(string)), &got))
	require.Equal(t, []outbox.Reason{
		{Field: "webhook_events", Rule: `must be "final" or "all", got "380*****4567"`},
		{Field: "entry", Rule: "not enqueued after 3 attempts: ERR key viberq:msg:380*****4567"},
	}, got)
}
