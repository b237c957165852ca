package bench

import (
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// percentile returns the p-th percentile (0 < p ≤ 100) of xs by the nearest-rank
// method: the smallest value with at least p% of the values at or below it. It
// returns 0 for an empty xs and does not modify xs.
func percentile(xs []time.Duration, p float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

// windowStats summarises per-second counts (Unix second → count, as the simulator's
// Stats.AcceptedPerSecond): the highest count of any second, and the mean over the
// full seconds, those strictly between the first and the last second that has a
// count (the first and the last are partial: the run began and ended inside them).
// A second without an entry inside that range counts as 0. full is the number of
// full seconds; with fewer than three seconds in the range it is 0 and so is mean.
func windowStats(perSec map[int64]int64) (highest int64, mean float64, full int) {
	first, last := int64(math.MaxInt64), int64(math.MinInt64)
	for s, n := range perSec {
		if n <= 0 {
			continue
		}
		highest = max(highest, n)
		first, last = min(first, s), max(last, s)
	}
	if highest == 0 || last-first < 2 {
		return highest, 0, 0
	}
	var sum int64
	for s := first + 1; s < last; s++ {
		sum += perSec[s]
	}
	full = int(last - first - 1)
	return highest, float64(sum) / float64(full), full
}

// median returns the median of xs (the mean of the two middle values for an even
// count), 0 for an empty xs. xs is not modified.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// rate is n events over d per second; 0 when d is not positive.
func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// ratio is a/b, or NaN when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return a / b
}

// perSecondSeries lists the counts of perSec from its first to its last second with
// a count, in order (gaps as 0).
func perSecondSeries(perSec map[int64]int64) []int64 {
	first, last := int64(math.MaxInt64), int64(math.MinInt64)
	for s, n := range perSec {
		if n > 0 {
			first, last = min(first, s), max(last, s)
		}
	}
	if first > last {
		return nil
	}
	out := make([]int64, 0, last-first+1)
	for s := first; s <= last; s++ {
		out = append(out, perSec[s])
	}
	return out
}

// steadyRateOf is the rate of the events at times ts between their 10th and 90th
// percentile: the steady state, without the ramp at the start and the tail at the
// end. 0 with fewer than 10 events or no spread.
func steadyRateOf(ts []time.Time) float64 {
	if len(ts) < 10 {
		return 0
	}
	s := slices.Clone(ts)
	slices.SortFunc(s, func(a, b time.Time) int { return a.Compare(b) })
	lo, hi := len(s)/10, len(s)*9/10
	return rate(hi-lo, s[hi].Sub(s[lo]))
}

// cpuTimes is the aggregate "cpu" line of /proc/stat: the total of its time fields
// and the part of it stolen by the hypervisor (the 8th field, "steal": time this
// virtual machine was ready to run but another guest held the physical CPU).
type cpuTimes struct {
	total, steal uint64
}

// parseCPUTimes reads the aggregate "cpu" line of a /proc/stat text. It reports false
// when there is none or it is malformed, or when it has no steal field (kernels
// before 2.6.11). The guest fields that follow steal are already counted in user and
// nice, so they are left out of the total.
func parseCPUTimes(stat string) (cpuTimes, bool) {
	for line := range strings.SplitSeq(stat, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "cpu" {
			continue
		}
		if len(f) < 9 {
			return cpuTimes{}, false
		}
		var t cpuTimes
		for i, s := range f[1:9] {
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return cpuTimes{}, false
			}
			t.total += v
			if i == 7 {
				t.steal = v
			}
		}
		return t, true
	}
	return cpuTimes{}, false
}

// readCPUTimes reads /proc/stat; false where there is none (not Linux).
func readCPUTimes() (cpuTimes, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, false
	}
	return parseCPUTimes(string(b))
}

// stealShare is the share (0..1) of the machine's CPU time between a and b that the
// hypervisor gave to other guests; false when it cannot be told (no /proc/stat, or
// no time passed).
func stealShare(a, b cpuTimes) (float64, bool) {
	if b.total <= a.total || b.steal < a.steal {
		return 0, false
	}
	return float64(b.steal-a.steal) / float64(b.total-a.total), true
}
