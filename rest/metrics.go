package rest

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/leviathan-net/leviathan/internal/metrics"
)

// metricsRoutes serves GET /metrics in the Prometheus text format, behind
// the same middleware as every route (auth included). m is where core
// and the fabric record make, destroy and kernel operations when the
// daemon wired them to it; without one the server keeps its own, with
// the objects and the monitor only.
func (s *Server) metricsRoutes(m *metrics.Metrics) {
	if m == nil {
		m = metrics.New(s.log)
	}
	if err := m.CollectObjects(s.svc, s.pools); err != nil {
		s.log.Warn("metrics", "err", err)
	}
	if err := m.CollectMonitor(s.mon); err != nil {
		s.log.Warn("metrics", "err", err)
	}
	if s.vmm != nil {
		if err := m.CollectVMs(s.vmm); err != nil {
			s.log.Warn("metrics", "err", err)
		}
	}
	s.routes = append(s.routes, Route{http.MethodGet, "/metrics"})
	s.engine.Handle(http.MethodGet, "/metrics", gin.WrapH(m.Handler()))
}
