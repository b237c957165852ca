package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
)

// Callback kinds (the last or first path segment after /callbacks/).
const (
	KindStatus  = "status"
	KindInbound = "inbound"
)

// callbackTimeout bounds the Redis work of one callback: the provider gets its
// answer quickly even when Redis is slow.
const callbackTimeout = 5 * time.Second

// maxLoggedPayload is how much of an unknown status payload is logged.
const maxLoggedPayload = 1024

// callbackAnswer is the body of every callback answer.
type callbackAnswer struct {
	OK     bool   `json:"ok"`
	Result string `json:"result"`
	State  string `json:"state,omitempty"`
}

// callback serves POST /callbacks/{kind}, /callbacks/{token}/{kind} and
// /callbacks/{kind}/{token}. Both kinds tell a two-way reply from a status callback by
// key presence (message_token + phone_number; vendor notes: two-way replies), so one URL registered
// for both works too.
func (s *Server) callback(w http.ResponseWriter, r *http.Request) {
	kind, token, ok := callbackRoute(r.PathValue("a"), r.PathValue("b"))
	if !ok {
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	if !s.callbackAuth(w, r, token) {
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), callbackTimeout)
	defer cancel()
	ct := r.Header.Get("Content-Type")
	if provider.IsReply(body) {
		s.reply(ctx, w, ct, body)
		return
	}
	s.status(ctx, w, r, kind, ct, body)
}

// callbackRoute reads the one or two path segments after /callbacks/.
func callbackRoute(a, b string) (kind, token string, ok bool) {
	isKind := func(s string) bool { return s == KindStatus || s == KindInbound }
	switch {
	case b == "":
		return a, "", isKind(a)
	case isKind(b):
		return b, a, true
	case isKind(a):
		return a, b, true
	}
	return "", "", false
}

