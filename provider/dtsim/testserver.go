package dtsim

import (
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// NewTestServer starts a Sim for cfg behind an httptest.Server and closes both with
// tb.Cleanup (the Sim first, so hanging answers end). Clients use base URL
// srv.URL + "/v1/api". Without a Config.Logf the simulator's notes go to tb.Logf
// until the test ends.
func NewTestServer(tb testing.TB, cfg Config) (*Sim, *httptest.Server) {
	tb.Helper()
	var done atomic.Bool
	if cfg.Logf == nil {
		cfg.Logf = func(format string, args ...any) {
			if !done.Load() {
				tb.Logf(format, args...)
			}
		}
	}
	tb.Cleanup(func() { done.Store(true) })
	s := New(cfg)
	srv := httptest.NewServer(s)
	tb.Cleanup(func() {
		s.Close()
		srv.Close()
	})
	return s, srv
}

// BasePath is the path clients put after the host: base URL = server URL + BasePath.
const BasePath = "/v1/api"
