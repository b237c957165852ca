package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
)

// MaxBatchMessages is the most messages one POST /v1/batches takes. A campaign of
// more is several POSTs under the same batch_id (each message keeps its id, so a
// retried POST is harmless).
const MaxBatchMessages = 10_000

// BatchEnqueuer enqueues many messages in pipelined round trips: *tasks.Enqueuer.
type BatchEnqueuer interface {
	EnqueueBatch(ctx context.Context, reqs []tasks.EnqueueRequest) ([]tasks.BatchResult, error)
}

// Canceller stops messages that have not been sent: *tasks.Enqueuer.
type Canceller interface {
	Cancel(ctx context.Context, id string) (cancelled bool, state tasks.State, err error)
	CancelBatch(ctx context.Context, id string) (tasks.CancelResult, error)
}

// BatchCounter counts the messages of a batch by state and channel: *tasks.Store.
type BatchCounter interface {
	BatchCounts(ctx context.Context, id string) (tasks.BatchCounts, error)
}

// batchRequest is the body of POST /v1/batches.
type batchRequest struct {
	BatchID  string            `json:"batch_id"`
	Messages []json.RawMessage `json:"messages"`
}

// batchItem is the answer for one message of a batch.
type batchItem struct {
	Index     int          `json:"index"`
	ID        string       `json:"id,omitempty"`
	Result    string       `json:"result"` // accepted, duplicate, refused, error
	Queue     string       `json:"queue,omitempty"`
	State     string       `json:"state,omitempty"`
	ExpiresAt string       `json:"expires_at,omitempty"`
	SendAt    string       `json:"send_at,omitempty"`
	Error     string       `json:"error,omitempty"`
	Fields    []fieldError `json:"fields,omitempty"`
}

// batchAnswer is the answer of POST /v1/batches.
type batchAnswer struct {
	BatchID    string      `json:"batch_id,omitempty"`
	Accepted   int         `json:"accepted"`
	Duplicates int         `json:"duplicates"`
	Refused    int         `json:"refused"`
	Errors     int         `json:"errors"`
	Results    []batchItem `json:"results"`
}

