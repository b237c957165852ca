package api_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/worker/api"
)

// The contract test: real answers of the running server (miniredis behind it) are
// validated against the embedded OpenAPI document with kin-openapi, and every
// operation of the document must be exercised. kin-openapi v0.153.0 validates
// OpenAPI 3.1 documents with a JSON Schema 2020-12 validator (type arrays with
// "null", const, anyOf), which openapi3filter switches on for 3.1 documents.

// textDecoders: kin-openapi decodes text/plain answers but not the UI's HTML or
// the document's own YAML; both are plain text to the schemas here.
var textDecoders sync.Once

// loadSpec parses and validates the embedded document.
func loadSpec(t *testing.T) (*openapi3.T, routers.Router) {
	t.Helper()
	textDecoders.Do(func() {
		text := func(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
			b, err := io.ReadAll(body)
			return string(b), err
		}
		openapi3filter.RegisterBodyDecoder("text/html", text)
		openapi3filter.RegisterBodyDecoder("application/yaml", text)
	})
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.OpenAPI)
	require.NoError(t, err)
	require.True(t, doc.IsOpenAPI31OrLater())
	require.NoError(t, doc.Validate(loader.Context))
	router, err := gorillamux.NewRouter(doc)
	require.NoError(t, err)
	return doc, router
}

// contract sends requests through a testBundle and validates each answer.
type contract struct {
	b       *testBundle
	router  routers.Router
	mu      sync.Mutex
	covered map[string][]int // "METHOD /path/template" → statuses seen
}

// call sends the request and validates the answer (and, when validRequest, the
// request too) against the document.
func (c *contract) call(t *testing.T, validRequest bool, method, path, body string, hdr ...string) response {
	t.Helper()
	r := c.b.do(t, method, path, body, hdr...)
	in := c.requestInput(t, method, path, body, hdr...)
	ctx := context.Background()
	if validRequest {
		require.NoError(t, openapi3filter.ValidateRequest(ctx, in), "request %s %s: %s", method, path, body)
	}
	err := openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: r.status, Header: r.header,
		Body:    io.NopCloser(strings.NewReader(r.body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	})
	require.NoError(t, err, "answer %d to %s %s: %s", r.status, method, path, r.body)

	c.mu.Lock()
	key := method + " " + in.Route.Path
	c.covered[key] = append(c.covered[key], r.status)
	c.mu.Unlock()
	return r
}

