package bench

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/viberq/viberq/cmd/viberq/internal/app"
	"github.com/viberq/viberq/cmd/viberq/internal/cmdline"
	"github.com/viberq/viberq/config"
	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/provider/dtsim"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/worker"
)

// ---- Redis: the bench database, its lock, FLUSHDB ----

// benchLockPrefix is the lock key prefix of tasks/redistest: the bench takes the same
// lock on its database (a key inside that database, SET NX with an expiry, kept
// across the bench's flushes), so that a concurrent `go test` with
// VIBERQ_TEST_REDIS_URL never gets the database while the bench flushes and fills it,
// and the other way round. No other database is touched.
const (
	benchLockPrefix = "viberq:redistest:db:"
	benchLockTTL    = 15 * time.Minute
	benchLockWait   = 2 * time.Minute
)

// benchRedis is the bench's Redis database: a client on it, its options and URL
// (for the worker processes), and the lock.
type benchRedis struct {
	opt    *redis.Options
	url    string // redis://.../db, with the password: only passed to child processes
	rdb    *redis.Client
	ctl    *redis.Client // database 0, for the lock only
	token  string
	locked bool
}

// openBenchRedis connects to rawURL with database db (never 0), takes the database's
// lock and flushes it.
func openBenchRedis(ctx context.Context, rawURL string, db int, progress io.Writer) (*benchRedis, error) {
	if db <= 0 {
		return nil, cmdline.Usagef("--db must be 1..15: the bench flushes its database and never touches database 0")
	}
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, cmdline.Usagef("--redis: cannot parse the URL (want redis://host:port)")
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, cmdline.Usagef("--redis: cannot parse the URL")
	}
	opt.DB = db
	u.Path = "/" + strconv.Itoa(db)
	ctlOpt := *opt // the lock lives in the bench database itself
	br := &benchRedis{opt: opt, url: u.String(), rdb: redis.NewClient(opt), ctl: redis.NewClient(&ctlOpt)}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = br.rdb.Ping(pctx).Err()
	cancel()
	if err != nil {
		br.close()
		return nil, fmt.Errorf("redis at %s unreachable: %w", opt.Addr, err)
	}
	if err := br.lock(ctx, progress); err != nil {
		br.close()
		return nil, err
	}
	if err := br.flush(ctx); err != nil {
		br.close()
		return nil, err
	}
	return br, nil
}

func (br *benchRedis) lock(ctx context.Context, progress io.Writer) error {
	var b [8]byte
	_, _ = crand.Read(b[:])
	br.token = "viberq-bench-" + hex.EncodeToString(b[:])
	key := benchLockPrefix + strconv.Itoa(br.opt.DB)
	deadline := time.Now().Add(benchLockWait)
	told := false
	for {
		ok, err := br.ctl.SetNX(ctx, key, br.token, benchLockTTL).Result()
		if err != nil {
			return fmt.Errorf("lock database %d: %w", br.opt.DB, err)
		}
		if ok {
			br.locked = true
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("database %d is in use (lock %s held by a test or another bench); try again or pick another --db", br.opt.DB, key)
		}
		if !told {
			fmt.Fprintf(progress, "bench: database %d is locked by a test run; waiting up to %s\n", br.opt.DB, benchLockWait)
			told = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

var unlockScript = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)

// flush empties the bench database (FLUSHDB on database opt.DB, never 0).
func (br *benchRedis) flush(ctx context.Context) error {
	if br.opt.DB == 0 {
		return errors.New("refusing to flush database 0")
	}
	// FLUSHDB keeping the lock, in one MULTI (as tasks/redistest.Flush does).
	key := benchLockPrefix + strconv.Itoa(br.opt.DB)
	if _, err := br.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.FlushDB(ctx)
		p.Set(ctx, key, br.token, benchLockTTL)
		return nil
	}); err != nil {
		return fmt.Errorf("flush database %d: %w", br.opt.DB, err)
	}
	return nil
}

