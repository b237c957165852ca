package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/tasks/redistest"
	"github.com/viberq/viberq/worker/api"
)

const (
	apiToken    = "tok-0123456789abcdef"
	monUser     = "admin"
	monPassword = "mon-password-0123456789"
	cbToken     = "cbtok-0123456789abcdef"
	phone       = "380501234567"
	phoneMasked = "380*****4567"
	maxBody     = 4096
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type testBundle struct {
	mr    *miniredis.Miniredis
	rdb   *redis.Client
	store *tasks.Store
	enq   *tasks.Enqueuer
	srv   *httptest.Server
	logs  *syncBuffer
	index map[provider.MessageID]string
	reg   *prometheus.Registry

	resumedMu sync.Mutex
	resumed   []string // queues passed to Options.QueueResumed
}

// options are the callback credentials of a test server (the default: the token).
type options struct {
	token, user, password string
}

func setup(t *testing.T, o ...options) *testBundle {
	t.Helper()
	mr, rdb := redistest.Mini(t)
	store := tasks.NewStore(rdb, tasks.StoreOptions{})
	client := asynq.NewClientFromRedisClient(rdb)
	b := &testBundle{
		mr: mr, rdb: rdb, store: store,
		enq:   tasks.NewEnqueuer(client, store, tasks.EnqueuerConfig{}),
		logs:  &syncBuffer{},
		index: map[provider.MessageID]string{},
		reg:   prometheus.NewRegistry(),
	}
	cb := options{token: cbToken}
	if len(o) > 0 {
		cb = o[0]
	}
	var mu sync.Mutex
	srv, err := api.New(api.Options{
		Tokens:             []string{apiToken, "tok-second-0123456789"},
		MonitoringUser:     monUser,
		MonitoringPassword: monPassword,
		MaxBodyBytes:       maxBody,
		CallbackToken:      cb.token,
		CallbackUser:       cb.user,
		CallbackPassword:   cb.password,
		Redis:              rdb,
		Enqueuer:           b.enq,
		Records:            store,
		Status:             tasks.CallbackApplier{Store: store, Client: client},
		ProviderIndex: func(_ context.Context, pid provider.MessageID) (string, bool, error) {
			mu.Lock()
			defer mu.Unlock()
			id, ok := b.index[pid]
			return id, ok, nil
		},
		Gatherer:   b.reg,
		Registerer: b.reg,
		Logger:     zerolog.New(b.logs).Level(zerolog.DebugLevel),
		QueueResumed: func(_ context.Context, q string) error {
			b.resumedMu.Lock()
			defer b.resumedMu.Unlock()
			b.resumed = append(b.resumed, q)
			return nil
		},
	})
	require.NoError(t, err)
	b.srv = httptest.NewServer(srv.Handler())
	t.Cleanup(b.srv.Close)
	t.Cleanup(func() {
		// Whatever the test did, no secret and no full phone number reached the log.
		logs := b.logs.String()
		for _, s := range []string{phone, apiToken, monPassword, cbToken, "cb-password-0123456789"} {
			if strings.Contains(logs, s) {
				t.Errorf("log contains %q:\n%s", s, logs)
			}
		}
	})
	return b
}

type response struct {
	status int
	header http.Header
	body   string
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.body), &m), r.body)
	return m
}

// do sends a request; hdr holds header pairs.
func (b *testBundle) do(t *testing.T, method, path, body string, hdr ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, b.srv.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := b.srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return response{status: resp.StatusCode, header: resp.Header, body: string(rb)}
}

func (b *testBundle) post(t *testing.T, body string, hdr ...string) response {
	t.Helper()
	return b.do(t, http.MethodPost, "/v1/messages", body,
		append([]string{"Authorization", "Bearer " + apiToken, "Content-Type", "application/json"}, hdr...)...)
}

const validBody = `{"source_addr":"Shop","destination_addr":"380501234567","message_type":106,"source_type":2,"text":"Your code is 1234","text_sms":"Code 1234"}`

func withID(id string) string {
	return `{"id":"` + id + `",` + validBody[1:]
}

