package webhook

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the webhook metrics. A nil *Metrics records nothing.
//
//	viberq_webhook_events_total{result}                   events the relay read: queued, duplicate (already queued), skipped (no webhook wants it), error (left pending, retried)
//	viberq_webhook_deliveries_total{outcome}              POST attempts: delivered, failed (will be retried), dead (archived: retries used up, a refused address, or held past the retry window); and held (not attempted: the host's breaker is open or it has its limit in flight; rescheduled, no retry used)
//	viberq_webhook_delivery_duration_seconds{code}        POST latency by HTTP status, "transport" or "refused"
//	viberq_webhook_open_hosts                             hosts whose circuit breaker is open in this process (their deliveries are held)
type Metrics struct {
	events     *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	openHosts  atomic.Pointer[func() int] // the host gate's count; nil: 0
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
			Help: "Webhook POST attempts by outcome (delivered, failed, dead), and deliveries held (not attempted) because their host is failing or at its limit.",
		}, []string{"outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "viberq_webhook_delivery_duration_seconds",
			Help:    "Webhook POST latency by HTTP status code.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"code"}),
	}
	open := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "viberq_webhook_open_hosts",
		Help: "Webhook receivers' hosts whose circuit breaker is open in this process: their deliveries are held.",
	}, func() float64 {
		if f := m.openHosts.Load(); f != nil {
			return float64((*f)())
		}
		return 0
	})
	for _, c := range []prometheus.Collector{m.events, m.deliveries, m.latency, open} {
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

// openHostsFrom makes the open-hosts gauge read count when scraped (the Service's
// host gate: counted at the scrape, it never goes stale when traffic stops).
func (m *Metrics) openHostsFrom(count func() int) {
	if m != nil {
		m.openHosts.Store(&count)
	}
}
