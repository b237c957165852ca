package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			_, _ = io.WriteString(w, "ok")
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		default:
			http.Error(w, "redis unreachable", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()

	// A port that was listening and is now closed: connection refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String() + "/readyz"
	_ = l.Close()

	cases := []struct {
		name string
		args []string
		want int
	}{
		{"2xx", []string{srv.URL + "/readyz"}, 0},
		{"503", []string{srv.URL + "/unhealthy"}, 1},
		{"refused", []string{closed}, 1},
		{"timeout", []string{"-timeout", "50ms", srv.URL + "/slow"}, 1},
		{"no url", nil, 2},
		{"two urls", []string{srv.URL, srv.URL}, 2},
		{"not http", []string{"ftp://example.com/x"}, 2},
		{"no host", []string{"http:///readyz"}, 2},
		{"bad flag", []string{"-nope", srv.URL}, 2},
		{"zero timeout", []string{"-timeout", "0s", srv.URL + "/readyz"}, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stderr strings.Builder
			if got := run(context.Background(), c.args, &stderr); got != c.want {
				t.Fatalf("run(%q) = %d, want %d; stderr: %s", c.args, got, c.want, stderr.String())
			}
			if c.want != 0 && stderr.Len() == 0 {
				t.Errorf("run(%q) failed without saying why", c.args)
			}
		})
	}
}