func TestAuthRefusals(t *testing.T) {
	t.Parallel()
	b := setup(t)

	r := b.do(t, http.MethodPost, "/v1/messages", validBody, "Content-Type", "application/json")
	require.Equal(t, http.StatusUnauthorized, r.status)
	require.Contains(t, r.header.Get("WWW-Authenticate"), "Bearer")

	r = b.do(t, http.MethodPost, "/v1/messages", validBody, "Content-Type", "application/json", "Authorization", "Bearer wrong-token-0123456789")
	require.Equal(t, http.StatusUnauthorized, r.status)
	require.Contains(t, r.header.Get("WWW-Authenticate"), "invalid_token")

	r = b.do(t, http.MethodPost, "/v1/messages", validBody, "Content-Type", "application/json", "Authorization", "Basic "+apiToken)
	require.Equal(t, http.StatusUnauthorized, r.status)

	r = b.do(t, http.MethodGet, "/v1/messages/abc", "")
	require.Equal(t, http.StatusUnauthorized, r.status)
	r = b.do(t, http.MethodGet, "/v1/anything", "")
	require.Equal(t, http.StatusUnauthorized, r.status)

	// The second token works too.
	r = b.do(t, http.MethodGet, "/v1/messages/abc", "", "Authorization", "Bearer tok-second-0123456789")
	require.Equal(t, http.StatusNotFound, r.status)

	for _, path := range []string{"/monitoring", "/monitoring/", "/monitoring/api/queues"} {
		r = b.do(t, http.MethodGet, path, "")
		require.Equal(t, http.StatusUnauthorized, r.status, path)
		require.Contains(t, r.header.Get("WWW-Authenticate"), "Basic", path)
	}
	req, _ := http.NewRequest(http.MethodGet, b.srv.URL+"/monitoring/api/queues", nil)
	req.SetBasicAuth(monUser, "wrong")
	resp, err := b.srv.Client().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	cbBody := `{"message_id":1,"status":1}`
	for _, path := range []string{"/callbacks/status", "/callbacks/inbound", "/callbacks/wrong-token-0123456789/status", "/callbacks/status/wrong-token-0123456789", "/callbacks/" + cbToken + "/other"} {
		r = b.do(t, http.MethodPost, path, cbBody, "Content-Type", "application/json")
		require.Equal(t, http.StatusNotFound, r.status, path)
	}
	r = b.do(t, http.MethodGet, "/callbacks/"+cbToken+"/status", "")
	require.Equal(t, http.StatusMethodNotAllowed, r.status)
	require.NotContains(t, r.body, cbToken)
}

func TestCallbacksBasicAuth(t *testing.T) {
	t.Parallel()
	b := setup(t, options{token: cbToken, user: "dt", password: "cb-password-0123456789"})
	body := `{"message_id":5,"status":1}`
	r := b.do(t, http.MethodPost, "/callbacks/"+cbToken+"/status", body, "Content-Type", "application/json")
	require.Equal(t, http.StatusUnauthorized, r.status, "token alone is not enough when basic auth is configured")
	require.Contains(t, r.header.Get("WWW-Authenticate"), "Basic")

	req, _ := http.NewRequest(http.MethodPost, b.srv.URL+"/callbacks/"+cbToken+"/status", strings.NewReader(body))
	req.SetBasicAuth("dt", "cb-password-0123456789")
	resp, err := b.srv.Client().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	req, _ = http.NewRequest(http.MethodPost, b.srv.URL+"/callbacks/status", strings.NewReader(body))
	req.SetBasicAuth("dt", "cb-password-0123456789")
	resp, err = b.srv.Client().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "the token is required when configured")

	// Basic auth only.
	b2 := setup(t, options{user: "dt", password: "cb-password-0123456789"})
	r = b2.do(t, http.MethodPost, "/callbacks/status", body)
	require.Equal(t, http.StatusUnauthorized, r.status)
	req, _ = http.NewRequest(http.MethodPost, b2.srv.URL+"/callbacks/status", strings.NewReader(body))
	req.SetBasicAuth("dt", "cb-password-0123456789")
	resp, err = b2.srv.Client().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// Nothing configured: callbacks are off.
	b3 := setup(t, options{})
	r = b3.do(t, http.MethodPost, "/callbacks/status", body)
	require.Equal(t, http.StatusNotFound, r.status)
}

