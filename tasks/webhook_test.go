package tasks_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/tasks"
)

func TestWebhookURLRule(t *testing.T) {
	t.Parallel()
	for u, want := range map[string]string{
		"https://app.example.com/hooks?x=1":                    "",
		"http://user:pw@app.example.com:8443/h":                "",
		"ftp://app.example.com/h":                              "must use http or https, got ftp",
		"app.example.com/h":                                    "must be an absolute http(s) URL",
		"https:///path":                                        "must name a host",
		"https://app.example.com/h#frag":                       "must not have a fragment",
		"https://app.example.com/" + strings.Repeat("a", 2048): "must be at most 2048 characters, got 2072",
		"%zz": "must be an absolute http(s) URL",
	} {
		require.Equal(t, want, tasks.WebhookURLRule(u), u)
	}
	require.Empty(t, tasks.WebhookEventsRule(""))
	require.Empty(t, tasks.WebhookEventsRule(tasks.WebhookAll))
	require.NotEmpty(t, tasks.WebhookEventsRule("All"))
}

func TestWebhookTask(t *testing.T) {
	t.Parallel()
	task, err := tasks.NewWebhookTask(tasks.WebhookArgs{EventID: "1700000000000-0", ID: "m1", Body: []byte(`{"a":1}`)})
	require.NoError(t, err)
	require.Equal(t, tasks.TypeWebhook, task.Type())
	a, err := tasks.Decode[tasks.WebhookArgs](task)
	require.NoError(t, err)
	require.Equal(t, "m1", a.ID)
	require.JSONEq(t, `{"a":1}`, string(a.Body))
	_, err = tasks.NewWebhookTask(tasks.WebhookArgs{ID: "m1", Body: []byte(`{}`)})
	require.ErrorContains(t, err, "event_id")
}
