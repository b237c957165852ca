package api

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
)

// IdempotencyHeader carries the idempotency key (the message ID) of a POST.
const IdempotencyHeader = "Idempotency-Key"

// acceptedBody is the 202 answer of POST /v1/messages.
type acceptedBody struct {
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate"`
	Queue     string `json:"queue"`
	State     string `json:"state"`
	ExpiresAt string `json:"expires_at"`
	// SendAt is the scheduled time of a message with send_at, absent otherwise.
	SendAt string `json:"send_at,omitempty"`
}

// postMessage is POST /v1/messages: the JSON document of tasks.DecodeJSON, the
// idempotency key from the Idempotency-Key header or the "id" field.
func (s *Server) postMessage(w http.ResponseWriter, r *http.Request) {
	if !isJSON(r.Header.Get("Content-Type")) {
		w.Header().Set("Accept", "application/json")
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	req, err := tasks.DecodeJSON(body)
	var de *tasks.DecodeError
	if errors.As(err, &de) {
		writeError(w, http.StatusBadRequest, de.Error(), toFields(tasks.Reasons(de))...)
		return
	}
	var typeErrs *provider.ValidationError
	if errors.As(err, &typeErrs) {
		typeErrs = &provider.ValidationError{Fields: typeErrs.Fields}
	}
	if key, given, rule := idempotencyKey(r); given {
		var fe *provider.FieldError
		switch {
		case rule != "":
			// Taken for no key at all, an empty header would make every retry a new
			// message.
			fe = &provider.FieldError{Field: IdempotencyHeader, Rule: rule}
		case req.ID == "":
			req.ID = key
			if r := tasks.IDRule(key); r != "" && typeErrs != nil {
				// The decoder checked the body's id, not the header's: check it now, as
				// Enqueue would (a bad key is an id fault, as in the body).
				typeErrs.Fields = append([]provider.FieldError{{Field: "id", Rule: r}}, typeErrs.Fields...)
			}
		case req.ID != key:
			fe = &provider.FieldError{Field: "id", Rule: "differs from the " + IdempotencyHeader + " header"}
		}
		if fe != nil {
			if typeErrs == nil {
				// The decoder found no other fault; list the request's own too, so that
				// one refusal names every bad field.
				typeErrs = &provider.ValidationError{Fields: tasks.RequestFaults(req)}
			}
			typeErrs.Fields = append([]provider.FieldError{*fe}, typeErrs.Fields...)
		}
	}
	if typeErrs != nil {
		writeError(w, http.StatusUnprocessableEntity, "invalid message", toFields(typeErrs.Fields)...)
		return
	}

	res, err := s.opts.Enqueuer.Enqueue(r.Context(), req)
	var ve *provider.ValidationError
	switch {
	case errors.As(err, &ve):
		writeError(w, http.StatusUnprocessableEntity, "invalid message", toFields(ve.Fields)...)
		return
	case errors.Is(err, tasks.ErrIdempotencyConflict):
		writeError(w, http.StatusConflict, tasks.ConflictText(err))
		return
	case err != nil:
		s.opts.Logger.Error().Err(err).Str("msg_id", provider.MaskID(req.ID)).Msg("enqueue failed")
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "cannot enqueue now, retry")
		return
	}
	s.opts.Logger.Info().Str("msg_id", provider.MaskID(res.ID)).Bool("duplicate", res.Duplicate).Str("queue", res.Queue).
		Str("dest", provider.MaskPhone(req.Message.DestinationAddr)).Msg("message accepted")
	w.Header().Set("Location", "/v1/messages/"+url.PathEscape(res.ID))
	ans := acceptedBody{
		ID: res.ID, Duplicate: res.Duplicate, Queue: res.Queue, State: string(res.State),
		ExpiresAt: res.ExpiresAt.UTC().Format(timeLayout),
	}
	if !res.SendAt.IsZero() {
		ans.SendAt = res.SendAt.UTC().Format(timeLayout)
	}
	writeJSON(w, http.StatusAccepted, ans)
}

// idempotencyKey returns the Idempotency-Key header, if given, or the rule it breaks:
// it must be given once and not be empty (an unset shell variable, say).
func idempotencyKey(r *http.Request) (key string, given bool, rule string) {
	vs, ok := r.Header[http.CanonicalHeaderKey(IdempotencyHeader)]
	switch {
	case !ok || len(vs) == 0:
		return "", false, ""
	case len(vs) > 1:
		return "", true, "given more than once"
	}
	key = strings.TrimSpace(vs[0])
	if key == "" {
		return "", true, "must not be empty: give a key, or leave the header out"
	}
	return key, true, ""
}

// getMessage is GET /v1/messages/{id}: the record's status JSON.
func (s *Server) getMessage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !tasks.ValidID(id) {
		writeError(w, http.StatusNotFound, "no such message")
		return
	}
	rec, err := s.opts.Records.Get(r.Context(), id)
	switch {
	case errors.Is(err, tasks.ErrNotFound):
		writeError(w, http.StatusNotFound, "no such message")
		return
	case err != nil:
		s.opts.Logger.Error().Err(err).Str("msg_id", provider.MaskID(id)).Msg("read record failed")
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "cannot read the record now, retry")
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(rec.JSON(), '\n'))
}

// isJSON accepts application/json and any application/*+json media type.
func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

func toFields(fs []provider.FieldError) []fieldError {
	out := make([]fieldError, len(fs))
	for i, f := range fs {
		out[i] = fieldError{Field: f.Field, Rule: f.Rule}
	}
	return out
}

func byteCount(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// readBody reads a request body up to VIBERQ_MAX_BODY_BYTES. On failure it has
// answered (413 over the limit, 400 otherwise) and returns false.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "body larger than the limit of "+byteCount(mbe.Limit))
			return nil, false
		}
		writeError(w, http.StatusBadRequest, "cannot read the body")
		return nil, false
	}
	return body, true
}
