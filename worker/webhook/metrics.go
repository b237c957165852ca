package webhook

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the webhook metrics. A nil *Metrics records nothing.
//
//	viberq_webhook_events_total{result}                   events the relay read: queued, duplicate (already queued), skipped (no webhook wants it), error (left pending, retried)
//	viberq_webhook_deliveries_total{outcome}              POST attempts: delivered, failed (will be retried), dead (archived: retries used up or a refused address)
//	viberq_webhook_delivery_duration_seconds{code}        POST latency by HTTP status, "transport" or "refused"
type Metrics struct {
	events     *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	latency    *prometheus.HistogramVec
}

// NewMetrics creates the webhook metrics and registers them with reg (a new registry
// when nil).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "viberq_webhook_events_total",
			Help: "Events of the events stream read by the webhook relay, by result.",
		}, []string{"result"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "viberq_webhook_deliveries_total",
			Help: "Webhook POST attempts by outcome (delivered, failed, dead).",
		}, []string{"outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "viberq_webhook_delivery_duration_seconds",
			Help:    "Webhook POST latency by HTTP status code.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"code"}),
	}
	for _, c := range []prometheus.Collector{m.events, m.deliveries, m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) countEvent(result string) {
	if m != nil {
		m.events.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) countDelivery(outcome string) {
	if m != nil {
		m.deliveries.WithLabelValues(outcome).Inc()
	}
}

func (m *Metrics) observe(code string, d time.Duration) {
	if m != nil {
		m.latency.WithLabelValues(code).Observe(d.Seconds())
	}
}
