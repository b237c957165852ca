package bench

import (
	"math"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	t.Parallel()
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // 100..1, unsorted on purpose
	}
	cases := []struct {
		name string
		xs   []time.Duration
		p    float64
		want time.Duration
	}{
		{"Empty", nil, 50, 0},
		{"One", ms(7), 99, 7 * time.Millisecond},
		{"MedianOdd", ms(5, 1, 3), 50, 3 * time.Millisecond},
		{"MedianEvenTakesLower", ms(4, 1, 3, 2), 50, 2 * time.Millisecond},
		{"P99Of100", ms(hundred...), 99, 99 * time.Millisecond},
		{"P100IsMax", ms(hundred...), 100, 100 * time.Millisecond},
		{"P1Of100", ms(hundred...), 1, 1 * time.Millisecond},
		{"TinyPIsMin", ms(9, 8, 7), 0.0001, 7 * time.Millisecond},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			in := append([]time.Duration(nil), c.xs...)
			if got := percentile(c.xs, c.p); got != c.want {
				t.Fatalf("percentile(%v, %v) = %v, want %v", c.xs, c.p, got, c.want)
			}
			for i := range in {
				if in[i] != c.xs[i] {
					t.Fatalf("percentile modified its input: %v, was %v", c.xs, in)
				}
			}
		})
	}
}

func TestWindowStatsDropsPartialEdgesAndCountsGaps(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		perSec   map[int64]int64
		wantMax  int64
		wantMean float64
		wantFull int
	}{
		{"Empty", nil, 0, 0, 0},
		{"TwoSecondsNoFull", map[int64]int64{10: 50, 11: 80}, 80, 0, 0},
		{"EdgesExcluded", map[int64]int64{10: 12, 11: 300, 12: 296, 13: 301, 14: 40}, 301, 299, 3},
		// A stalled second inside the run (no entry) counts as 0, not skipped.
		{"GapCountsAsZero", map[int64]int64{100: 5, 101: 300, 103: 300, 104: 1}, 300, 200, 3},
		// Zero entries outside the run do not extend it.
		{"ZeroEntriesIgnored", map[int64]int64{1: 0, 5: 9, 6: 10, 7: 11, 9: 0}, 11, 10, 1},
		// The highest second may be an edge second.
		{"MaxOnEdge", map[int64]int64{1: 400, 2: 300, 3: 300, 4: 300}, 400, 300, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			gotMax, gotMean, gotFull := windowStats(c.perSec)
			if gotMax != c.wantMax || math.Abs(gotMean-c.wantMean) > 1e-9 || gotFull != c.wantFull {
				t.Fatalf("windowStats(%v) = (%d, %v, %d), want (%d, %v, %d)",
					c.perSec, gotMax, gotMean, gotFull, c.wantMax, c.wantMean, c.wantFull)
			}
		})
	}
}

func TestMedianRateRatio(t *testing.T) {
	t.Parallel()
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("median odd = %v, want 2", got)
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median even = %v, want 2.5", got)
	}
	if got := median(nil); got != 0 {
		t.Errorf("median empty = %v, want 0", got)
	}
	if got := rate(500, 250*time.Millisecond); got != 2000 {
		t.Errorf("rate = %v, want 2000", got)
	}
	if got := rate(5, 0); got != 0 {
		t.Errorf("rate over 0 = %v, want 0", got)
	}
	if got := ratio(3, 4); got != 0.75 {
		t.Errorf("ratio = %v, want 0.75", got)
	}
	if got := ratio(1, 0); !math.IsNaN(got) {
		t.Errorf("ratio by 0 = %v, want NaN", got)
	}
}

func TestSteadyRateOfUsesTheMiddleEightyPercent(t *testing.T) {
	t.Parallel()
	base := time.Unix(1_800_000_000, 0)
	// 100 events: a slow start (10 events over 10 s), 80 events 10 ms apart, a slow tail.
	var ts []time.Time
	for i := range 10 {
		ts = append(ts, base.Add(time.Duration(i)*time.Second))
	}
	mid := base.Add(10 * time.Second)
	for i := range 80 {
		ts = append(ts, mid.Add(time.Duration(i)*10*time.Millisecond))
	}
	for i := range 10 {
		ts = append(ts, mid.Add(time.Duration(80+i)*time.Second))
	}
	// Reversed: the order of the input does not matter.
	for i, j := 0, len(ts)-1; i < j; i, j = i+1, j-1 {
		ts[i], ts[j] = ts[j], ts[i]
	}
	// Sorted, index 10 (the 10th percentile) is the first event of the fast run and
	// index 90 (the 90th) the first of the tail, 80 s later: 80 events over 80 s.
	got := steadyRateOf(ts)
	if math.Abs(got-1) > 1e-9 {
		t.Fatalf("steadyRateOf = %v, want 1 (80 events between the 10th and 90th percentile over 80 s)", got)
	}
	// A uniform stream at 500/s reads 500/s.
	var u []time.Time
	for i := range 1000 {
		u = append(u, base.Add(time.Duration(i)*2*time.Millisecond))
	}
	if got := steadyRateOf(u); math.Abs(got-500) > 1e-6 {
		t.Fatalf("steadyRateOf(uniform 500/s) = %v", got)
	}
	if got := steadyRateOf(u[:9]); got != 0 {
		t.Fatalf("steadyRateOf(9 events) = %v, want 0", got)
	}
}

func TestPerSecondSeriesFillsGaps(t *testing.T) {
	t.Parallel()
	got := perSecondSeries(map[int64]int64{7: 0, 10: 3, 12: 5, 13: 1, 20: 0})
	want := []int64{3, 0, 5, 1}
	if len(got) != len(want) {
		t.Fatalf("perSecondSeries = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("perSecondSeries = %v, want %v", got, want)
		}
	}
	if got := perSecondSeries(nil); got != nil {
		t.Fatalf("perSecondSeries(nil) = %v, want nil", got)
	}
}

func TestParseCPUTimes(t *testing.T) {
	t.Parallel()
	const stat = "cpu  100 2 30 400 5 6 7 50 9 10\ncpu0 50 1 15 200 2 3 3 25 0 0\nintr 1 2 3\n"
	got, ok := parseCPUTimes(stat)
	// total: user..steal (100+2+30+400+5+6+7+50); guest and guest_nice are inside user.
	if want := (cpuTimes{total: 600, steal: 50}); !ok || got != want {
		t.Fatalf("parseCPUTimes = %+v, %v; want %+v, true", got, ok, want)
	}
	for name, bad := range map[string]string{
		"NoCPULine":  "cpu0 1 2 3 4 5 6 7 8\n",
		"NoSteal":    "cpu  1 2 3 4 5 6 7\n",
		"NotANumber": "cpu  1 2 3 4 5 6 7 x\n",
		"Empty":      "",
	} {
		if got, ok := parseCPUTimes(bad); ok {
			t.Errorf("%s: parseCPUTimes(%q) = %+v, true; want false", name, bad, got)
		}
	}
}

func TestStealShare(t *testing.T) {
	t.Parallel()
	a, b := cpuTimes{total: 1000, steal: 100}, cpuTimes{total: 1400, steal: 220}
	if got, ok := stealShare(a, b); !ok || math.Abs(got-0.3) > 1e-9 {
		t.Errorf("stealShare = %v, %v; want 0.3, true", got, ok)
	}
	if _, ok := stealShare(a, a); ok {
		t.Error("stealShare over no time: want false")
	}
	if _, ok := stealShare(b, a); ok {
		t.Error("stealShare backwards: want false")
	}
}