func TestPostMessageRefusals(t *testing.T) {
	t.Parallel()
	b := setup(t)

	t.Run("TooLarge413", func(t *testing.T) {
		big := `{"text":"` + strings.Repeat("a", maxBody) + `"}`
		r := b.post(t, big)
		require.Equal(t, http.StatusRequestEntityTooLarge, r.status, r.body)
		require.NotContains(t, r.body, "aaaa")
	})
	t.Run("NotJSON415", func(t *testing.T) {
		r := b.do(t, http.MethodPost, "/v1/messages", validBody, "Authorization", "Bearer "+apiToken, "Content-Type", "text/plain")
		require.Equal(t, http.StatusUnsupportedMediaType, r.status)
		r = b.do(t, http.MethodPost, "/v1/messages", validBody, "Authorization", "Bearer "+apiToken)
		require.Equal(t, http.StatusUnsupportedMediaType, r.status)
		r = b.do(t, http.MethodPost, "/v1/messages", "source_addr=Shop", "Authorization", "Bearer "+apiToken, "Content-Type", "application/x-www-form-urlencoded")
		require.Equal(t, http.StatusUnsupportedMediaType, r.status)
	})
	t.Run("Malformed400", func(t *testing.T) {
		r := b.post(t, `{"source_addr":"Shop",`)
		require.Equal(t, http.StatusBadRequest, r.status)
		require.Contains(t, r.json(t)["error"], "malformed JSON")
	})
	t.Run("UnknownFields400", func(t *testing.T) {
		r := b.post(t, `{"source_addr":"Shop","phone":"380501234567","colour":"red"}`)
		require.Equal(t, http.StatusBadRequest, r.status)
		m := r.json(t)
		require.Contains(t, m["error"], `"phone"`)
		require.Contains(t, m["error"], `"colour"`)
		require.Len(t, m["fields"], 2)
		require.NotContains(t, r.body, phone)
	})
	t.Run("EveryBadField422", func(t *testing.T) {
		r := b.post(t, `{"destination_addr":"+38 050","message_type":999,"source_type":7,"ttl":"7h","image":"ftp://x"}`)
		require.Equal(t, http.StatusUnprocessableEntity, r.status, r.body)
		var got struct {
			Error  string `json:"error"`
			Fields []struct{ Field, Rule string }
		}
		require.NoError(t, json.Unmarshal([]byte(r.body), &got))
		require.Equal(t, "invalid message", got.Error)
		fields := map[string]string{}
		for _, f := range got.Fields {
			fields[f.Field] = f.Rule
			require.NotEmpty(t, f.Rule)
		}
		for _, f := range []string{"source_addr", "destination_addr", "message_type", "source_type", "text", "ttl"} {
			require.Contains(t, fields, f, "fields: %v", fields)
		}
	})
	t.Run("WrongTypes422", func(t *testing.T) {
		r := b.post(t, `{"source_addr":"Shop","destination_addr":"380501234567","message_type":"x","source_type":2,"text":7}`)
		require.Equal(t, http.StatusUnprocessableEntity, r.status, r.body)
		require.Contains(t, r.body, `"field":"message_type"`)
		require.Contains(t, r.body, `"field":"text"`)
	})
	t.Run("HeaderAndFieldDiffer422", func(t *testing.T) {
		r := b.post(t, withID("field-id"), "Idempotency-Key", "header-id")
		require.Equal(t, http.StatusUnprocessableEntity, r.status)
		require.Contains(t, r.body, `"field":"id"`)
	})
	// An empty key (an unset shell variable) or two keys would make the retry of a
	// message a new message: refused, naming the header, and nothing is written.
	t.Run("EmptyOrRepeatedKey422", func(t *testing.T) {
		r := b.post(t, withID("empty-key"), "Idempotency-Key", " ")
		require.Equal(t, http.StatusUnprocessableEntity, r.status, r.body)
		require.Contains(t, r.body, `{"field":"Idempotency-Key","rule":"must not be empty: give a key, or leave the header out"}`)
		r = b.post(t, `{"text":""}`, "Idempotency-Key", "")
		require.Equal(t, http.StatusUnprocessableEntity, r.status, r.body)
		require.Contains(t, r.body, `"field":"Idempotency-Key"`)
		require.Contains(t, r.body, `"field":"source_addr"`, "the message's own faults are listed too")

		req, err := http.NewRequest(http.MethodPost, b.srv.URL+"/v1/messages", strings.NewReader(validBody))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+apiToken)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Add("Idempotency-Key", "key-1")
		req.Header.Add("Idempotency-Key", "key-2")
		resp, err := b.srv.Client().Do(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, string(body))
		require.Contains(t, string(body), `{"field":"Idempotency-Key","rule":"given more than once"}`)

		for _, id := range []string{"empty-key", "key-1", "key-2"} {
			_, err := b.store.Get(context.Background(), id)
			require.ErrorIs(t, err, tasks.ErrNotFound, id)
		}
		keys, err := b.rdb.Keys(context.Background(), b.store.Key("*")).Result()
		require.NoError(t, err)
		require.Empty(t, keys, "no record written")
	})
	// A refusal names every bad field: with a header fault or a bad key, the body's
	// own faults, the Enqueuer's rules (ttl, webhook) included, are listed beside it.
	t.Run("HeaderFaultListsEveryOther422", func(t *testing.T) {
		bad := `{"id":"x1","ttl":"7h","webhook_url":"ftp://h/",` + validBody[1:]
		r := b.post(t, bad, "Idempotency-Key", "x2")
		require.Equal(t, http.StatusUnprocessableEntity, r.status, r.body)
		for _, f := range []string{"id", "ttl", "webhook_url"} {
			require.Contains(t, r.body, `"field":"`+f+`"`, r.body)
		}
		r = b.post(t, `{"text":5,"source_addr":"Shop"}`, "Idempotency-Key", "bad key")
		require.Equal(t, http.StatusUnprocessableEntity, r.status, r.body)
		require.Contains(t, r.body, `{"field":"id","rule":"may contain only letters, digits and . _ : -"}`)
		require.Contains(t, r.body, `"field":"text"`)
	})
	t.Run("BadKey422", func(t *testing.T) {
		r := b.post(t, validBody, "Idempotency-Key", "no spaces allowed")
		require.Equal(t, http.StatusUnprocessableEntity, r.status)
		require.Contains(t, r.body, `"field":"id"`)
	})
}

