package tasks_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
)

func TestSendTaskRoundTrip(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 5, 10, 0, 0, 0, time.UTC)
	in := tasks.SendArgs{ID: "order-42", Message: transactional(), ExpiresAt: now.Add(40 * time.Second), EnqueuedAt: now}
	task, err := tasks.NewSendTask(in)
	require.NoError(t, err)
	require.Equal(t, tasks.TypeSend, task.Type())

	// The frozen JSON field names.
	var raw map[string]any
	require.NoError(t, json.Unmarshal(task.Payload(), &raw))
	require.ElementsMatch(t, []string{"v", "id", "message", "expires_at", "enqueued_at"}, keys(raw))
	require.EqualValues(t, 1, raw["v"])
	require.Equal(t, "380501234567", raw["message"].(map[string]any)["destination_addr"])

	out, err := tasks.Decode[tasks.SendArgs](task)
	require.NoError(t, err)
	in.V = tasks.PayloadVersion
	require.Equal(t, in, out)
	require.Equal(t, 40*time.Second, out.TTL())
}

func TestPollTaskRoundTrip(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 5, 10, 0, 0, 0, time.UTC)
	in := tasks.PollArgs{ID: "order-42", ProviderMessageID: 429, Poll: 3, HasSMS: true, AcceptedAt: now, ExpiresAt: now.Add(time.Minute)}
	task, err := tasks.NewPollTask(in)
	require.NoError(t, err)
	require.Equal(t, tasks.TypePoll, task.Type())

	var raw map[string]any
	require.NoError(t, json.Unmarshal(task.Payload(), &raw))
	require.ElementsMatch(t, []string{"v", "id", "provider_message_id", "poll", "has_sms", "accepted_at", "expires_at"}, keys(raw))

	out, err := tasks.Decode[tasks.PollArgs](task)
	require.NoError(t, err)
	in.V = tasks.PayloadVersion
	require.Equal(t, in, out)
	require.Equal(t, "poll:order-42:3", tasks.PollTaskID("order-42", 3))
}

func TestDecodeRejectsBadPayloads(t *testing.T) {
	t.Parallel()
	good := `{"v":1,"id":"a","message":{"destination_addr":"380501234567","message_type":106,"source_type":2},"expires_at":"2026-11-05T10:00:40Z","enqueued_at":"2026-11-05T10:00:00Z"}`
	goodPoll := `{"v":1,"id":"a","provider_message_id":"429","poll":0,"has_sms":false,"accepted_at":"2026-11-05T10:00:00Z","expires_at":"2026-11-05T10:00:40Z"}`

	// Sanity: the good payloads decode (so each case below fails for its own reason).
	_, err := tasks.Decode[tasks.SendArgs](asynq.NewTask(tasks.TypeSend, []byte(good)))
	require.NoError(t, err)
	p, err := tasks.Decode[tasks.PollArgs](asynq.NewTask(tasks.TypePoll, []byte(goodPoll)))
	require.NoError(t, err)
	require.Equal(t, provider.MessageID(429), p.ProviderMessageID)

	tests := []struct {
		desc    string
		typ     string
		payload string
		poll    bool
	}{
		{desc: "NotJSON", typ: tasks.TypeSend, payload: `{"v":1,`},
		{desc: "Empty", typ: tasks.TypeSend, payload: ``},
		{desc: "JSONArray", typ: tasks.TypeSend, payload: `[1,2]`},
		{desc: "VersionMissing", typ: tasks.TypeSend, payload: `{"id":"a","expires_at":"2026-11-05T10:00:40Z"}`},
		{desc: "VersionZero", typ: tasks.TypeSend, payload: `{"v":0,"id":"a","expires_at":"2026-11-05T10:00:40Z"}`},
		{desc: "VersionTwo", typ: tasks.TypeSend, payload: `{"v":2,"id":"a","expires_at":"2026-11-05T10:00:40Z"}`},
		{desc: "VersionString", typ: tasks.TypeSend, payload: `{"v":"1","id":"a","expires_at":"2026-11-05T10:00:40Z"}`},
		{desc: "WrongTypeName", typ: "viber:sendx", payload: good},
		{desc: "PollPayloadAsSend", typ: tasks.TypePoll, payload: good},
		{desc: "IDMissing", typ: tasks.TypeSend, payload: `{"v":1,"expires_at":"2026-11-05T10:00:40Z"}`},
		{desc: "ExpiresAtMissing", typ: tasks.TypeSend, payload: `{"v":1,"id":"a"}`},
		{desc: "FieldWrongType", typ: tasks.TypeSend, payload: `{"v":1,"id":"a","message":{"message_type":"x"},"expires_at":"2026-11-05T10:00:40Z"}`},
		{desc: "BadTime", typ: tasks.TypeSend, payload: `{"v":1,"id":"a","expires_at":"tomorrow"}`},
		{desc: "PollWithoutProviderID", typ: tasks.TypePoll, payload: `{"v":1,"id":"a","poll":0,"accepted_at":"2026-11-05T10:00:00Z","expires_at":"2026-11-05T10:00:40Z"}`, poll: true},
		{desc: "PollBadProviderID", typ: tasks.TypePoll, payload: `{"v":1,"id":"a","provider_message_id":"x1","accepted_at":"2026-11-05T10:00:00Z","expires_at":"2026-11-05T10:00:40Z"}`, poll: true},
		{desc: "PollNegative", typ: tasks.TypePoll, payload: `{"v":1,"id":"a","provider_message_id":1,"poll":-1,"accepted_at":"2026-11-05T10:00:00Z","expires_at":"2026-11-05T10:00:40Z"}`, poll: true},
		{desc: "SendPayloadAsPoll", typ: tasks.TypeSend, payload: goodPoll, poll: true},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			task := asynq.NewTask(tt.typ, []byte(tt.payload))
			var err error
			if tt.poll {
				_, err = tasks.Decode[tasks.PollArgs](task)
			} else {
				_, err = tasks.Decode[tasks.SendArgs](task)
			}
			require.ErrorIs(t, err, tasks.ErrBadPayload)
		})
	}

	t.Run("NilTask", func(t *testing.T) {
		t.Parallel()
		_, err := tasks.Decode[tasks.SendArgs](nil)
		require.ErrorIs(t, err, tasks.ErrBadPayload)
	})
}

func TestNewTaskRefusesIncompleteArgs(t *testing.T) {
	t.Parallel()
	_, err := tasks.NewSendTask(tasks.SendArgs{Message: transactional(), ExpiresAt: time.Now()})
	require.Error(t, err)
	_, err = tasks.NewPollTask(tasks.PollArgs{ID: "a", AcceptedAt: time.Now(), ExpiresAt: time.Now()})
	require.Error(t, err)
}

func TestQueueFor(t *testing.T) {
	t.Parallel()
	require.Equal(t, tasks.QueueCritical, tasks.QueueFor(transactional()))
	require.Equal(t, tasks.QueueDefault, tasks.QueueFor(promotional()))
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func TestValidID(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]bool{
		"": false, "a": true, "A-z_0.9:x": true, "a b": false, "a/b": false, "é": false,
		strings.Repeat("x", 128): true, strings.Repeat("x", 129): false,
	} {
		require.Equal(t, want, tasks.ValidID(id), "%q", id)
	}
}
