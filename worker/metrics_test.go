package worker

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
)

// metricValue returns the value of a counter or gauge, or the sample count of a
// histogram.
func metricValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 16)
	c.Collect(ch)
	close(ch)
	var sum float64
	for m := range ch {
		var pb dto.Metric
		require.NoError(t, m.Write(&pb))
		switch {
		case pb.Counter != nil:
			sum += pb.GetCounter().GetValue()
		case pb.Gauge != nil:
			sum += pb.GetGauge().GetValue()
		case pb.Histogram != nil:
			sum += float64(pb.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

func TestMetricsRegisterAndNil(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	require.NoError(t, err)
	_, err = NewMetrics(reg)
	require.Error(t, err, "registering twice must fail")

	m.countSend("success")
	m.countFinal("delivered", "viber", 2, true)
	m.countUnknown()
	m.observeLimiterWait(BucketSend, 0)
	m.observeProvider("send-viber", "200", 0)
	mfs, err := reg.Gather()
	require.NoError(t, err)
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{"viberq_sends_total", "viberq_final_states_total", "viberq_provider_request_duration_seconds",
		"viberq_limiter_wait_seconds", "viberq_polls_per_message", "viberq_unknown_total"} {
		require.True(t, names[n], n)
	}

	var nilM *Metrics // a nil *Metrics records nothing and never panics
	nilM.countSend("x")
	nilM.countFinal("x", "", 0, true)
	nilM.countUnknown()
	nilM.observeLimiterWait("x", 0)
	nilM.observeProvider("x", "y", 0)
	require.NotNil(t, nilM.CountAlerts(&recAlerter{}))
}
