package metrics

import (
	"maps"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// VMs is what a VM manager tells metrics: how many VMs it has in each
// status ("started", "stopped", ...), now. Package vm runs VPCS processes
// but has no manager of VMs yet; the one that comes implements this and
// is registered with CollectVMs where the daemon assembles it, and
// leviathan_vms appears.
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