// postBatch is POST /v1/batches: {"batch_id": optional, "messages": [...]}, each
// message the body of POST /v1/messages (its own id; its batch_id, if any, must be
// the batch's). It answers per message, in order: accepted, duplicate, refused (with
// the fields) or error (Redis failed for it: the answer is then 503, retry with the
// ids given). A refused message never stops the others.
func (s *Server) postBatch(w http.ResponseWriter, r *http.Request) {
	if !isJSON(r.Header.Get("Content-Type")) {
		w.Header().Set("Accept", "application/json")
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	br, problem, field := decodeBatch(body)
	if problem != "" {
		var fields []fieldError
		if field != "" {
			fields = append(fields, fieldError{Field: field, Rule: problem})
			problem = field + " " + problem
		}
		writeError(w, http.StatusBadRequest, "body must be {\"batch_id\": \"...\", \"messages\": [...]}: "+problem, fields...)
		return
	}
	var fields []fieldError
	if br.BatchID != "" && !tasks.ValidID(br.BatchID) {
		fields = append(fields, fieldError{Field: "batch_id", Rule: fmt.Sprintf("must be 1..%d characters of letters, digits and . _ : -", tasks.MaxIDLen)})
	}
	switch n := len(br.Messages); {
	case n == 0:
		fields = append(fields, fieldError{Field: "messages", Rule: "must hold at least one message"})
	case n > MaxBatchMessages:
		fields = append(fields, fieldError{Field: "messages", Rule: fmt.Sprintf("must hold at most %d messages, got %d", MaxBatchMessages, n)})
	}
	if len(fields) > 0 {
		writeError(w, http.StatusUnprocessableEntity, "invalid batch", fields...)
		return
	}

	ans := batchAnswer{BatchID: br.BatchID, Results: make([]batchItem, len(br.Messages))}
	reqs := make([]tasks.EnqueueRequest, 0, len(br.Messages))
	at := make([]int, 0, len(br.Messages))
	for i, raw := range br.Messages {
		ans.Results[i] = batchItem{Index: i}
		req, err := tasks.DecodeJSON(raw)
		if err == nil && br.BatchID != "" {
			switch req.BatchID {
			case "":
				req.BatchID = br.BatchID
			case br.BatchID:
			default:
				err = &provider.ValidationError{Fields: []provider.FieldError{{Field: "batch_id", Rule: "differs from the batch's batch_id"}}}
			}
		}
		if err != nil {
			ans.Results[i] = refusedItem(i, req.ID, err)
			continue
		}
		reqs, at = append(reqs, req), append(at, i)
	}
	results, err := s.batches.EnqueueBatch(r.Context(), reqs)
	for k, res := range results {
		i := at[k]
		switch {
		case res.Err == nil:
			it := batchItem{Index: i, ID: res.ID, Result: "accepted", Queue: res.Queue, State: string(res.State),
				ExpiresAt: res.ExpiresAt.UTC().Format(timeLayout)}
			if res.Duplicate {
				it.Result = "duplicate"
			}
			if !res.SendAt.IsZero() {
				it.SendAt = res.SendAt.UTC().Format(timeLayout)
			}
			ans.Results[i] = it
		case res.Refused():
			ans.Results[i] = refusedItem(i, res.ID, res.Err)
		default:
			ans.Results[i] = batchItem{Index: i, ID: res.ID, Result: "error", Error: "not enqueued now (Redis); retry with this id"}
		}
	}
	for _, it := range ans.Results {
		switch it.Result {
		case "accepted":
			ans.Accepted++
		case "duplicate":
			ans.Duplicates++
		case "refused":
			ans.Refused++
		case "error":
			ans.Errors++
		}
	}
	status := http.StatusOK
	if err != nil && ans.Errors > 0 {
		s.opts.Logger.Error().Err(err).Str("batch_id", provider.MaskID(br.BatchID)).Int("errors", ans.Errors).Msg("batch enqueue failed in part")
		w.Header().Set("Retry-After", "1")
		status = http.StatusServiceUnavailable
	}
	s.opts.Logger.Info().Str("batch_id", provider.MaskID(br.BatchID)).Int("accepted", ans.Accepted).Int("duplicates", ans.Duplicates).
		Int("refused", ans.Refused).Int("errors", ans.Errors).Msg("batch taken")
	writeJSON(w, status, ans)
}

// decodeBatch reads the body of POST /v1/batches strictly, as the messages in it are
// read: one JSON object holding "messages" (an array) and optionally "batch_id" (a
// string), each at most once (encoding/json would keep the last of two "messages"
// and drop the first array unanswered), and nothing after it. It returns the batch,
// or what is wrong and the field it is wrong in ("" for the body as a whole).
func decodeBatch(body []byte) (br batchRequest, problem, field string) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		if err == io.EOF {
			return br, "empty body", ""
		}
		if err != nil {
			return br, jsonProblem(err), ""
		}
		return br, "not a JSON object", ""
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return br, jsonProblem(err), ""
		}
		k, _ := t.(string) // inside an object, a token before a value is its key
		shown := provider.MaskPhones(k)
		if seen[k] {
			return br, "given more than once", shown
		}
		seen[k] = true
		var dst any
		switch k {
		case "batch_id":
			dst = &br.BatchID
		case "messages":
			dst = &br.Messages
		default:
			return br, fmt.Sprintf("unknown field %q", shown), ""
		}
		if err := dec.Decode(dst); err != nil {
			var te *json.UnmarshalTypeError
			switch {
			case !errors.As(err, &te):
				return br, jsonProblem(err), ""
			case k == "messages":
				return br, "must be an array of messages", k
			default:
				return br, "must be a string", k
			}
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return br, jsonProblem(err), ""
	}
	if _, err := dec.Token(); err != io.EOF {
		return br, "more than one JSON value", ""
	}
	return br, "", ""
}