func TestPostMessageIdempotent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()

	r := b.post(t, validBody, "Idempotency-Key", "order-42")
	require.Equal(t, http.StatusAccepted, r.status, r.body)
	m := r.json(t)
	require.Equal(t, "order-42", m["id"])
	require.Equal(t, false, m["duplicate"])
	require.Equal(t, tasks.QueueCritical, m["queue"])
	exp, err := time.Parse(time.RFC3339, m["expires_at"].(string))
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(tasks.DefaultSMSTTL), exp, 10*time.Second)
	require.Equal(t, "/v1/messages/order-42", r.header.Get("Location"))

	r = b.post(t, validBody, "Idempotency-Key", "order-42")
	require.Equal(t, http.StatusAccepted, r.status)
	require.Equal(t, true, r.json(t)["duplicate"])

	r = b.post(t, withID("order-43"))
	require.Equal(t, http.StatusAccepted, r.status)
	require.Equal(t, false, r.json(t)["duplicate"])
	r = b.post(t, withID("order-43"), "Idempotency-Key", "order-43")
	require.Equal(t, http.StatusAccepted, r.status)
	require.Equal(t, true, r.json(t)["duplicate"])

	// Without a key: a generated ID, a new message each time.
	r1, r2 := b.post(t, validBody), b.post(t, validBody)
	require.Equal(t, http.StatusAccepted, r1.status)
	require.NotEqual(t, r1.json(t)["id"], r2.json(t)["id"])

	insp := asynq.NewInspectorFromRedisClient(b.rdb)
	pending, err := insp.ListPendingTasks(tasks.QueueCritical, asynq.PageSize(100))
	require.NoError(t, err)
	require.Len(t, pending, 4, "one task per distinct message")

	// 409: the same key with another message.
	r = b.post(t, strings.Replace(validBody, "Your code is 1234", "Other", 1), "Idempotency-Key", "order-42")
	require.Equal(t, http.StatusConflict, r.status)

	// GET the record.
	r = b.do(t, http.MethodGet, "/v1/messages/order-42", "", "Authorization", "Bearer "+apiToken)
	require.Equal(t, http.StatusOK, r.status)
	rec := r.json(t)
	require.Equal(t, "order-42", rec["id"])
	require.Equal(t, "queued", rec["state"])
	require.Equal(t, phoneMasked, rec["dest"])
	require.NotContains(t, r.body, phone)
	for _, k := range []string{"channel", "provider_message_id", "viber_status", "sms_message_id", "sms_status", "attempts", "polls", "error", "created_at"} {
		require.Contains(t, rec, k)
	}

	r = b.do(t, http.MethodGet, "/v1/messages/nope", "", "Authorization", "Bearer "+apiToken)
	require.Equal(t, http.StatusNotFound, r.status)
	r = b.do(t, http.MethodGet, "/v1/messages/"+url.PathEscape("bad id!"), "", "Authorization", "Bearer "+apiToken)
	require.Equal(t, http.StatusNotFound, r.status)

	_, err = b.store.Get(ctx, "order-43")
	require.NoError(t, err)
}

