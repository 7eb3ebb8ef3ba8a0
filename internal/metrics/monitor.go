package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leviathan-net/leviathan/monitor"
)

var (
	monConnectionsDesc = prometheus.NewDesc(namespace+"_monitor_connections",
		"Open monitor and notification connections, by stream (monitor: /leviathan/monitor, notifications: /v2/notifications, notifications_ws: /v2/notifications/ws).",
		[]string{"stream"}, nil)
	monSentDesc = prometheus.NewDesc(namespace+"_monitor_events_sent_total",
		"Event messages written to clients, by stream (pings and replies left out).",
		[]string{"stream"}, nil)
	monPublishedDesc = prometheus.NewDesc(namespace+"_monitor_events_published_total",
		"Events published on the bus, one per committed change.",
		nil, nil)
	monDroppedDesc = prometheus.NewDesc(namespace+"_monitor_clients_dropped_total",
		"Clients the bus dropped because they fell behind and their event queue filled.",
		nil, nil)
)

// monitorStats reads a monitor.Server's numbers when scraped.
type monitorStats struct{ srv *monitor.Server }

// CollectMonitor adds the numbers of a monitor server and its bus.
func (m *Metrics) CollectMonitor(srv *monitor.Server) error {
	return m.register("monitor", monitorStats{srv})
}

func (c monitorStats) Describe(ch chan<- *prometheus.Desc) {
	ch <- monConnectionsDesc
	ch <- monSentDesc
	ch <- monPublishedDesc
	ch <- monDroppedDesc
}

func (c monitorStats) Collect(ch chan<- prometheus.Metric) {
	st := c.srv.Stats()
	for _, s := range st.Streams {
		ch <- prometheus.MustNewConstMetric(monConnectionsDesc, prometheus.GaugeValue, float64(s.Open), s.Stream.String())
		ch <- prometheus.MustNewConstMetric(monSentDesc, prometheus.CounterValue, float64(s.Sent), s.Stream.String())
	}
	ch <- prometheus.MustNewConstMetric(monPublishedDesc, prometheus.CounterValue, float64(st.Published))
	ch <- prometheus.MustNewConstMetric(monDroppedDesc, prometheus.CounterValue, float64(st.Dropped))
}
