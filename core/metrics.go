package core

import "time"

// Metrics receives what core measures of its own work. An exporter
// implements it; core only calls it, and imports no metrics library. Its
// methods must be safe for concurrent use and return at once.
type Metrics interface {
	// ObserveBatch records one make or destroy call on CENs or CINs
	// (kind "cen" or "cin"): whether every object in it succeeded, and
	// how long it took, waiting for locks and committing included.
	ObserveBatch(kind string, op Op, ok bool, took time.Duration)
}

// noMetrics is the Metrics of a Service given none.
type noMetrics struct{}

func (noMetrics) ObserveBatch(string, Op, bool, time.Duration) {}

// observeBatch reports a batch that started at start and ended with *err;
// cenBatch and cinBatch defer it.
func (s *Service) observeBatch(k kind, op Op, start time.Time, err *error) {
	s.metrics.ObserveBatch(k.name, op, *err == nil, time.Since(start))
}

// HostID is the host this Service serves.
func (s *Service) HostID() string { return s.host }
