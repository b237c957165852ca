package api

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
)

// Defaults of Options.
const (
	DefaultInboundStream   = "viberq:inbound"
	DefaultInboundMaxLen   = 100_000
	DefaultInboundDedupTTL = 24 * time.Hour
	DefaultShutdownTimeout = 10 * time.Second
	DefaultReadHeader      = 5 * time.Second
	DefaultIdleTimeout     = 120 * time.Second
	DefaultMaxHeaderBytes  = 64 << 10
	DefaultMaxBodyBytes    = 1 << 20
	DefaultReadTimeout     = 10 * time.Second
	DefaultWriteTimeout    = 30 * time.Second
	// ReadyTimeout bounds the Redis PING of /readyz.
	ReadyTimeout = time.Second
)

// Enqueuer validates and enqueues messages: *tasks.Enqueuer.
type Enqueuer interface {
	Enqueue(ctx context.Context, req tasks.EnqueueRequest) (tasks.EnqueueResult, error)
}

// Records reads message records: *tasks.Store.
type Records interface {
	Get(ctx context.Context, id string) (tasks.Record, error)
}

// StatusApplier applies a status callback to rec, the record of the message it
// names, by the rule polls follow too (tasks.DecideStatus): a callback writes
// nothing and, when a poll would call its statuses final, asks for a confirming
// poll whose provider answer settles the record. *tasks.CallbackApplier in
// production.
type StatusApplier interface {
	ApplyCallback(ctx context.Context, rec tasks.Record, st provider.StatusResult) (tasks.Applied, error)
}

// ProviderIndex finds our message ID from the provider's message_id; ok=false when
// unknown.
type ProviderIndex func(ctx context.Context, pid provider.MessageID) (id string, ok bool, err error)

// Options configures a Server. Redis, Enqueuer and Records are required. Options holds
// credentials in the clear (tokens, passwords): never log or print it.
type Options struct {
	// Tokens are the accepted bearer tokens of /v1; a request's token is compared in
	// constant time against every one. None: every /v1 request gets 401.
	Tokens []string
	// MonitoringUser and MonitoringPassword guard /monitoring with basic auth; without
	// a password nothing gets in.
	MonitoringUser     string
	MonitoringPassword string
	// MaxBodyBytes limits request bodies (DefaultMaxBodyBytes); larger ones get 413.
	MaxBodyBytes int64
	// ReadTimeout and WriteTimeout bound one request (DefaultReadTimeout,
	// DefaultWriteTimeout).
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// CallbackToken, the secret last path segment of the callback endpoints, and/or
	// CallbackUser and CallbackPassword (basic auth) authenticate the provider's
	// callbacks. With neither, the callback endpoints answer 404.
	CallbackToken    string
	CallbackUser     string
	CallbackPassword string
	// Redis serves /readyz, the inbound stream and, unless Monitoring is set, the
	// embedded asynqmon.
	Redis redis.UniversalClient
	// Enqueuer serves POST /v1/messages.
	Enqueuer Enqueuer
	// Records serves GET /v1/messages/{id} and the lookups of status callbacks.
	Records Records
	// Status applies status callbacks. Nil: callbacks are logged and answered, not
	// applied.
	Status StatusApplier
	// ProviderIndex, optional, resolves a provider message_id to our ID, for status
	// callbacks without our "id" query parameter and for replies (tracking_id).
	ProviderIndex ProviderIndex
	// Gatherer serves /metrics (prometheus.DefaultGatherer when nil).
	Gatherer prometheus.Gatherer
	// Registerer, optional, receives the API's own metrics (viberq_api_requests_total,
	// viberq_callbacks_total).
	Registerer prometheus.Registerer
	// Monitoring is the handler mounted at /monitoring behind basic auth; nil builds
	// asynqmon on Redis (NewMonitoring).
	Monitoring http.Handler
	// QueueResumed, optional, runs after an operator resumed a queue in the Asynq UI
	// (a 2xx answer to POST /monitoring/api/queues/{queue}:resume): the command wires
	// it to lift the global limiter's 429 pauses, as `viberq resume` does (README,
	// Error policy: the operator's resume clears a pause).
	QueueResumed func(ctx context.Context, queue string) error
	// Logger receives one line per request and the callback outcomes.
	Logger zerolog.Logger
	// InboundStream receives two-way replies (DefaultInboundStream), capped near
	// InboundMaxLen (DefaultInboundMaxLen). A reply's message_token is remembered for
	// InboundDedupTTL (DefaultInboundDedupTTL) so that a callback the provider
	// repeats lands once; Prefix ("viberq:") prefixes that key.
	InboundStream   string
	InboundMaxLen   int64
	InboundDedupTTL time.Duration
	Prefix          string
	// ShutdownTimeout bounds the graceful shutdown (DefaultShutdownTimeout).
	ShutdownTimeout time.Duration
	// AuthFailures is the policy against credential guessing (zero fields take the
	// Default* values; see AuthFailures).
	AuthFailures AuthFailures
	// Now is the clock (time.Now).
	Now func() time.Time
}

// Server is viberq's HTTP API: messages, provider callbacks, /monitoring, /metrics and
// the health probes. Build it with New; serve it with Serve or ListenAndServe.
type Server struct {
	opts    Options
	handler http.Handler
	metrics *apiMetrics
	guard   *authGuard
	// batches, canceller and counter serve the batch and cancel routes: the Enqueuer
	// and Records when they implement them (*tasks.Enqueuer, *tasks.Store), else
	// those routes answer 501.
	batches   BatchEnqueuer
	canceller Canceller
	counter   BatchCounter
}

