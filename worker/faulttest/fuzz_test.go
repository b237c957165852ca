package faulttest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/worker/api"
)

// Fuzz targets for the decoders of producer input that package provider does not
// cover: the outbox/HTTP message document, task payloads, and the HTTP API's two
// entrances end to end. CI runs each for a few seconds (.ci/run).

var longDigits = regexp.MustCompile(`[0-9]{7,}`)

// noValueQuoted fails when an error text repeats a long digit run (a phone number)
// of the input: the decoders promise never to quote values.
func noValueQuoted(t *testing.T, input []byte, err error) {
	if err == nil {
		return
	}
	msg := err.Error()
	for _, d := range longDigits.FindAll(input, -1) {
		if strings.Contains(msg, string(d)) {
			t.Fatalf("error quotes the input's digits %q: %s", d, msg)
		}
	}
}

// FuzzFaultOutboxDecode: DecodeJSON and DecodeFields never panic, fail only with
// the documented error types (with field and rule), never quote a phone number, and
// what they accept is what the Enqueuer validates.
func FuzzFaultOutboxDecode(f *testing.F) {
	f.Add([]byte(`{"id":"o-1","source_addr":"Shop","destination_addr":"380501234567","message_type":106,"source_type":2,"text":"hi","text_sms":"x","ttl":"90s"}`), "destination_addr", "380501234567")
	f.Add([]byte(`{"destination_addr":380501234567,"message_type":"106","ttl":90}`), "ttl", "1e9")
	f.Add([]byte(`{"message_type":1.5,"source_type":null,"x":1}`), "message", `{"text":`)
	f.Add([]byte(`[]`), "validity_period", "-1")
	f.Add([]byte(`{"text":"\ud800"}`), "id", "a/b")
	f.Fuzz(func(t *testing.T, doc []byte, key, value string) {
		check := func(req tasks.EnqueueRequest, err error, input []byte) {
			var (
				de *tasks.DecodeError
				ve *provider.ValidationError
			)
			switch {
			case err == nil:
				// Accepted by the decoder: the Enqueuer's own validation decides next;
				// it must not panic either.
				_ = req.Message.Validate()
			case errors.As(err, &de):
				if len(tasks.Reasons(err)) == 0 {
					t.Fatalf("DecodeError without reasons: %v", err)
				}
			case errors.As(err, &ve):
				for _, fe := range ve.Fields {
					if fe.Field == "" || fe.Rule == "" {
						t.Fatalf("field error without field or rule: %v", ve.Fields)
					}
				}
			default:
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			if !tasks.Permanent(err) && err != nil {
				t.Fatalf("decode error not permanent: %v", err)
			}
			if de == nil || len(de.Unknown) == 0 { // unknown field names are quoted, by design
				noValueQuoted(t, input, err)
			}
		}
		req, err := tasks.DecodeJSON(doc)
		check(req, err, doc)
		req, err = tasks.DecodeFields(map[string]any{key: value})
		check(req, err, []byte(value))
		req, err = tasks.DecodeFields(map[string]any{"message": string(doc), key: value})
		check(req, err, append(append([]byte{}, doc...), value...))
	})
}

// FuzzFaultTaskPayload: tasks.Decode never panics, every error wraps ErrBadPayload
// (so the worker archives at once), and what it accepts survives a round trip.
func FuzzFaultTaskPayload(f *testing.F) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	send, _ := json.Marshal(tasks.SendArgs{V: 1, ID: "m-1", Message: validMsg(), ExpiresAt: now.Add(time.Hour), EnqueuedAt: now})
	poll, _ := json.Marshal(tasks.PollArgs{V: 1, ID: "m-1", ProviderMessageID: 100001, HasSMS: true, AcceptedAt: now, ExpiresAt: now.Add(time.Hour)})
	f.Add(send)
	f.Add(poll)
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`{"v":1,"id":"x","provider_message_id":"12","poll":-1}`))
	f.Add([]byte{0xff, 0x00})
	f.Fuzz(func(t *testing.T, payload []byte) {
		if a, err := tasks.Decode[tasks.SendArgs](asynq.NewTask(tasks.TypeSend, payload)); err != nil {
			if !errors.Is(err, tasks.ErrBadPayload) {
				t.Fatalf("send decode error without ErrBadPayload: %v", err)
			}
		} else {
			task, err := tasks.NewSendTask(a)
			if err != nil {
				t.Fatalf("decoded send args do not re-encode: %v", err)
			}
			b, err := tasks.Decode[tasks.SendArgs](task)
			if err != nil || b.ID != a.ID || !b.ExpiresAt.Equal(a.ExpiresAt) || b.Message != a.Message {
				t.Fatalf("send round trip: %+v → %+v (%v)", a, b, err)
			}
		}
		if a, err := tasks.Decode[tasks.PollArgs](asynq.NewTask(tasks.TypePoll, payload)); err != nil {
			if !errors.Is(err, tasks.ErrBadPayload) {
				t.Fatalf("poll decode error without ErrBadPayload: %v", err)
			}
		} else if a.ID == "" || a.ProviderMessageID <= 0 || a.Poll < 0 {
			t.Fatalf("accepted an incomplete poll payload: %+v", a)
		}
		// A payload under a type it does not belong to is always refused.
		if _, err := tasks.Decode[tasks.SendArgs](asynq.NewTask(tasks.TypePoll, payload)); !errors.Is(err, tasks.ErrBadPayload) {
			t.Fatalf("send args decoded from a poll task: %v", err)
		}
	})
}