func TestPostMessageRedisDown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.mr.Close()
	r := b.post(t, validBody)
	require.Equal(t, http.StatusServiceUnavailable, r.status)
	require.NotContains(t, r.body, "127.0.0.1")
}

// accepted enqueues a message and walks its record to accepted with provider id pid.
func (b *testBundle) accepted(t *testing.T, id string, pid provider.MessageID) {
	t.Helper()
	ctx := context.Background()
	_, err := b.enq.Enqueue(ctx, tasks.EnqueueRequest{ID: id, Message: provider.Message{
		SourceAddr: "Shop", DestinationAddr: phone, MessageType: provider.TypeText,
		Text: "Your code is 1234", TextSMS: "Code 1234", SourceType: provider.SourceTransactional,
	}})
	require.NoError(t, err)
	_, ok, err := b.store.Transition(ctx, id, []tasks.State{tasks.StateQueued}, tasks.StateSending, tasks.Update{IncAttempts: true})
	require.NoError(t, err)
	require.True(t, ok)
	_, ok, err = b.store.Transition(ctx, id, []tasks.State{tasks.StateSending}, tasks.StateAccepted, tasks.Update{ProviderMessageID: pid})
	require.NoError(t, err)
	require.True(t, ok)
}

func TestStatusCallback(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()

	// confirming reports whether a confirming poll of id is queued.
	confirming := func(t *testing.T, id string) bool {
		t.Helper()
		_, err := asynq.NewInspectorFromRedisClient(b.rdb).GetTaskInfo(tasks.QueueStatus, tasks.ConfirmTaskID(id))
		if errors.Is(err, asynq.ErrTaskNotFound) {
			return false
		}
		require.NoError(t, err)
		return true
	}

	t.Run("FinalStatusAsksForAConfirmingPoll", func(t *testing.T) {
		b.accepted(t, "cb-1", 777)
		r := b.do(t, http.MethodPost, "/callbacks/"+cbToken+"/status?id=cb-1", `{"message_id":"777","status":1}`, "Content-Type", "application/json")
		require.Equal(t, http.StatusOK, r.status, r.body)
		require.Equal(t, "confirming", r.json(t)["result"])
		require.Equal(t, "accepted", r.json(t)["state"])
		rec, err := b.store.Get(ctx, "cb-1")
		require.NoError(t, err)
		require.Equal(t, tasks.StateAccepted, rec.State, "a callback alone settles nothing")
		require.Nil(t, rec.ViberStatus, "nor writes a status")
		require.True(t, confirming(t, "cb-1"))

		// A repeat is answered the same and still queues one confirming poll.
		r = b.do(t, http.MethodPost, "/callbacks/"+cbToken+"/status?id=cb-1", `{"message_id":777,"status":1}`, "Content-Type", "application/json")
		require.Equal(t, http.StatusOK, r.status)
		require.Equal(t, "confirming", r.json(t)["result"])
	})

	t.Run("FinalRecord", func(t *testing.T) {
		b.accepted(t, "cb-f", 776)
		_, ok, err := b.store.Transition(ctx, "cb-f", []tasks.State{tasks.StateAccepted}, tasks.StateDelivered, tasks.Update{Channel: tasks.ChannelViber})
		require.NoError(t, err)
		require.True(t, ok)
		r := b.do(t, http.MethodPost, "/callbacks/"+cbToken+"/status?id=cb-f", `{"message_id":776,"status":2}`, "Content-Type", "application/json")
		require.Equal(t, http.StatusOK, r.status)
		require.Equal(t, "final", r.json(t)["result"])
		require.Equal(t, "delivered", r.json(t)["state"])
		require.False(t, confirming(t, "cb-f"))
	})

	t.Run("FormSMSFallbackViaRevealURLLayout", func(t *testing.T) {
		b.accepted(t, "cb-2", 778)
		form := url.Values{"message_id": {"778"}, "status": {"2"}, "sms_message_id": {"9001"}, "sms_message_status": {"2"}}
		r := b.do(t, http.MethodPost, "/callbacks/status/"+cbToken+"?id=cb-2", form.Encode(), "Content-Type", "application/x-www-form-urlencoded")
		require.Equal(t, http.StatusOK, r.status, r.body)
		require.Equal(t, "confirming", r.json(t)["result"])
		require.True(t, confirming(t, "cb-2"))
	})

	t.Run("ViberFailureWhileSMSMayComeIsPending", func(t *testing.T) {
		b.accepted(t, "cb-3", 779) // has text_sms
		r := b.do(t, http.MethodPost, "/callbacks/"+cbToken+"/status?id=cb-3", `{"message_id":779,"status":4}`, "Content-Type", "application/json")
		require.Equal(t, http.StatusOK, r.status)
		require.Equal(t, "pending", r.json(t)["result"])
		rec, err := b.store.Get(ctx, "cb-3")
		require.NoError(t, err)
		require.Equal(t, tasks.StateAccepted, rec.State)
		require.False(t, confirming(t, "cb-3"), "nothing a poll would call final: no provider call")
	})

	t.Run("ByProviderIndexWithoutIDParam", func(t *testing.T) {
		b.accepted(t, "cb-4", 780)
		b.index[780] = "cb-4"
		r := b.do(t, http.MethodPost, "/callbacks/"+cbToken+"/status", `{"message_id":780,"status":4,"sms_message_id":null,"sms_message_status":5}`, "Content-Type", "application/json")
		require.Equal(t, http.StatusOK, r.status)
		require.Equal(t, "confirming", r.json(t)["result"])
		require.True(t, confirming(t, "cb-4"))
	})

	t.Run("MismatchedProviderIDIgnored", func(t *testing.T) {
		b.accepted(t, "cb-5", 781)
		r := b.do(t, http.MethodPost, "/callbacks/"+cbToken+"/status?id=cb-5", `{"message_id":999,"status":1}`, "Content-Type", "application/json")
		require.Equal(t, http.StatusOK, r.status)
		require.Equal(t, "ignored", r.json(t)["result"])
		rec, err := b.store.Get(ctx, "cb-5")
		require.NoError(t, err)
		require.Equal(t, tasks.StateAccepted, rec.State)
	})

	t.Run("UnknownMessageAndPayload", func(t *testing.T) {
		r := b.do(t, http.MethodPost, "/callbacks/"+cbToken+"/status?id=nobody", `{"message_id":1,"status":1}`, "Content-Type", "application/json")
		require.Equal(t, http.StatusOK, r.status)
		require.Equal(t, "unknown_message", r.json(t)["result"])
		r = b.do(t, http.MethodPost, "/callbacks/"+cbToken+"/status", `{"msisdn":"380501234567","weird":true}`, "Content-Type", "application/json")
		require.Equal(t, http.StatusOK, r.status)
		require.Equal(t, "ignored", r.json(t)["result"])
		require.Contains(t, b.logs.String(), "unknown payload")
		require.Contains(t, b.logs.String(), "380*****4567")
	})

	t.Run("TooLarge", func(t *testing.T) {
		r := b.do(t, http.MethodPost, "/callbacks/"+cbToken+"/status", strings.Repeat("x", maxBody+1))
		require.Equal(t, http.StatusRequestEntityTooLarge, r.status)
	})
}