// New checks opts and builds the routes.
func New(opts Options) (*Server, error) {
	var missing []string
	if opts.Redis == nil {
		missing = append(missing, "Redis")
	}
	if opts.Enqueuer == nil {
		missing = append(missing, "Enqueuer")
	}
	if opts.Records == nil {
		missing = append(missing, "Records")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("api: missing %s", strings.Join(missing, ", "))
	}
	opts.MaxBodyBytes = cmp.Or(opts.MaxBodyBytes, DefaultMaxBodyBytes)
	opts.ReadTimeout = cmp.Or(opts.ReadTimeout, DefaultReadTimeout)
	opts.WriteTimeout = cmp.Or(opts.WriteTimeout, DefaultWriteTimeout)
	opts.InboundStream = cmp.Or(opts.InboundStream, DefaultInboundStream)
	opts.InboundMaxLen = cmp.Or(opts.InboundMaxLen, DefaultInboundMaxLen)
	opts.InboundDedupTTL = cmp.Or(opts.InboundDedupTTL, DefaultInboundDedupTTL)
	opts.Prefix = cmp.Or(opts.Prefix, tasks.DefaultPrefix)
	opts.ShutdownTimeout = cmp.Or(opts.ShutdownTimeout, DefaultShutdownTimeout)
	if opts.Gatherer == nil {
		opts.Gatherer = prometheus.DefaultGatherer
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m, err := newAPIMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("api: metrics: %w", err)
	}
	if opts.Monitoring == nil {
		opts.Monitoring = NewMonitoring(opts.Redis)
	}
	s := &Server{opts: opts, metrics: m, guard: newAuthGuard(opts.Redis, opts.Prefix, opts.AuthFailures, opts.Logger)}
	s.batches, _ = opts.Enqueuer.(BatchEnqueuer)
	s.canceller, _ = opts.Enqueuer.(Canceller)
	s.counter, _ = opts.Records.(BatchCounter)
	s.handler = s.routes()
	return s, nil
}

// Handler returns the server's http.Handler (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()

	mux.Handle("POST /v1/messages", s.bearer(http.HandlerFunc(s.postMessage)))
	mux.Handle("GET /v1/messages/{id}", s.bearer(http.HandlerFunc(s.getMessage)))
	mux.Handle("POST /v1/messages/{id}/cancel", s.bearer(s.ifSet(s.canceller != nil, s.cancelMessage)))
	mux.Handle("POST /v1/batches", s.bearer(s.ifSet(s.batches != nil, s.postBatch)))
	mux.Handle("GET /v1/batches/{id}", s.bearer(s.ifSet(s.counter != nil, s.getBatch)))
	mux.Handle("POST /v1/batches/{id}/cancel", s.bearer(s.ifSet(s.canceller != nil, s.cancelBatch)))
	// Anything else under /v1 needs a token too, so that probing reveals nothing.
	mux.Handle("/v1/", s.bearer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not found")
	})))

	// Callbacks: /callbacks/{kind} (basic auth only), /callbacks/{token}/{kind} and
	// /callbacks/{kind}/{token} (the layout of the callback URL viberq hands the provider when
	// VIBERQ_CALLBACK_URL ends in /callbacks/status). kind is status or inbound.
	for _, method := range []string{http.MethodPost, http.MethodPut} {
		mux.HandleFunc(method+" /callbacks/{a}", s.callback)
		mux.HandleFunc(method+" /callbacks/{a}/{b}", s.callback)
	}

	mon := s.monitoringAuth(s.onQueueResumed(s.opts.Monitoring))
	mux.Handle("/monitoring", mon)
	mux.Handle("/monitoring/", mon)

	mux.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /openapi.yaml", openapi)

	return s.logRequests(securityHeaders(refuseCrossOrigin(recoverPanics(mux))))
}

// ifSet serves h when ok, else 501: the Enqueuer or Records given to New do not
// implement what the route needs.
func (s *Server) ifSet(ok bool, h http.HandlerFunc) http.Handler {
	if ok {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotImplemented, "not available in this server")
	})
}

// readyz answers 200 when Redis answers PING within ReadyTimeout, else 503.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), ReadyTimeout)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := s.opts.Redis.Ping(ctx).Err(); err != nil {
		s.opts.Logger.Warn().Err(err).Msg("readyz: redis unreachable")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("redis unreachable\n"))
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// HTTPServer returns the http.Server for addr with viberq's limits: ReadHeaderTimeout
// (at most 5s), Read/WriteTimeout from Options, IdleTimeout 120s, MaxHeaderBytes
// 64 KiB.
func (s *Server) HTTPServer(addr string) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           s.handler,
		ReadHeaderTimeout: min(DefaultReadHeader, s.opts.ReadTimeout),
		ReadTimeout:       s.opts.ReadTimeout,
		WriteTimeout:      s.opts.WriteTimeout,
		IdleTimeout:       DefaultIdleTimeout,
		MaxHeaderBytes:    DefaultMaxHeaderBytes,
		ErrorLog:          newStdLogger(s.opts.Logger),
	}
}

// ListenAndServe listens on addr and serves until ctx is cancelled (see Serve).
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("api: listen on %s: %w", addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx is cancelled, then shuts down gracefully: it stops
// accepting, lets in-flight requests finish within ShutdownTimeout and closes what
// is left. It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := s.HTTPServer(ln.Addr().String())
	srv.BaseContext = func(net.Listener) context.Context { return context.WithoutCancel(ctx) }
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.opts.Logger.Info().Str("addr", ln.Addr().String()).Msg("api listening")
	select {
	case err := <-errc:
		return fmt.Errorf("api: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		_ = srv.Close()
		return fmt.Errorf("api: shutdown: %w", err)
	}
	s.opts.Logger.Info().Msg("api stopped")
	return nil
}
