package api

import (
	"crypto/subtle"
	"encoding/json"
	"log"
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/viberq/viberq/provider"
)

// errorBody is every error answer: {"error": "...", "fields": [...]}.
type errorBody struct {
	Error  string       `json:"error"`
	Fields []fieldError `json:"fields,omitempty"`
}

type fieldError struct {
	Field string `json:"field"`
	Rule  string `json:"rule"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, msg string, fields ...fieldError) {
	writeJSON(w, status, errorBody{Error: msg, Fields: fields})
}

// bearer requires "Authorization: Bearer <token>" with one of the API tokens. A
// wrong token counts as an authentication failure (authGuard); a missing one does
// not (it is a client that forgot the header, not a guess).
func (s *Server) bearer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.guard.refuse(w, r) {
			return
		}
		tok, ok := bearerToken(r.Header.Get("Authorization"))
		switch {
		case !ok:
			w.Header().Set("WWW-Authenticate", `Bearer realm="viberq"`)
			writeError(w, http.StatusUnauthorized, "missing bearer token")
		case !validToken(s.opts.Tokens, tok):
			s.guard.failed(r, "bearer")
			w.Header().Set("WWW-Authenticate", `Bearer realm="viberq", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "invalid bearer token")
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// bearerToken extracts the token of an "Authorization: Bearer <token>" header.
func bearerToken(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// equalString compares in time independent of where a and b differ.
func equalString(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// secretEqual reports whether v equals the configured secret, in constant time; an
// empty secret (not configured) equals nothing, not even "".
func secretEqual(secret, v string) bool {
	return secret != "" && equalString(secret, v)
}

// validToken reports whether tok is one of tokens, comparing against every one (no
// early exit). An empty tok is never valid.
func validToken(tokens []string, tok string) bool {
	ok := false
	for _, t := range tokens {
		if secretEqual(t, tok) {
			ok = true
		}
	}
	return ok && tok != ""
}

// monitoringAuth puts basic auth (MonitoringUser / MonitoringPassword) in front of
// next. Without a configured password nothing gets in.
func (s *Server) monitoringAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.guard.refuse(w, r) {
			return
		}
		user, pass, ok := r.BasicAuth()
		// Both comparisons always run: no early exit that times the user name.
		userOK := equalString(user, s.opts.MonitoringUser)
		passOK := secretEqual(s.opts.MonitoringPassword, pass)
		if ok && (!userOK || !passOK) {
			s.guard.failed(r, "monitoring")
		}
		if !ok || !userOK || !passOK {
			w.Header().Set("WWW-Authenticate", `Basic realm="viberq monitoring", charset="UTF-8"`)
			writeError(w, http.StatusUnauthorized, "authentication required")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// securityHeaders sets, on every answer, the headers that keep a browser from
// misusing it: no framing by any page (clickjacking of /monitoring: X-Frame-Options
// and CSP frame-ancestors), no content-type sniffing, no Referer leaking a path.
// Only frame-ancestors is set in the CSP, so asynqmon's own scripts and styles load
// as before.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

// refuseCrossOrigin refuses (403) a state-changing request (any method but GET, HEAD
// and OPTIONS) that a browser sent from another origin: Sec-Fetch-Site other than
// same-origin or none, or, from older browsers, an Origin whose host is not the
// request's Host (net/http's CrossOriginProtection). A page on another site can then
// neither pause queues nor delete tasks through /monitoring/api with the browser's
// cached Basic credentials, nor post messages. Requests without those headers
// (curl, producers, the provider's callbacks) are not browser requests and pass.
func refuseCrossOrigin(next http.Handler) http.Handler {
	p := http.NewCrossOriginProtection()
	p.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusForbidden, "cross-origin request refused")
	}))
	return p.Handler(next)
}

// statusWriter records the status code for the request log.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush passes through (asynqmon and promhttp may flush).
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// logRequests writes one line per request: method, route pattern, path (not for
// callbacks, whose path holds the secret token; never the query), status, size and
// duration. Probes and scrapes log at debug level.
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.opts.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		route := routeOf(r)
		s.metrics.request(route, sw.status)
		lvl := zerolog.InfoLevel
		switch {
		case route == "/healthz" || route == "/readyz" || route == "/metrics" || strings.HasPrefix(route, "/monitoring"):
			lvl = zerolog.DebugLevel
		case sw.status >= 500:
			lvl = zerolog.ErrorLevel
		}
		ev := s.opts.Logger.WithLevel(lvl).
			Str("method", r.Method).
			Str("route", route).
			Int("status", sw.status).
			Int("bytes", sw.bytes).
			Int64("duration_ms", s.opts.Now().Sub(start).Milliseconds())
		if !strings.HasPrefix(r.URL.Path, "/callbacks/") {
			// Any path is logged, an unauthenticated one too: phone-like runs masked.
			ev = ev.Str("path", provider.MaskID(r.URL.Path))
		}
		ev.Msg("http request")
	})
}

// routeOf is the matched ServeMux pattern without its method ("/v1/messages/{id}"),
// or "other"; never a path with a secret in it.
func routeOf(r *http.Request) string {
	p := r.Pattern
	if p == "" {
		return "other"
	}
	if _, after, ok := strings.Cut(p, " "); ok {
		p = after
	}
	return p
}

// recoverPanics turns a handler panic into a 500 without logging the request.
func recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler { //nolint:errorlint // sentinel compared as the net/http docs do
					panic(v)
				}
				writeError(w, http.StatusInternalServerError, "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// newStdLogger adapts zerolog to http.Server.ErrorLog (TLS handshake errors and the
// like, which never carry request bodies).
func newStdLogger(l zerolog.Logger) *log.Logger {
	return log.New(zerologWriter{l}, "", 0)
}

type zerologWriter struct{ l zerolog.Logger }

func (z zerologWriter) Write(p []byte) (int, error) {
	z.l.Warn().Str("component", "http.Server").Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}

// apiMetrics are the API's own counters. A nil *apiMetrics records nothing.
type apiMetrics struct {
	requests  *prometheus.CounterVec
	callbacks *prometheus.CounterVec
}

func newAPIMetrics(reg prometheus.Registerer) (*apiMetrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &apiMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "viberq_api_requests_total",
			Help: "HTTP requests to viberq api, by route pattern and status code.",
		}, []string{"route", "code"}),
		callbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "viberq_callbacks_total",
			Help: "Provider callbacks by kind (status, reply) and result (applied, final, ignored, unknown_message, invalid, duplicate, stored, error).",
		}, []string{"kind", "result"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.callbacks} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *apiMetrics) request(route string, code int) {
	if m != nil {
		m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	}
}

func (m *apiMetrics) callback(kind, result string) {
	if m != nil {
		m.callbacks.WithLabelValues(kind, result).Inc()
	}
}