// callbackAuth checks what is configured: the secret path token (wrong or missing →
// 404, revealing nothing) and basic auth (→ 401). With neither configured callbacks
// are off (404).
func (s *Server) callbackAuth(w http.ResponseWriter, r *http.Request, token string) bool {
	o := s.opts
	tokenSet := o.CallbackToken != ""
	basicSet := o.CallbackUser != "" || o.CallbackPassword != ""
	switch {
	case !tokenSet && !basicSet:
		writeError(w, http.StatusNotFound, "not found")
		return false
	case s.guard.refuse(w, r):
		return false
	case tokenSet && !secretEqual(o.CallbackToken, token), !tokenSet && token != "":
		s.guard.failed(r, "callback")
		writeError(w, http.StatusNotFound, "not found")
		return false
	}
	if basicSet {
		user, pass, ok := r.BasicAuth()
		userOK := equalString(user, o.CallbackUser)
		passOK := secretEqual(o.CallbackPassword, pass)
		if !ok || !userOK || !passOK {
			if ok {
				s.guard.failed(r, "callback")
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="viberq callbacks", charset="UTF-8"`)
			writeError(w, http.StatusUnauthorized, "authentication required")
			return false
		}
	}
	return true
}

// status handles a status callback: find our message (the "id" query parameter that
// the worker puts in each message's callback_url, else the provider-id index), then
// apply the status through Options.Status (README "Provider callbacks": a callback
// never settles by itself, final statuses get a confirming poll). Unknown payloads and
// messages are logged and answered 200: the provider must not retry what can never
// succeed, and the provider's answer to a poll decides. Only a failure of our own
// (Redis) answers 503.
func (s *Server) status(ctx context.Context, w http.ResponseWriter, r *http.Request, kind, ct string, body []byte) {
	const metric = "status"
	cb, err := provider.ParseStatusCallback(ct, body)
	if err != nil {
		s.metrics.callback(metric, "invalid")
		s.opts.Logger.Warn().Err(err).Str("kind", kind).Str("content_type", ct).
			Str("payload", maskPayload(body)).Msg("status callback: unknown payload, ignored")
		writeJSON(w, http.StatusOK, callbackAnswer{OK: true, Result: "ignored"})
		return
	}
	log := s.opts.Logger.With().Int64("provider_msg_id", int64(cb.MessageID)).Int("status", int(cb.Status)).Logger()
	if cb.SMSStatus != nil {
		log = log.With().Int("sms_status", int(*cb.SMSStatus)).Logger()
	}

	id := r.URL.Query().Get("id")
	if id == "" && s.opts.ProviderIndex != nil {
		found, ok, err := s.opts.ProviderIndex(ctx, cb.MessageID)
		if err != nil {
			s.callbackFailed(w, metric, log, err, "status callback: provider id lookup failed")
			return
		}
		if ok {
			id = found
		}
	}
	if id == "" || !tasks.ValidID(id) {
		s.metrics.callback(metric, "unknown_message")
		log.Warn().Msg("status callback: no message id (callback_url without ?id= and no index entry), ignored")
		writeJSON(w, http.StatusOK, callbackAnswer{OK: true, Result: "unknown_message"})
		return
	}
	log = log.With().Str("msg_id", provider.MaskID(id)).Logger()

	rec, err := s.opts.Records.Get(ctx, id)
	switch {
	case errors.Is(err, tasks.ErrNotFound):
		s.metrics.callback(metric, "unknown_message")
		log.Warn().Msg("status callback: no such message, ignored")
		writeJSON(w, http.StatusOK, callbackAnswer{OK: true, Result: "unknown_message"})
		return
	case err != nil:
		s.callbackFailed(w, metric, log, err, "status callback: read record failed")
		return
	}
	if s.opts.Status == nil {
		s.metrics.callback(metric, "ignored")
		log.Info().Msg("status callback: no status applier configured, left to polling")
		writeJSON(w, http.StatusOK, callbackAnswer{OK: true, Result: "ignored", State: string(rec.State)})
		return
	}
	st := provider.StatusResult{MessageID: cb.MessageID, Status: cb.Status, SMSMessageID: cb.SMSMessageID, SMSStatus: cb.SMSStatus}
	got, err := s.opts.Status.ApplyCallback(ctx, rec, st)
	if err != nil {
		s.callbackFailed(w, metric, log, err, "status callback: apply failed")
		return
	}
	log = log.With().Str("state", string(got.Record.State)).Str("outcome", got.Outcome.String()).Logger()
	switch {
	case got.Skip == tasks.SkipFinal:
		s.metrics.callback(metric, "final")
		log.Info().Msg("status callback: record already final")
		writeJSON(w, http.StatusOK, callbackAnswer{OK: true, Result: "final", State: string(got.Record.State)})
	case got.Skip != "":
		// Another message_id, or a record not accepted yet (the callback overtook
		// the worker's own write of the provider's id): the polls read the status.
		s.metrics.callback(metric, "ignored")
		log.Warn().Str("reason", got.Skip).Msg("status callback ignored, left to polling")
		writeJSON(w, http.StatusOK, callbackAnswer{OK: true, Result: "ignored", State: string(got.Record.State)})
	case got.Confirm:
		s.metrics.callback(metric, "confirming")
		log.Info().Str("dest", rec.DestMasked).Msg("status callback: final statuses, a poll confirms them with the provider")
		writeJSON(w, http.StatusOK, callbackAnswer{OK: true, Result: "confirming", State: string(got.Record.State)})
	default:
		s.metrics.callback(metric, "pending")
		log.Info().Msg("status callback: statuses not final, left to polling")
		writeJSON(w, http.StatusOK, callbackAnswer{OK: true, Result: "pending", State: string(got.Record.State)})
	}
}

func (s *Server) callbackFailed(w http.ResponseWriter, metric string, log zerolog.Logger, err error, msg string) {
	s.metrics.callback(metric, "error")
	log.Error().Err(err).Msg(msg)
	w.Header().Set("Retry-After", "5")
	writeError(w, http.StatusServiceUnavailable, "temporarily unavailable, retry")
}

// Inbound stream entry fields.
const (
	InboundMessageToken = "message_token"
	InboundPhone        = "phone"
	InboundTime         = "time"
	InboundText         = "text"
	InboundTrackingID   = "tracking_id"
	InboundMessageID    = "message_id"
	InboundReceivedAt   = "received_at"
	// InboundUnparsed and InboundRaw are present only when part of the reply could not
	// be read: "field: reason; ..." and the body as received (the reply is kept).
	InboundUnparsed = "unparsed"
	InboundRaw      = "raw"
)

// inboundScript appends a reply to the inbound stream unless its message_token was
// seen within the dedup window.
//
// KEYS[1] stream, KEYS[2] dedup key; ARGV[1] dedup ms, ARGV[2] stream cap, ARGV[3..]
// field/value pairs. Returns the entry ID, or false for a repeat.
var inboundScript = redis.NewScript(`
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then
  return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
end
return false
`)

const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// reply appends a two-way reply to the inbound stream with the ID of the message it
// answers (resolved from tracking_id, the provider's message_id, when an index is
// configured; "" otherwise).
func (s *Server) reply(ctx context.Context, w http.ResponseWriter, ct string, body []byte) {
	const metric = "reply"
	rp, err := provider.ParseReply(ct, body)
	if err != nil {
		s.metrics.callback(metric, "invalid")
		// Replies hold a user's text and phone number: log the shape, not the body.
		s.opts.Logger.Warn().Err(err).Str("content_type", ct).Strs("keys", payloadKeys(body)).
			Msg("reply callback: unusable payload, ignored")
		writeJSON(w, http.StatusOK, callbackAnswer{OK: true, Result: "ignored"})
		return
	}
	log := s.opts.Logger.With().Str("dest", provider.MaskPhone(rp.PhoneNumber)).Str("tracking_id", rp.TrackingID).Logger()
	msgID := ""
	if rp.TrackingID != "" && s.opts.ProviderIndex != nil {
		if pid, perr := provider.ParseMessageID(rp.TrackingID); perr == nil {
			found, ok, err := s.opts.ProviderIndex(ctx, pid)
			if err != nil {
				s.callbackFailed(w, metric, log, err, "reply callback: provider id lookup failed")
				return
			}
			if ok {
				msgID = found
			}
		}
	}
	ts := ""
	if !rp.Time.IsZero() {
		ts = rp.Time.UTC().Format(timeLayout)
	}
	args := []any{
		s.opts.InboundDedupTTL.Milliseconds(), s.opts.InboundMaxLen,
		InboundMessageToken, rp.MessageToken,
		InboundPhone, rp.PhoneNumber,
		InboundTime, ts,
		InboundText, rp.Text,
		InboundTrackingID, rp.TrackingID,
		InboundMessageID, msgID,
		InboundReceivedAt, s.opts.Now().UTC().Format(timeLayout),
	}
	if len(rp.Unparsed) > 0 {
		parts := make([]string, len(rp.Unparsed))
		for i, u := range rp.Unparsed {
			parts[i] = u.Error()
		}
		args = append(args, InboundUnparsed, strings.Join(parts, "; "), InboundRaw, string(rp.Raw))
		log.Warn().Strs("unparsed", parts).Msg("reply callback: kept with unreadable parts (stored raw)")
	}
	keys := []string{s.opts.InboundStream, s.opts.Prefix + "inbound:seen:" + rp.MessageToken}
	res, err := inboundScript.Run(ctx, s.opts.Redis, keys, args...).Result()
	switch {
	case errors.Is(err, redis.Nil):
		s.metrics.callback(metric, "duplicate")
		log.Info().Msg("reply callback: repeated message_token, ignored")
		writeJSON(w, http.StatusOK, callbackAnswer{OK: true, Result: "duplicate"})
		return
	case err != nil:
		s.callbackFailed(w, metric, log, err, "reply callback: store failed")
		return
	}
	s.metrics.callback(metric, "stored")
	entry, _ := res.(string)
	log.Info().Str("msg_id", provider.MaskID(msgID)).Str("entry_id", entry).Msg("reply stored")
	writeJSON(w, http.StatusOK, callbackAnswer{OK: true, Result: "stored"})
}

// maskPayload prepares an unknown payload for the log: every phone-like run masked
// (provider.MaskPhones; long ids suffer too), cut to maxLoggedPayload bytes.
func maskPayload(b []byte) string {
	if len(b) > maxLoggedPayload {
		b = b[:maxLoggedPayload]
	}
	return provider.MaskPhones(strings.ToValidUTF8(string(b), "?"))
}

// payloadKeys lists the top-level keys of a JSON object or form body.
func payloadKeys(b []byte) []string {
	var keys []string
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err == nil {
		for k := range obj {
			keys = append(keys, provider.MaskPhones(k))
		}
	} else if form, err := url.ParseQuery(string(b)); err == nil {
		for k := range form {
			keys = append(keys, provider.MaskPhones(k))
		}
	}
	sort.Strings(keys)
	if len(keys) > 20 {
		keys = keys[:20]
	}
	return keys
}
