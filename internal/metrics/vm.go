package metrics

import (
	"maps"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// VMs is what a VM manager tells metrics: how many VMs it has in each
// status ("started", "stopped", ...), now. vm.Manager implements it, and
// the daemon registers it with CollectVMs.
type VMs interface {
	VMsByStatus() map[string]int
}

var vmsDesc = prometheus.NewDesc(namespace+"_vms",
	"Emulated VMs by status, as they are when scraped.",
	[]string{"status"}, nil)

type vmStats struct{ src VMs }

// CollectVMs adds the VMs of src, read when scraped.
func (m *Metrics) CollectVMs(src VMs) error {
	return m.register("VMs", vmStats{src})
}

func (c vmStats) Describe(ch chan<- *prometheus.Desc) { ch <- vmsDesc }

func (c vmStats) Collect(ch chan<- prometheus.Metric) {
	by := c.src.VMsByStatus()
	for _, status := range slices.Sorted(maps.Keys(by)) {
		ch <- prometheus.MustNewConstMetric(vmsDesc, prometheus.GaugeValue, float64(by[status]), status)
	}
}
