package worker

import (
	"context"
	"errors"
	"time"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynq/x/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds viberq's Prometheus metrics. A nil *Metrics is valid and records
// nothing (tests, tools).
//
//	viberq_sends_total{outcome}                              one per send attempt: the classify action ("accepted", "retry", "retry_after", ...)
//	viberq_final_states_total{state,channel}                 records reaching a final state (channel "" unless delivered)
//	viberq_provider_request_duration_seconds{endpoint,code}  send-viber / receive-viber latency; code is the HTTP status, "transport" or "invalid"
//	viberq_limiter_wait_seconds{bucket}                      time spent in Limiter.Wait (send, status)
//	viberq_polls_per_message                                 polls a message needed before its final state
//	viberq_alerts_total{kind}                                alerts delivered (after dedup)
//	viberq_unknown_total                                     sends that ended ambiguous (README, "Exactly once, as far as it can be")
//	viberq_reconciler_repairs_total{repair}                  records the reconciler finished: cancelled, expired, unknown, poll (README, "Message states")
//	viberq_reconciler_checked_total                          non-final records the reconciler looked at
//	viberq_reconciler_leader                                 1 while this process holds the reconciler lease
//	viberq_nonfinal_records                                  non-final records in the index, as the leader last counted
//	viberq_accepted_held                                     provider message_ids accepted but not yet written (Redis unreachable); held and retried by this process
type Metrics struct {
	sends           *prometheus.CounterVec
	finals          *prometheus.CounterVec
	providerLatency *prometheus.HistogramVec
	limiterWait     *prometheus.HistogramVec
	pollsPerMessage prometheus.Histogram
	alerts          *prometheus.CounterVec
	unknown         prometheus.Counter
	repairs         *prometheus.CounterVec
	checked         prometheus.Counter
	leader          prometheus.Gauge
	nonFinal        prometheus.Gauge
	held            prometheus.Gauge
}

// NewMetrics creates the metrics and registers them with reg (a new registry when reg
// is nil; use prometheus.DefaultRegisterer to share the global one).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &Metrics{
		sends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "viberq_sends_total",
			Help: "Send attempts by outcome (the classify action).",
		}, []string{"outcome"}),
		finals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "viberq_final_states_total",
			Help: "Messages that reached a final state, by state and channel.",
		}, []string{"state", "channel"}),
		providerLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "viberq_provider_request_duration_seconds",
			Help:    "Provider request latency by endpoint and result code.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"endpoint", "code"}),
		limiterWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "viberq_limiter_wait_seconds",
			Help:    "Time spent waiting for a token of the global limiter, by bucket.",
			Buckets: []float64{0, .001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"bucket"}),
		pollsPerMessage: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "viberq_polls_per_message",
			Help:    "Status polls a message needed before reaching a final state.",
			Buckets: []float64{0, 1, 2, 3, 5, 8, 13, 21, 34, 55},
		}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "viberq_alerts_total",
			Help: "Alerts delivered (after cross-pod dedup), by kind.",
		}, []string{"kind"}),
		unknown: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "viberq_unknown_total",
			Help: "Sends whose outcome is ambiguous (may or may not have been sent).",
		}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "viberq_reconciler_repairs_total",
			Help: "Non-final records the reconciler moved on, by repair (cancelled, expired, unknown, poll).",
		}, []string{"repair"}),
		checked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "viberq_reconciler_checked_total",
			Help: "Non-final records the reconciler checked.",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "viberq_reconciler_leader",
			Help: "1 while this process holds the reconciler lease.",
		}),
		nonFinal: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "viberq_nonfinal_records",
			Help: "Non-final message records, as the reconciler leader last counted them.",
		}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "viberq_accepted_held",
			Help: "Provider message IDs accepted but not yet written to their record (Redis unreachable), held by this process.",
		}),
	}
	for _, c := range []prometheus.Collector{m.sends, m.finals, m.providerLatency, m.limiterWait, m.pollsPerMessage, m.alerts, m.unknown,
		m.repairs, m.checked, m.leader, m.nonFinal, m.held} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) countSend(outcome string) {
	if m != nil {
		m.sends.WithLabelValues(outcome).Inc()
	}
}

func (m *Metrics) countFinal(state, channel string, polls int, polled bool) {
	if m == nil {
		return
	}
	m.finals.WithLabelValues(state, channel).Inc()
	if polled {
		m.pollsPerMessage.Observe(float64(polls))
	}
}

func (m *Metrics) observeProvider(endpoint, code string, d time.Duration) {
	if m != nil {
		m.providerLatency.WithLabelValues(endpoint, code).Observe(d.Seconds())
	}
}

func (m *Metrics) observeLimiterWait(bucket string, d time.Duration) {
	if m != nil {
		m.limiterWait.WithLabelValues(bucket).Observe(d.Seconds())
	}
}

func (m *Metrics) countUnknown() {
	if m != nil {
		m.unknown.Inc()
	}
}

func (m *Metrics) countRepair(repair string) {
	if m != nil {
		m.repairs.WithLabelValues(repair).Inc()
	}
}

func (m *Metrics) countReconcileChecked() {
	if m != nil {
		m.checked.Inc()
	}
}

func (m *Metrics) setReconcileLeader(v bool) {
	if m != nil {
		m.leader.Set(map[bool]float64{false: 0, true: 1}[v])
	}
}

func (m *Metrics) setNonFinal(n int64) {
	if m != nil {
		m.nonFinal.Set(float64(n))
	}
}

func (m *Metrics) addHeld(d int) {
	if m != nil {
		m.held.Add(float64(d))
	}
}

// CountAlerts wraps next so that each alert it delivers without error increments
// viberq_alerts_total{kind}. Put it inside the DedupAlerter to count what went out.
func (m *Metrics) CountAlerts(next Alerter) Alerter {
	if m == nil {
		return next
	}
	return AlerterFunc(func(ctx context.Context, a Alert) error {
		if err := next.Alert(ctx, a); err != nil {
			return err
		}
		m.alerts.WithLabelValues(a.Kind).Inc()
		return nil
	})
}

// NewQueueCollector returns the asynq queue metrics (asynq_queue_size,
// asynq_queue_latency_seconds, asynq_tasks_processed_total, asynq_queue_paused_total,
// ...) of github.com/hibiken/asynq/x/metrics, read through insp at each scrape.
func NewQueueCollector(insp *asynq.Inspector) (prometheus.Collector, error) {
	if insp == nil {
		return nil, errors.New("queue collector: nil inspector")
	}
	return metrics.NewQueueMetricsCollector(insp), nil
}
