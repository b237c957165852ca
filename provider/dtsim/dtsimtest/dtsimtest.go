// Package dtsimtest starts the DecisionTelecom simulator (package dtsim) for tests. It
// lives apart from dtsim so that the production binary, which serves the simulator
// (`viberq sim`, `viberq demo`), does not link testing and httptest.
package dtsimtest

import (
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/viberq/viberq/provider/dtsim"
)

// NewServer starts a Sim for cfg behind an httptest.Server and closes both with
// tb.Cleanup (the Sim first, so hanging answers end). Clients use base URL
// srv.URL + dtsim.BasePath. Without a Config.Logf the simulator's notes go to tb.Logf
// until the test ends.
func NewServer(tb testing.TB, cfg dtsim.Config) (*dtsim.Sim, *httptest.Server) {
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
	s := dtsim.New(cfg)
	srv := httptest.NewServer(s)
	tb.Cleanup(func() {
		s.Close()
		srv.Close()
	})
	return s, srv
}