// usedMemory returns INFO memory used_memory in bytes.
func (br *benchRedis) usedMemory(ctx context.Context) (int64, error) {
	info, err := br.rdb.InfoMap(ctx, "memory").Result()
	if err != nil {
		return 0, fmt.Errorf("info memory: %w", err)
	}
	v := info["Memory"]["used_memory"]
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("info memory: used_memory %q", v)
	}
	return n, nil
}

func (br *benchRedis) version(ctx context.Context) string {
	info, err := br.rdb.InfoMap(ctx, "server").Result()
	if err != nil {
		return "?"
	}
	return info["Server"]["redis_version"]
}

// newClient returns a new client on the bench database (its own pool).
func (br *benchRedis) newClient() *redis.Client {
	o := *br.opt
	return redis.NewClient(&o)
}

func (br *benchRedis) close() {
	if br.locked { // never flush a database whose lock someone else holds
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if br.opt.DB != 0 {
			_ = br.rdb.FlushDB(ctx).Err()
		}
		_ = unlockScript.Run(ctx, br.ctl, []string{benchLockPrefix + strconv.Itoa(br.opt.DB)}, br.token).Err()
		cancel()
	}
	_ = br.rdb.Close()
	_ = br.ctl.Close()
}

// ---- the simulator, in process, with a tap that timestamps send-viber requests ----

// simServer is an in-process dtsim on a loopback port.
type simServer struct {
	sim  *dtsim.Sim
	tap  *simTap
	srv  *http.Server
	base string // http://127.0.0.1:port/v1/api
}

func startSim(cfg dtsim.Config) (*simServer, error) {
	sim := dtsim.New(cfg)
	tap := &simTap{next: sim}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		sim.Close()
		return nil, err
	}
	s := &simServer{sim: sim, tap: tap, srv: &http.Server{Handler: tap, ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				tap.conns.Add(1)
			}
		}}}
	s.base = "http://" + ln.Addr().String() + dtsim.BasePath
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *simServer) close() {
	s.sim.Close()
	_ = s.srv.Close()
}

// simTap counts the send-viber requests that reach the simulator and the TCP
// connections it accepts, keeps the arrival times of the sends when asked (record),
// and reports the arrival of each destination to a watcher (row 5).
type simTap struct {
	next  http.Handler
	sends atomic.Int64
	conns atomic.Int64   // TCP connections accepted
	times []atomic.Int64 // arrival unix nanos of the first len(times) sends
	watch atomic.Pointer[arrivals]
}

