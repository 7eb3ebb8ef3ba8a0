// Package metrics exports leviathan's metrics in the Prometheus text
// format: the objects as they are when scraped (CENs, CINs, containers,
// pools), how long make and destroy take (core's Metrics hook), the
// kernel operations and their failures (a counting wrapper around the
// fabric, at core's Fabric seam), and the monitor's streams. It alone
// imports the Prometheus client: core, netfab and monitor expose hooks
// and numbers and know nothing of it.
//
// Threading: a Metrics is safe for concurrent use. Each has a registry of
// its own, never the global one, so one process (a test) can hold several
// servers. The collectors read their sources on every scrape; nothing is
// cached between scrapes.
package metrics

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/leviathan-net/leviathan/core"
)

// namespace prefixes every metric of leviathan's own.
const namespace = "leviathan"

// Label values of outcome.
const (
	outcomeOK     = "ok"
	outcomeFailed = "failed"
)

// buckets cover 1 ms to about a minute, by fours: a CEN of two members is
// made in milliseconds, a batch of hundreds or a reconcile in seconds.
var buckets = prometheus.ExponentialBuckets(0.001, 4, 9)

// Metrics is one server's registry and the metrics recorded into it.
type Metrics struct {
	reg *prometheus.Registry
	log *slog.Logger
	// batches: make and destroy calls (core's hook).
	batches *prometheus.HistogramVec
	// kernelOps and kernelSeconds: calls into the fabric.
	kernelOps     *prometheus.CounterVec
	kernelSeconds *prometheus.HistogramVec
}

var _ core.Metrics = (*Metrics)(nil)

// New returns a Metrics with its own registry, which also holds the Go
// runtime's and the process's standard metrics. log receives scrape
// errors (discarded when nil).
func New(log *slog.Logger) *Metrics {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		log: log,
		batches: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace,
			Name:      "operation_duration_seconds",
			Help:      "Time one make or destroy call on CENs or CINs took, from its locks to its commit, by kind (cen, cin), op (make, destroy) and outcome (ok, failed: some object in it failed).",
			Buckets:   buckets,
		}, []string{"kind", "op", "outcome"}),
		kernelOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "kernel_operations_total",
			Help:      "Calls into the kernel fabric, by op (apply, destroy, destroy_many, reconcile, apply_cin, reconcile_cins) and outcome (ok, failed).",
		}, []string{"op", "outcome"}),
		kernelSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace,
			Name:      "kernel_operation_duration_seconds",
			Help:      "Time one call into the kernel fabric took, by op.",
			Buckets:   buckets,
		}, []string{"op"}),
	}
	m.reg.MustRegister(
		m.batches, m.kernelOps, m.kernelSeconds,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// ObserveBatch implements core.Metrics.
func (m *Metrics) ObserveBatch(kind string, op core.Op, ok bool, took time.Duration) {
	m.batches.WithLabelValues(kind, string(op), outcome(ok)).Observe(took.Seconds())
}

func outcome(ok bool) string {
	if ok {
		return outcomeOK
	}
	return outcomeFailed
}

// Handler serves the registry in the Prometheus text format. A source
// that cannot be read (the store failing) leaves its metrics out and is
// logged; the others are still served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      logAdapter{m.log},
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// register adds a collector of one source; a second one of the same kind
// is an error (one server, one source).
func (m *Metrics) register(what string, c prometheus.Collector) error {
	if err := m.reg.Register(c); err != nil {
		return fmt.Errorf("metrics of %s: %w", what, err)
	}
	return nil
}

// logAdapter is promhttp's error log as slog.
type logAdapter struct{ log *slog.Logger }

func (l logAdapter) Println(v ...any) {
	l.log.Warn("metrics scrape", "err", fmt.Sprint(v...))
}

// scrapeTimeout bounds reading one source during a scrape.
const scrapeTimeout = 10 * time.Second

func scrapeContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), scrapeTimeout)
}