// FuzzFaultAPIRequests: any body and Content-Type to POST /v1/messages and to the
// status callback gets a 2xx/4xx JSON answer, never a 5xx or a crash, and never
// echoes a phone number of the input.
func FuzzFaultAPIRequests(f *testing.F) {
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		f.Fatal(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	store := tasks.NewStore(rdb, tasks.StoreOptions{})
	client := asynq.NewClientFromRedisClient(rdb)
	enq := tasks.NewEnqueuer(client, store, tasks.EnqueuerConfig{})
	srv, err := api.New(api.Options{
		Tokens:             []string{apiTok},
		MonitoringUser:     "admin",
		MonitoringPassword: monPass,
		MaxBodyBytes:       maxBody,
		CallbackToken:      cbTok,
		Redis:              rdb,
		Enqueuer:           enq,
		Records:            store,
		Status:             tasks.CallbackApplier{Store: store, Client: client},
		Monitoring:         http.NotFoundHandler(),
		Logger:             zerolog.Nop(),
	})
	if err != nil {
		f.Fatal(err)
	}
	h := srv.Handler()
	f.Add([]byte(jsonMsg("")), "application/json")
	f.Add([]byte(jsonMsg(`"id":"f-1","ttl":"7h"`)), "application/json; charset=utf-8")
	f.Add([]byte(`{"message_id":100001,"status":1,"sms_message_id":"5","sms_message_status":2}`), "application/json")
	f.Add([]byte(`message_id=1&status=2`), "application/x-www-form-urlencoded")
	f.Add([]byte(`{"message_token":"1","phone_number":"380501234567","time":1700000000000,"message":{"text":"hi"}}`), "application/json")
	f.Add([]byte("\x00\xff"), "text/plain")
	f.Fuzz(func(t *testing.T, body []byte, ctype string) {
		if len(body) > 2*maxBody {
			return
		}
		for _, target := range []struct{ path, auth string }{
			{"/v1/messages", "Bearer " + apiTok},
			{"/callbacks/status/" + cbTok + "?id=f-1", ""},
		} {
			req := httptest.NewRequest(http.MethodPost, target.path, bytes.NewReader(body))
			req.Header.Set("Content-Type", ctype)
			if target.auth != "" {
				req.Header.Set("Authorization", target.auth)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req.WithContext(context.Background()))
			if rec.Code >= 500 {
				t.Fatalf("POST %s: HTTP %d: %s", target.path, rec.Code, rec.Body.Bytes())
			}
			if !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("POST %s: answer is not JSON: %q", target.path, rec.Body.Bytes())
			}
			if rec.Code/100 == 2 {
				continue // a 202 names the producer's own id; errors must quote nothing
			}
			for _, d := range longDigits.FindAll(body, -1) {
				if len(d) >= 10 && bytes.Contains(rec.Body.Bytes(), d) {
					t.Fatalf("POST %s: answer echoes %q", target.path, d)
				}
			}
		}
	})
}