func TestInboundReply(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.accepted(t, "order-7", 100035)
	b.index[100035] = "order-7"

	body := `{"message_token":44444444444444444444,"phone_number":"380501234567","time":1457764197627,
		"message":{"text":"Yes, please","tracking_data":"tracking_id:100035"}}`
	r := b.do(t, http.MethodPost, "/callbacks/"+cbToken+"/inbound", body, "Content-Type", "application/json")
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Equal(t, "stored", r.json(t)["result"])

	msgs, err := b.rdb.XRange(ctx, api.DefaultInboundStream, "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	v := msgs[0].Values
	require.Equal(t, "44444444444444444444", v["message_token"])
	require.Equal(t, phone, v["phone"], "the consumer app needs the number")
	require.Equal(t, "Yes, please", v["text"])
	require.Equal(t, "100035", v["tracking_id"])
	require.Equal(t, "order-7", v["message_id"])
	require.Equal(t, "2016-03-12T06:29:57.627Z", v["time"])

	// The provider repeats the callback: stored once.
	r = b.do(t, http.MethodPost, "/callbacks/"+cbToken+"/inbound", body, "Content-Type", "application/json")
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "duplicate", r.json(t)["result"])

	// A reply sent to the status URL is still a reply; unknown tracking id → no message_id.
	other := `{"message_token":"5","phone_number":380671112233,"time":1457764197,"text":"hi","tracking_data":"tracking_id:1"}`
	r = b.do(t, http.MethodPost, "/callbacks/"+cbToken+"/status", other, "Content-Type", "application/json")
	require.Equal(t, http.StatusOK, r.status)
	msgs, err = b.rdb.XRange(ctx, api.DefaultInboundStream, "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, msgs, 2)
	require.Equal(t, "", msgs[1].Values["message_id"])
	require.Equal(t, "1", msgs[1].Values["tracking_id"])
	require.NotContains(t, b.logs.String(), "380671112233")

	// The page's nesting with an object tracking_data and a time that is no epoch: kept,
	// the unreadable time stored raw with the reason.
	odd := `{"message_token":"6","phone_number":"380671112233","time":"next tuesday","message":{"text":"ok","tracking_data":{"tracking_id":100035}}}`
	r = b.do(t, http.MethodPost, "/callbacks/"+cbToken+"/inbound", odd, "Content-Type", "application/json")
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Equal(t, "stored", r.json(t)["result"])
	msgs, err = b.rdb.XRange(ctx, api.DefaultInboundStream, "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, msgs, 3)
	v = msgs[2].Values
	require.Equal(t, "order-7", v["message_id"])
	require.Equal(t, "", v["time"])
	require.Equal(t, "time: not an epoch number or a date", v[api.InboundUnparsed])
	require.Equal(t, odd, v[api.InboundRaw])
	require.NotContains(t, b.logs.String(), "380671112233")
}

func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Equal(t, http.StatusOK, b.do(t, http.MethodGet, "/healthz", "").status)
	require.Equal(t, http.StatusOK, b.do(t, http.MethodGet, "/readyz", "").status)
	b.mr.Close()
	require.Equal(t, http.StatusServiceUnavailable, b.do(t, http.MethodGet, "/readyz", "").status)
	require.Equal(t, http.StatusOK, b.do(t, http.MethodGet, "/healthz", "").status)
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.post(t, validBody)
	b.do(t, http.MethodPost, "/callbacks/"+cbToken+"/status", `{"message_id":1,"status":1}`, "Content-Type", "application/json")
	r := b.do(t, http.MethodGet, "/metrics", "")
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.body, `viberq_api_requests_total{code="202",route="/v1/messages"} 1`)
	require.Contains(t, r.body, `viberq_callbacks_total{kind="status",result="unknown_message"} 1`)
	require.NotContains(t, r.body, cbToken)
}

