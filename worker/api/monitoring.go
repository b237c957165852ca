package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/hibiken/asynqmon"
	"github.com/redis/go-redis/v9"

	"github.com/viberq/viberq/provider"
)

// MonitoringPath is where the Asynq web UI is mounted.
const MonitoringPath = "/monitoring"

// redacted replaces credentials in the UI.
const redacted = "[REDACTED]"

// NewMonitoring returns the Asynq web UI (asynqmon v0.7.2) rooted at MonitoringPath,
// on the shared Redis client rdb, with task payloads and results masked
// (FormatPayload, FormatResult). It has no authentication of its own: the Server puts
// basic auth in front of it. The returned handler must not be closed (asynqmon's Close
// would close rdb, which its owner closes).
func NewMonitoring(rdb redis.UniversalClient) http.Handler {
	return asynqmon.New(asynqmon.Options{
		RootPath:         MonitoringPath,
		RedisConnOpt:     sharedRedis{rdb},
		PayloadFormatter: asynqmon.PayloadFormatterFunc(FormatPayload),
		ResultFormatter:  asynqmon.ResultFormatterFunc(FormatResult),
	})
}

// sharedRedis hands an existing client to asynqmon (asynq.RedisConnOpt). A plain
// *redis.Client stays one, so asynqmon's Redis info page works.
type sharedRedis struct{ c redis.UniversalClient }

func (s sharedRedis) MakeRedisClient() any { return s.c }

// FormatPayload renders a task payload for the UI: JSON with every phone number
// (destination_addr, phone, phone_number) masked by provider.MaskPhone and credentials
// (callback_url, and keys naming a password, secret, token or key) replaced by
// [REDACTED]; anything that is not JSON shows as "<n bytes>".
func FormatPayload(_ string, payload []byte) string {
	if out, ok := maskJSON(payload); ok {
		return out
	}
	return "<" + strconv.Itoa(len(payload)) + " bytes>"
}

// FormatResult renders a task result like FormatPayload; printable non-JSON text is
// shown with every phone-like run masked (provider.MaskPhones).
func FormatResult(_ string, result []byte) string {
	if len(result) == 0 {
		return ""
	}
	if out, ok := maskJSON(result); ok {
		return out
	}
	if utf8.Valid(result) && printable(string(result)) {
		return provider.MaskPhones(string(result))
	}
	return "<" + strconv.Itoa(len(result)) + " bytes>"
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 && r != '\n' && r != '\t' && r != '\r' {
			return false
		}
	}
	return true
}

// maskJSON masks a JSON document; ok=false when b is not JSON.
func maskJSON(b []byte) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return "", false
	}
	v = maskValue("", v)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", false
	}
	return strings.TrimSuffix(buf.String(), "\n"), true
}

// maskValue walks a decoded JSON value; key is the object key it sits under.
func maskValue(key string, v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = maskValue(k, e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = maskValue(key, e)
		}
		return x
	case string:
		switch {
		case isPhoneKey(key):
			return provider.MaskPhone(x)
		case isSecretKey(key) && x != "":
			return redacted
		}
		return x
	case json.Number:
		if isPhoneKey(key) {
			return provider.MaskPhone(x.String())
		}
		return x
	}
	return v
}

func isPhoneKey(k string) bool {
	k = strings.ToLower(k)
	return k == "destination_addr" || k == "phone" || k == "phone_number" || k == "msisdn"
}

func isSecretKey(k string) bool {
	k = strings.ToLower(k)
	if k == "callback_url" || k == "webhook_url" || k == "authorization" {
		return true
	}
	for _, w := range []string{"password", "secret", "token", "api_key", "apikey", "access_key"} {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

// onQueueResumed calls Options.QueueResumed after the UI resumed a queue (asynqmon's
// POST {MonitoringPath}/api/queues/{queue}:resume answered 2xx). A failure of the
// hook is logged; the UI's answer stands (the queue is resumed either way).
func (s *Server) onQueueResumed(next http.Handler) http.Handler {
	if s.opts.QueueResumed == nil {
		return next
	}
	prefix := MonitoringPath + "/api/queues/"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.Path, prefix)
		queue, resume := strings.CutSuffix(rest, ":resume")
		if !ok || !resume || r.Method != http.MethodPost || queue == "" || strings.Contains(queue, "/") {
			next.ServeHTTP(w, r)
			return
		}
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status != 0 && (sw.status < 200 || sw.status > 299) {
			return
		}
		if err := s.opts.QueueResumed(r.Context(), queue); err != nil {
			s.opts.Logger.Error().Err(err).Str("queue", queue).Msg("queue resumed in the UI: lifting the limiter's pauses failed")
			return
		}
		s.opts.Logger.Info().Str("queue", queue).Msg("queue resumed in the UI; the limiter's 429 pauses are lifted")
	})
}