func TestOpenAPIContract(t *testing.T) {
	t.Parallel()
	doc, router := loadSpec(t)
	b := setup(t)
	c := &contract{b: b, router: router, covered: map[string][]int{}}
	auth := []string{"Authorization", "Bearer " + apiToken, "Content-Type", "application/json"}
	with := func(more ...string) []string { return append(slices.Clone(auth), more...) }

	// POST /v1/messages: every documented answer.
	r := c.call(t, true, http.MethodPost, "/v1/messages", validBody, with("Idempotency-Key", "contract-1")...)
	require.Equal(t, http.StatusAccepted, r.status)
	r = c.call(t, true, http.MethodPost, "/v1/messages", validBody, with("Idempotency-Key", "contract-1")...)
	require.Contains(t, r.body, `"duplicate":true`)
	r = c.call(t, true, http.MethodPost, "/v1/messages",
		`{"source_addr":"Shop","destination_addr":380501234567,"message_type":"106","source_type":1,"text":"Sale","ttl":"2h","webhook_url":"https://app.example.com/hooks","webhook_events":"all"}`, auth...)
	require.Equal(t, http.StatusAccepted, r.status, r.body)
	require.Equal(t, http.StatusConflict, c.call(t, true, http.MethodPost, "/v1/messages",
		strings.Replace(validBody, "Your code", "Their code", 1), with("Idempotency-Key", "contract-1")...).status)
	require.Equal(t, http.StatusBadRequest, c.call(t, false, http.MethodPost, "/v1/messages", `{"text":`, auth...).status)
	require.Equal(t, http.StatusBadRequest, c.call(t, false, http.MethodPost, "/v1/messages", `{"colour":"red"}`, auth...).status)
	require.Equal(t, http.StatusUnauthorized, c.call(t, false, http.MethodPost, "/v1/messages", validBody, "Content-Type", "application/json").status)
	require.Equal(t, http.StatusRequestEntityTooLarge, c.call(t, false, http.MethodPost, "/v1/messages",
		`{"text":"`+strings.Repeat("a", maxBody)+`"}`, auth...).status)
	require.Equal(t, http.StatusForbidden, c.call(t, false, http.MethodPost, "/v1/messages", validBody, with("Sec-Fetch-Site", "cross-site")...).status)
	require.Equal(t, http.StatusForbidden, c.call(t, false, http.MethodPost, "/v1/batches", `{"messages":[{}]}`, with("Sec-Fetch-Site", "cross-site")...).status)
	require.Equal(t, http.StatusUnsupportedMediaType, c.call(t, false, http.MethodPost, "/v1/messages", validBody,
		"Authorization", "Bearer "+apiToken, "Content-Type", "text/plain").status)
	require.Equal(t, http.StatusUnprocessableEntity, c.call(t, false, http.MethodPost, "/v1/messages",
		`{"source_addr":"","destination_addr":"+380","message_type":1,"webhook_url":"ftp://x"}`, auth...).status)

	// GET /v1/messages/{id}: a queued record (nulls), then a final one (numbers).
	require.Equal(t, http.StatusOK, c.call(t, true, http.MethodGet, "/v1/messages/contract-1", "", auth...).status)
	ctx := context.Background()
	_, ok, err := b.store.Transition(ctx, "contract-1", []tasks.State{tasks.StateQueued}, tasks.StateSending, tasks.Update{IncAttempts: true})
	require.NoError(t, err)
	require.True(t, ok)
	_, ok, err = b.store.Transition(ctx, "contract-1", []tasks.State{tasks.StateSending}, tasks.StateAccepted, tasks.Update{ProviderMessageID: 4242})
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, http.StatusNotFound, c.call(t, true, http.MethodGet, "/v1/messages/no-such-id", "", auth...).status)
	require.Equal(t, http.StatusUnauthorized, c.call(t, true, http.MethodGet, "/v1/messages/contract-1", "").status)

	// Callbacks: a status that makes the record final, an unknown payload, a reply,
	// a wrong token, the basic-auth-only route while only a token is configured.
	cb := "/callbacks/" + cbToken + "/status?id=contract-1"
	r = c.call(t, true, http.MethodPost, cb, `{"message_id":4242,"status":0}`, "Content-Type", "application/json")
	require.Contains(t, r.body, `"pending"`)
	r = c.call(t, true, http.MethodPost, cb, `{"message_id":4242,"status":1}`, "Content-Type", "application/json")
	require.Contains(t, r.body, `"confirming"`)
	// A worker's confirming poll makes it final; here the store does.
	_, ok, err = b.store.Transition(ctx, "contract-1", []tasks.State{tasks.StateAccepted}, tasks.StateDelivered, tasks.Update{Channel: tasks.ChannelViber})
	require.NoError(t, err)
	require.True(t, ok)
	r = c.call(t, true, http.MethodPost, cb, `{"message_id":4242,"status":1}`, "Content-Type", "application/json")
	require.Contains(t, r.body, `"final"`)
	require.Equal(t, http.StatusOK, c.call(t, true, http.MethodPost, "/callbacks/"+cbToken+"/status", `{"what":1}`, "Content-Type", "application/json").status)
	r = c.call(t, true, http.MethodPost, "/callbacks/"+cbToken+"/inbound",
		`{"message_token":1,"phone_number":"`+phone+`","time":1700000000000,"message":{"text":"hi","tracking_data":"tracking_id:4242"}}`,
		"Content-Type", "application/json")
	require.Contains(t, r.body, `"stored"`)
	require.Equal(t, http.StatusNotFound, c.call(t, true, http.MethodPost, "/callbacks/wrong-token-0123456789/status", `{}`, "Content-Type", "application/json").status)
	require.Equal(t, http.StatusNotFound, c.call(t, true, http.MethodPost, "/callbacks/status", `{}`, "Content-Type", "application/json").status)
	r = c.call(t, true, http.MethodGet, "/v1/messages/contract-1", "", auth...)
	require.Contains(t, r.body, `"state":"delivered"`)

	// Operations.
	require.Equal(t, http.StatusOK, c.call(t, true, http.MethodGet, "/monitoring/", "", "Authorization", basic(monUser, monPassword)).status)
	require.Equal(t, http.StatusUnauthorized, c.call(t, true, http.MethodGet, "/monitoring/", "").status)
	for _, p := range []string{"/metrics", "/healthz", "/readyz", "/openapi.yaml"} {
		require.Equal(t, http.StatusOK, c.call(t, true, http.MethodGet, p, "").status, p)
	}

	// Batches and cancel.
	sendAt := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	batch := `{"batch_id":"spring","messages":[` +
		`{"id":"b-1","source_addr":"Shop","destination_addr":"380501234567","message_type":106,"source_type":1,"text":"Sale"},` +
		`{"id":"b-2","source_addr":"Shop","destination_addr":"380501234568","message_type":106,"source_type":1,"text":"Sale","send_at":"` + sendAt + `"},` +
		`{"id":"b-3","source_addr":"","destination_addr":"+380","message_type":106,"source_type":1,"text":"Sale"},` +
		`{"id":"b-1","source_addr":"Shop","destination_addr":"380501234567","message_type":106,"source_type":1,"text":"Sale"},` +
		`{"colour":"red"}]}`
	r = c.call(t, false, http.MethodPost, "/v1/batches", batch, auth...) // holds bad messages on purpose
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Contains(t, r.body, `"accepted":2,"duplicates":1,"refused":2,"errors":0`)
	require.Contains(t, r.body, `"send_at":"`)
	require.Equal(t, http.StatusBadRequest, c.call(t, false, http.MethodPost, "/v1/batches", `{"batch":"x","messages":[]}`, auth...).status)
	r = c.call(t, false, http.MethodPost, "/v1/batches", `{"380501234567":1,"messages":[]}`, auth...) // a number as a key: named masked
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Contains(t, r.body, `380*****4567`)
	require.NotContains(t, r.body, "380501234567")
	require.Equal(t, http.StatusUnprocessableEntity, c.call(t, false, http.MethodPost, "/v1/batches", `{"batch_id":"bad id","messages":[]}`, auth...).status)
	// The body is read as strictly as a message: a field given twice (the first
	// "messages" would go unanswered), a value after the object, a field of the wrong
	// type named as ours, not as Go's.
	one := `{"id":"b-9","source_addr":"Shop","destination_addr":"380501234567","message_type":106,"source_type":1,"text":"Sale"}`
	for body, want := range map[string]string{
		`{"messages":[` + one + `],"messages":[` + one + `]}`: `"fields":[{"field":"messages","rule":"given more than once"}]`,
		`{"messages":[` + one + `]}]`:                         `more than one JSON value`,
		`{"batch_id":5,"messages":[` + one + `]}`:             `"fields":[{"field":"batch_id","rule":"must be a string"}]`,
		`{"messages":{"a":1}}`:                                `"fields":[{"field":"messages","rule":"must be an array of messages"}]`,
		``:                                                    `empty body`,
	} {
		r = c.call(t, false, http.MethodPost, "/v1/batches", body, auth...)
		require.Equal(t, http.StatusBadRequest, r.status, body)
		require.Contains(t, r.body, want, body)
		require.NotContains(t, r.body, "api.", body)
		require.NotContains(t, r.body, "RawMessage", body)
	}
	// A refused message's invalid id is not echoed: it is the producer's text, and may
	// hold a number.
	r = c.call(t, false, http.MethodPost, "/v1/batches", `{"messages":[{"id":"+380 50 123 4567!","ttl":"abc","source_addr":"Shop",`+
		`"destination_addr":"380501234567","message_type":106,"source_type":1,"text":"Sale"}]}`, auth...)
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Contains(t, r.body, `"refused":1`)
	require.NotContains(t, r.body, "123 4567")
	require.Equal(t, http.StatusUnsupportedMediaType, c.call(t, false, http.MethodPost, "/v1/batches", batch,
		"Authorization", "Bearer "+apiToken, "Content-Type", "text/csv").status)
	require.Equal(t, http.StatusRequestEntityTooLarge, c.call(t, false, http.MethodPost, "/v1/batches",
		`{"messages":[{"text":"`+strings.Repeat("a", maxBody)+`"}]}`, auth...).status)
	require.Equal(t, http.StatusUnauthorized, c.call(t, false, http.MethodPost, "/v1/batches", batch, "Content-Type", "application/json").status)
	r = c.call(t, true, http.MethodGet, "/v1/batches/spring", "", auth...)
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.body, `"total":2`)
	require.Equal(t, http.StatusNotFound, c.call(t, true, http.MethodGet, "/v1/batches/autumn", "", auth...).status)
	require.Equal(t, http.StatusUnauthorized, c.call(t, true, http.MethodGet, "/v1/batches/spring", "").status)
	r = c.call(t, true, http.MethodPost, "/v1/messages/b-1/cancel", "", auth...)
	require.JSONEq(t, `{"id":"b-1","cancelled":true,"state":"cancelled"}`, r.body)
	r = c.call(t, true, http.MethodPost, "/v1/messages/contract-1/cancel", "", auth...)
	require.JSONEq(t, `{"id":"contract-1","cancelled":false,"state":"delivered"}`, r.body)
	require.Equal(t, http.StatusNotFound, c.call(t, true, http.MethodPost, "/v1/messages/nope/cancel", "", auth...).status)
	require.Equal(t, http.StatusUnauthorized, c.call(t, true, http.MethodPost, "/v1/messages/b-1/cancel", "").status)
	r = c.call(t, true, http.MethodPost, "/v1/batches/spring/cancel", "", auth...)
	require.JSONEq(t, `{"batch_id":"spring","cancelled":1,"not_cancelled":1}`, r.body)
	require.Equal(t, http.StatusNotFound, c.call(t, true, http.MethodPost, "/v1/batches/autumn/cancel", "", auth...).status)
	require.Equal(t, http.StatusUnauthorized, c.call(t, true, http.MethodPost, "/v1/batches/spring/cancel", "").status)
	r = c.call(t, true, http.MethodGet, "/v1/batches/spring", "", auth...)
	require.Contains(t, r.body, `"cancelled":2`)

	// Redis gone: 503 where documented, each with a Retry-After.
	b.mr.Close()
	unavailable := func(r response, what string) {
		t.Helper()
		require.Equal(t, http.StatusServiceUnavailable, r.status, what)
		require.NotEmpty(t, r.header.Get("Retry-After"), what)
	}
	unavailable(c.call(t, true, http.MethodPost, "/v1/messages", withID("contract-2"), auth...), "post message")
	unavailable(c.call(t, true, http.MethodGet, "/v1/messages/contract-1", "", auth...), "get message")
	require.Equal(t, http.StatusServiceUnavailable, c.call(t, true, http.MethodGet, "/readyz", "").status)
	r = c.call(t, true, http.MethodPost, "/v1/batches", `{"messages":[{"id":"late","source_addr":"Shop","destination_addr":"380501234567","message_type":106,"source_type":1,"text":"Sale"}]}`, auth...)
	unavailable(r, "post batch")
	require.Contains(t, r.body, `"result":"error"`)
	unavailable(c.call(t, true, http.MethodGet, "/v1/batches/spring", "", auth...), "get batch")
	unavailable(c.call(t, true, http.MethodPost, "/v1/batches/spring/cancel", "", auth...), "cancel batch")
	unavailable(c.call(t, true, http.MethodPost, "/v1/messages/b-2/cancel", "", auth...), "cancel message")
	require.Equal(t, http.StatusServiceUnavailable, c.call(t, true, http.MethodPost, cb, `{"message_id":4242,"status":1}`, "Content-Type", "application/json").status)

	// Back up, so that go-redis's background redial ends (goleak in TestMain).
	require.NoError(t, b.mr.Restart())

	// Every operation of the document was exercised.
	var missing, seen []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			key := method + " " + path
			if codes, ok := c.covered[key]; ok {
				sort.Ints(codes)
				seen = append(seen, fmt.Sprintf("%s %v", key, slices.Compact(codes)))
			} else {
				missing = append(missing, key)
			}
		}
	}
	sort.Strings(seen)
	t.Logf("exercised:\n%s", strings.Join(seen, "\n"))
	require.Empty(t, missing, "operations of the document no test answer covers")
}

