package worker

import (
	"testing"
	"time"
)

// deepStack recurses depth times with a 256-byte frame each, as a handler's call chain
// goes deep (a send reaches 16–32 KiB: BENCHMARKS.md, "4 December 2026, night").
//
//go:noinline
func deepStack(depth int) int {
	var pad [256]byte
	pad[depth%len(pad)] = byte(depth)
	if depth == 0 {
		return int(pad[0])
	}
	return deepStack(depth-1) + int(pad[depth%len(pad)])
}

// BenchmarkGrowStack runs, in each iteration, one goroutine that goes over 24 KiB deep
// as it starts and one that calls growStack first, timing each on its own; ratio is
// the first's time over the second's (above 1: growStack saves time). It shows
// whether the Go version at hand still starts goroutines small and grows them by
// copying, which is what growStack is for:
//
//	go test -run '^$' -bench GrowStack ./worker/
func BenchmarkGrowStack(b *testing.B) {
	done := make(chan int)
	var plain, grown time.Duration
	for b.Loop() {
		start := time.Now()
		go func() { done <- deepStack(90) }()
		<-done
		plain += time.Since(start)
		start = time.Now()
		go func() {
			_ = growStack(0)
			done <- deepStack(90)
		}()
		<-done
		grown += time.Since(start)
	}
	b.ReportMetric(float64(plain.Nanoseconds())/float64(b.N), "plain-ns/op")
	b.ReportMetric(float64(grown.Nanoseconds())/float64(b.N), "grown-ns/op")
	b.ReportMetric(float64(plain)/float64(grown), "ratio")
}