func (t *simTap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, "/send-viber") {
		now := time.Now()
		ns := now.UnixNano()
		if i := t.sends.Add(1) - 1; i < int64(len(t.times)) {
			t.times[i].Store(ns)
		}
		if a := t.watch.Load(); a != nil {
			body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			if err == nil {
				var m struct {
					Dest string `json:"destination_addr"`
				}
				if json.Unmarshal(body, &m) == nil {
					a.arrived(m.Dest, now)
				}
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
	}
	t.next.ServeHTTP(w, r)
}

// record makes the tap keep the arrival times of the next n sends (call before
// traffic, with reset).
func (t *simTap) record(n int) { t.times = make([]atomic.Int64, n) }

// steadyRate is the arrival rate of the recorded sends between their 10th and
// 90th percentile (steadyRateOf): the steady state, without the start-up of the
// server and the drain at the end.
func (t *simTap) steadyRate() float64 {
	ts := make([]time.Time, 0, len(t.times))
	for i := range t.times {
		if v := t.times[i].Load(); v != 0 {
			ts = append(ts, time.Unix(0, v))
		}
	}
	return steadyRateOf(ts)
}

// reset zeroes the counters.
func (t *simTap) reset() {
	t.sends.Store(0)
	t.conns.Store(0)
}

// waitSends waits until n send-viber requests arrived, or timeout.
func (t *simTap) waitSends(ctx context.Context, n int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for t.sends.Load() < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d sends reached the simulator within %s", t.sends.Load(), n, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// arrivals maps a destination to the time its send reached the simulator.
type arrivals struct {
	mu   sync.Mutex
	wait map[string]chan time.Time
}

func newArrivals() *arrivals { return &arrivals{wait: map[string]chan time.Time{}} }

// expect registers dest; the channel receives its arrival time once.
func (a *arrivals) expect(dest string) <-chan time.Time {
	ch := make(chan time.Time, 1)
	a.mu.Lock()
	a.wait[dest] = ch
	a.mu.Unlock()
	return ch
}

func (a *arrivals) arrived(dest string, at time.Time) {
	a.mu.Lock()
	ch := a.wait[dest]
	delete(a.wait, dest)
	a.mu.Unlock()
	if ch != nil {
		ch <- at
	}
}

// ---- messages ----

// benchText is the message text: with the rest of the payload it makes a send task
// of about 345 bytes, the size of a typical one-time-code notification.
const benchText = "Your verification code is 482913. It expires in 10 minutes. Do not share it with anyone."

// benchMessage returns message i: transactional (queue critical), Viber text,
// a destination unique to i (the simulator flags equal destination+text as a duplicate).
func benchMessage(i int) provider.Message {
	return provider.Message{
		SourceAddr:      "viberq",
		DestinationAddr: "38050" + fmt.Sprintf("%07d", i%10_000_000),
		MessageType:     provider.TypeText,
		Text:            benchText,
		SourceType:      provider.SourceTransactional,
	}
}

// sendPayload returns the send-task payload of message i as the Enqueuer writes it,
// for the bare-asynq baselines (same bytes, same size).
func sendPayload(i int, now time.Time) []byte {
	b, _ := json.Marshal(tasks.SendArgs{V: tasks.PayloadVersion, ID: fmt.Sprintf("0190b3a2-7c1e-7d2a-9f00-%012d", i),
		Message: benchMessage(i), ExpiresAt: now.Add(time.Hour), EnqueuedAt: now})
	return b
}

// payloadSize is the size in bytes of a send payload (times with nanoseconds, as
// the Enqueuer writes them; the size varies by a few bytes with the clock).
func payloadSize() int { return len(sendPayload(0, time.Unix(1_800_000_000, 123_456_789))) }

// parallel runs fn(i) for i in [0, n) on g goroutines and returns the wall time.
func parallel(ctx context.Context, n, g int, fn func(ctx context.Context, i int) error) (time.Duration, error) {
	var (
		next  atomic.Int64
		errMu sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	start := time.Now()
	for range max(g, 1) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					errMu.Lock()
					if first == nil {
						first = err
					}
					errMu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	d := time.Since(start)
	if first == nil {
		first = ctx.Err()
	}
	return d, first
}

// ---- viberq, in process ----

// benchConfig returns the configuration every VIBERQ_* default gives, with the
// provider pointed at the simulator.
func benchConfig(simBase, key string) (config.Config, error) {
	env := map[string]string{
		config.EnvDTBaseURL: simBase,
		config.EnvDTAPIKey:  key,
	}
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		return config.Config{}, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

// procWorker is a viberq worker running in the bench process.
type procWorker struct {
	w      *worker.Worker
	rdb    *redis.Client
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

// startWorker runs a worker in the bench process, built from cfg by app.NewWorker
// exactly as `viberq worker` builds it, on its own Redis client, with its own metrics
// registry and a logger at info level that writes to io.Discard (the per-task line is
// formatted, as in production, but not written to a terminal).
func (b *bench) startWorker(ctx context.Context, cfg config.Config) (*procWorker, error) {
	rdb := b.redis.newClient()
	reg := prometheus.NewRegistry()
	log := zerolog.New(io.Discard).Level(zerolog.InfoLevel)
	w, err := app.NewWorker(cfg, rdb, log, reg)
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	p := &procWorker{w: w, rdb: rdb, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- w.Run(wctx) }()
	return p, nil
}

// finals is the number of records the worker moved to a final state
// (viberq_final_states_total).
func (p *procWorker) finals() int {
	mfs, err := p.reg.Gather()
	if err != nil {
		return 0
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "viberq_final_states_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			n += m.GetCounter().GetValue()
		}
	}
	return int(n)
}

// waitFinals waits until the worker counted n final records.
func (p *procWorker) waitFinals(ctx context.Context, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for p.finals() < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d messages final within %s", p.finals(), n, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

func (p *procWorker) stop() error {
	p.cancel()
	err := <-p.done
	_ = p.rdb.Close()
	return err
}

// ---- child processes: viberq workers and the bare-asynq server ----

// childProc is a re-executed copy of this binary.
type childProc struct {
	cmd    *exec.Cmd
	stderr *tailBuffer
	done   chan error
}

// startChild runs this binary with args and the environment of the bench minus
// every VIBERQ_* variable, plus env.
// startWorkers starts n `viberq worker` children with env; stop ends every one that
// started (call it even when err is set).
func (b *bench) startWorkers(n int, env map[string]string) (children []*childProc, stop func(), err error) {
	stop = func() {
		for _, c := range children {
			_ = c.stop(30 * time.Second)
		}
	}
	for range n {
		c, err := b.startChild([]string{"worker"}, env)
		if err != nil {
			return children, stop, err
		}
		children = append(children, c)
	}
	return children, stop, nil
}

func (b *bench) startChild(args []string, env map[string]string) (*childProc, error) {
	cmd := exec.Command(b.exe, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VIBERQ_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	c := &childProc{cmd: cmd, stderr: &tailBuffer{max: 8 << 10}, done: make(chan error, 1)}
	cmd.Stdout = io.Discard
	cmd.Stderr = c.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the bench
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s %s: %w", b.exe, strings.Join(args, " "), err)
	}
	go func() { c.done <- cmd.Wait() }()
	return c, nil
}

// exited reports whether the child ended, with its error and the end of its stderr.
func (c *childProc) exited() (bool, error) {
	select {
	case err := <-c.done:
		c.done <- err
		return true, fmt.Errorf("child exited (%v): %s", err, strings.TrimSpace(c.stderr.String()))
	default:
		return false, nil
	}
}

// peakRSS reads VmHWM (peak resident set size) of the child from /proc, in bytes.
func (c *childProc) peakRSS() (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(c.cmd.Process.Pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				n, err := strconv.ParseInt(f[0], 10, 64)
				return n << 10, err
			}
		}
	}
	return 0, errors.New("no VmHWM in /proc status")
}

// stop sends SIGTERM and waits up to timeout, then kills.
func (c *childProc) stop(timeout time.Duration) error {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		c.done <- err
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			return err
		}
		return nil
	case <-time.After(timeout):
		_ = c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("child %d did not stop within %s; killed", c.cmd.Process.Pid, timeout)
	}
}

// tailBuffer keeps the last max bytes written.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	t.mu.Unlock()
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// workerEnv is the environment of a viberq worker process on the bench database and
// the simulator at base; extra overrides.
func (b *bench) workerEnv(base string, extra map[string]string) map[string]string {
	env := map[string]string{
		config.EnvRedisURL:    b.redis.url,
		config.EnvDTBaseURL:   base,
		config.EnvDTAPIKey:    b.key,
		config.EnvMetricsAddr: "off",
		config.EnvOutbox:      "false",
		config.EnvLogLevel:    "warn",
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// waitServers waits until n worker processes have registered their asynq servers in
// Redis (each process runs two: the send queues and the status queue).
func (b *bench) waitServers(ctx context.Context, n int, children []*childProc, timeout time.Duration) error {
	insp := asynq.NewInspectorFromRedisClient(b.redis.rdb)
	deadline := time.Now().Add(timeout)
	for {
		for _, c := range children {
			if ok, err := c.exited(); ok {
				return err
			}
		}
		srvs, err := insp.Servers()
		pids := map[string]bool{}
		for _, s := range srvs {
			pids[s.Host+":"+strconv.Itoa(s.PID)] = true
		}
		if err == nil && len(pids) >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d worker processes registered within %s", len(pids), n, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// basicAuth is the Authorization header value the provider client sends for key.
func basicAuth(key string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(key))
}