// requestErr validates a request against the document without sending it.
func (c *contract) requestErr(t *testing.T, method, path, body string, hdr ...string) error {
	t.Helper()
	return openapi3filter.ValidateRequest(context.Background(), c.requestInput(t, method, path, body, hdr...))
}

// requestInput is the document's view of a request: its route (which must be in the
// document) and parameters, ready to validate the request or its answer.
func (c *contract) requestInput(t *testing.T, method, path, body string, hdr ...string) *openapi3filter.RequestValidationInput {
	t.Helper()
	req, err := http.NewRequest(method, c.b.srv.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	route, params, err := c.router.FindRoute(req)
	require.NoError(t, err, "%s %s is not in the document", method, path)
	return &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
}

// A JSON null in a request: the document and the server agree field by field. An
// optional field of a message given null is the same as left out: the document allows
// it and the server accepts the message. A field every message needs given null is
// refused both ways: the document does not allow it, and the server answers 422
// naming the field.
func TestOpenAPINulls(t *testing.T) {
	t.Parallel()
	_, router := loadSpec(t)
	b := setup(t)
	c := &contract{b: b, router: router, covered: map[string][]int{}}
	auth := []string{"Authorization", "Bearer " + apiToken, "Content-Type", "application/json"}
	const base = `"source_addr":"Shop","destination_addr":"380501234567","message_type":106,"source_type":2,"text":"Your code is 1234"`

	optional := []string{"id", "ttl", "text_sms", "image", "button_caption", "button_action", "callback_url",
		"validity_period", "webhook_url", "webhook_events", "send_at", "batch_id"}
	all := "{" + base
	for _, f := range optional {
		all += `,"` + f + `":null`
		r := c.call(t, true, http.MethodPost, "/v1/messages", "{"+base+`,"`+f+`":null}`, auth...)
		require.Equal(t, http.StatusAccepted, r.status, "%s: null: %s", f, r.body)
	}
	all += "}"
	r := c.call(t, true, http.MethodPost, "/v1/messages", all, auth...)
	require.Equal(t, http.StatusAccepted, r.status, r.body)
	require.NotContains(t, r.body, `"send_at"`, "a null send_at is no schedule")
	r = c.call(t, true, http.MethodPost, "/v1/batches", `{"batch_id":null,"messages":[`+all+`]}`, auth...)
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Contains(t, r.body, `"accepted":1`)

	for _, f := range []string{"source_addr", "destination_addr", "message_type", "source_type", "text"} {
		body := strings.Replace("{"+base+"}", `"`+f+`":`, `"`+f+`":null,"was":`, 1)
		body = regexp.MustCompile(`,"was":("[^"]*"|[0-9]+)`).ReplaceAllString(body, "")
		require.Contains(t, body, `"`+f+`":null`)
		require.Error(t, c.requestErr(t, http.MethodPost, "/v1/messages", body, auth...), "the document allows %s: null", f)
		r := c.call(t, false, http.MethodPost, "/v1/messages", body, auth...)
		require.Equal(t, http.StatusUnprocessableEntity, r.status, "%s: null: %s", f, r.body)
		require.Contains(t, r.body, `{"field":"`+f+`","rule":`, "%s: null", f)
	}
}

func basic(user, pass string) string {
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth(user, pass)
	return req.Header.Get("Authorization")
}

// The validation is live: a wrong answer fails it (a null where the document allows
// none, an unknown field, a wrong type in a 3.1 type array).
func TestOpenAPIValidationRejects(t *testing.T) {
	t.Parallel()
	doc, _ := loadSpec(t)
	accepted := doc.Components.Schemas["Accepted"].Value
	record := doc.Components.Schemas["Record"].Value
	opt := openapi3.EnableJSONSchema2020()
	ok := map[string]any{"id": "a", "duplicate": false, "queue": "critical", "state": "queued", "expires_at": "2026-11-05T10:01:30.000Z"}
	require.NoError(t, accepted.VisitJSON(ok, opt))
	for _, bad := range []map[string]any{
		{"id": "a", "duplicate": false, "queue": "critical", "state": "queued", "expires_at": nil},
		{"id": "a", "duplicate": false, "queue": "critical", "state": "queued", "expires_at": "x", "extra": 1},
		{"id": "a", "duplicate": "no", "queue": "critical", "state": "queued", "expires_at": "2026-11-05T10:01:30.000Z"},
		{"id": "a", "duplicate": false, "queue": "critical", "state": "sent", "expires_at": "2026-11-05T10:01:30.000Z"},
	} {
		require.Error(t, accepted.VisitJSON(bad, opt), "%v", bad)
	}
	require.Error(t, record.VisitJSON(map[string]any{"id": "a", "sms_status": "2"}, opt))
}

// readmeAnnotation marks a README code block as an example of the document:
// <!-- openapi: METHOD /path STATUS --> before a ```json block validates it as that
// answer, <!-- openapi: METHOD /path request --> as that request body.
var readmeAnnotation = regexp.MustCompile("(?s)<!-- openapi: ([A-Z]+) (\\S+) (request|[0-9]{3}) -->\\s*```json\\n(.*?)```")

// curlExample finds the README's curl calls with a JSON body to the API.
var curlExample = regexp.MustCompile(`(?s)curl -sS -X (POST|PUT) http://localhost:8080(/v1/\S+).*?-d '(.*?)'`)

// The README's examples are the document's: every annotated JSON block and every
// curl body validates against it.
func TestREADMEExamplesMatchOpenAPI(t *testing.T) {
	t.Parallel()
	_, router := loadSpec(t)
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	ctx := context.Background()
	find := func(method, path string) (*routers.Route, map[string]string) {
		req, err := http.NewRequest(method, "http://localhost:8080"+path, nil)
		require.NoError(t, err)
		route, params, err := router.FindRoute(req)
		require.NoError(t, err, "%s %s", method, path)
		return route, params
	}
	n := 0
	for _, m := range readmeAnnotation.FindAllSubmatch(readme, -1) {
		method, path, what, body := string(m[1]), string(m[2]), string(m[3]), m[4]
		route, params := find(method, path)
		req, _ := http.NewRequest(method, "http://localhost:8080"+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
		if what == "request" {
			require.NoError(t, openapi3filter.ValidateRequest(ctx, in), "README request example for %s %s", method, path)
		} else {
			var status int
			_, _ = fmt.Sscan(what, &status)
			err := openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
				RequestValidationInput: in, Status: status,
				Header:  http.Header{"Content-Type": {"application/json"}},
				Body:    io.NopCloser(bytes.NewReader(body)),
				Options: &openapi3filter.Options{IncludeResponseStatus: true},
			})
			require.NoError(t, err, "README example of the %d answer to %s %s", status, method, path)
		}
		n++
	}
	for _, m := range curlExample.FindAllSubmatch(readme, -1) {
		method, path, body := string(m[1]), string(m[2]), m[3]
		route, params := find(method, path)
		req, _ := http.NewRequest(method, "http://localhost:8080"+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		require.NoError(t, openapi3filter.ValidateRequest(ctx, &openapi3filter.RequestValidationInput{
			Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		}), "README curl body for %s %s: %s", method, path, body)
		n++
	}
	require.GreaterOrEqual(t, n, 9, "the README's API examples were not found")
}