// refusedItem is the answer for a message refused with err (a decode, validation or
// idempotency error). Its id is shown only when it is a valid one: an invalid id is
// the producer's text, refused for what it holds, and may hold anything (a number).
func refusedItem(i int, id string, err error) batchItem {
	if !tasks.ValidID(id) {
		id = ""
	}
	it := batchItem{Index: i, ID: id, Result: "refused"}
	var de *tasks.DecodeError
	var ve *provider.ValidationError
	switch {
	case errors.As(err, &de):
		it.Error = de.Error()
		it.Fields = toFields(tasks.Reasons(de))
	case errors.As(err, &ve):
		it.Error = "invalid message"
		it.Fields = toFields(ve.Fields)
	case errors.Is(err, tasks.ErrIdempotencyConflict):
		it.Error = tasks.ConflictText(err)
	default:
		it.Error = "refused"
	}
	return it
}

// jsonProblem says what is wrong with a body without quoting it.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("%s must be %s", te.Field, te.Type)
	}
	return provider.MaskPhones(err.Error()) // unknown field "x" (masked if phone-like), unexpected EOF
}

// getBatch is GET /v1/batches/{id}: the counts of the batch by state and by delivery
// channel.
func (s *Server) getBatch(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !tasks.ValidID(id) {
		writeError(w, http.StatusNotFound, "no such batch")
		return
	}
	c, err := s.counter.BatchCounts(r.Context(), id)
	switch {
	case errors.Is(err, tasks.ErrNotFound):
		writeError(w, http.StatusNotFound, "no such batch")
		return
	case err != nil:
		s.opts.Logger.Error().Err(err).Str("batch_id", provider.MaskID(id)).Msg("read batch failed")
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "cannot read the batch now, retry")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, c)
}

// cancelBatchAnswer is the answer of POST /v1/batches/{id}/cancel.
type cancelBatchAnswer struct {
	BatchID string `json:"batch_id"`
	tasks.CancelResult
}

// cancelBatch is POST /v1/batches/{id}/cancel: every message of the batch not yet
// sent ends cancelled and is never sent. Repeating it is harmless (it also catches
// messages added to the batch meanwhile).
func (s *Server) cancelBatch(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !tasks.ValidID(id) {
		writeError(w, http.StatusNotFound, "no such batch")
		return
	}
	res, err := s.canceller.CancelBatch(r.Context(), id)
	switch {
	case errors.Is(err, tasks.ErrNotFound):
		writeError(w, http.StatusNotFound, "no such batch")
		return
	case err != nil:
		s.opts.Logger.Error().Err(err).Str("batch_id", provider.MaskID(id)).Int("cancelled", res.Cancelled).Msg("cancel batch failed")
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "cannot cancel the batch now (part of it may be cancelled), retry")
		return
	}
	s.opts.Logger.Info().Str("batch_id", provider.MaskID(id)).Int("cancelled", res.Cancelled).Int("not_cancelled", res.NotCancelled).Msg("batch cancelled")
	writeJSON(w, http.StatusOK, cancelBatchAnswer{BatchID: id, CancelResult: res})
}

// cancelMessageAnswer is the answer of POST /v1/messages/{id}/cancel.
type cancelMessageAnswer struct {
	ID        string `json:"id"`
	Cancelled bool   `json:"cancelled"`
	State     string `json:"state"`
}

// cancelMessage is POST /v1/messages/{id}/cancel: a queued (or scheduled) message
// ends cancelled and is never sent; a message already being sent, sent or final is
// left as it is (cancelled false, and its state).
func (s *Server) cancelMessage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !tasks.ValidID(id) {
		writeError(w, http.StatusNotFound, "no such message")
		return
	}
	ok, state, err := s.canceller.Cancel(r.Context(), id)
	switch {
	case errors.Is(err, tasks.ErrNotFound):
		writeError(w, http.StatusNotFound, "no such message")
		return
	case err != nil:
		s.opts.Logger.Error().Err(err).Str("msg_id", provider.MaskID(id)).Msg("cancel failed")
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "cannot cancel now, retry")
		return
	}
	if ok {
		state = tasks.StateCancelled
	}
	s.opts.Logger.Info().Str("msg_id", provider.MaskID(id)).Bool("cancelled", ok).Str("status", string(state)).Msg("cancel")
	w.Header().Set("Location", "/v1/messages/"+url.PathEscape(id))
	writeJSON(w, http.StatusOK, cancelMessageAnswer{ID: id, Cancelled: ok, State: string(state)})
}