func (b *testBundle) monitoring(t *testing.T, path string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.srv.URL+path, nil)
	require.NoError(t, err)
	req.SetBasicAuth(monUser, monPassword)
	resp, err := b.srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return response{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

func TestMonitoring(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.post(t, validBody, "Idempotency-Key", "mon-1")
	require.Equal(t, http.StatusAccepted, r.status)

	r = b.monitoring(t, "/monitoring/")
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, strings.ToLower(r.body), "<html")

	r = b.monitoring(t, "/monitoring")
	require.Equal(t, http.StatusOK, r.status, "plain /monitoring leads to the UI")

	r = b.monitoring(t, "/monitoring/api/queues")
	require.Equal(t, http.StatusOK, r.status, r.body)
	var queues struct {
		Queues []struct {
			Queue string `json:"queue"`
			Size  int    `json:"size"`
		} `json:"queues"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.body), &queues), r.body)
	var names []string
	for _, q := range queues.Queues {
		names = append(names, q.Queue)
	}
	require.Contains(t, names, tasks.QueueCritical)

	r = b.monitoring(t, "/monitoring/api/queues/critical/pending_tasks")
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.NotContains(t, r.body, phone)
	require.Contains(t, r.body, phoneMasked)
	require.Contains(t, r.body, "Your code is 1234", "text is shown")
}

// TestMonitoringResumeCallsHook: resuming a queue in the Asynq UI runs
// Options.QueueResumed (wired by `viberq api` to lift the limiter's 429 pauses);
// pausing does not, nor does a resume the UI refused.
func TestMonitoringResumeCallsHook(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Equal(t, http.StatusAccepted, b.post(t, validBody, "Idempotency-Key", "mon-resume").status)
	send := func(path string) int {
		req, err := http.NewRequest(http.MethodPost, b.srv.URL+path, nil)
		require.NoError(t, err)
		req.SetBasicAuth(monUser, monPassword)
		resp, err := b.srv.Client().Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	resumed := func() []string {
		b.resumedMu.Lock()
		defer b.resumedMu.Unlock()
		return slices.Clone(b.resumed)
	}
	require.Less(t, send("/monitoring/api/queues/critical:pause"), 300)
	require.Empty(t, resumed(), "a pause runs no hook")
	require.Less(t, send("/monitoring/api/queues/critical:resume"), 300)
	require.Equal(t, []string{"critical"}, resumed())
	req, err := http.NewRequest(http.MethodPost, b.srv.URL+"/monitoring/api/queues/critical:resume", nil)
	require.NoError(t, err)
	resp, err := b.srv.Client().Do(req) // no credentials: refused before the UI
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Equal(t, []string{"critical"}, resumed(), "a refused resume runs no hook")
}

func TestFormatPayload(t *testing.T) {
	t.Parallel()
	got := api.FormatPayload(tasks.TypeSend, []byte(`{"v":1,"id":"a","message":{"destination_addr":"380501234567","text":"<b>hi</b>","callback_url":"https://u:p@cb.example.com/callbacks/status/`+cbToken+`?id=a"},"extra":{"phone":380671112233}}`))
	require.NotContains(t, got, phone)
	require.NotContains(t, got, "380671112233")
	require.NotContains(t, got, cbToken)
	require.Contains(t, got, phoneMasked)
	require.Contains(t, got, "<b>hi</b>")
	require.Contains(t, got, `"callback_url":"[REDACTED]"`)
	require.Equal(t, "<5 bytes>", api.FormatPayload("x", []byte{0xff, 0, 1, 2, 3}))
	require.Equal(t, "<8 bytes>", api.FormatPayload("x", []byte("not json")))
	require.Equal(t, "sent to 380*****4567", api.FormatResult("x", []byte("sent to 380501234567")))
}

func TestServeGracefulShutdown(t *testing.T) {
	t.Parallel()
	_, rdb := redistest.Mini(t)
	store := tasks.NewStore(rdb, tasks.StoreOptions{})
	srv, err := api.New(api.Options{
		Redis: rdb, Records: store,
		Enqueuer:        tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), store, tasks.EnqueuerConfig{}),
		Gatherer:        prometheus.NewRegistry(),
		ShutdownTimeout: 2 * time.Second,
		Logger:          zerolog.Nop(),
	})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()

	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	_, err = http.Get("http://" + ln.Addr().String() + "/healthz")
	require.Error(t, err, "the listener is closed")
}

func TestNewRequiresDependencies(t *testing.T) {
	t.Parallel()
	_, err := api.New(api.Options{})
	require.ErrorContains(t, err, "Redis")
	require.ErrorContains(t, err, "Enqueuer")
	require.ErrorContains(t, err, "Records")
}
