package metrics

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/cpool"
	"github.com/leviathan-net/leviathan/graph"
)

// The objects' kinds, the kind label of leviathan_objects.
const (
	kindCEN       = "cen"
	kindCIN       = "cin"
	kindContainer = "container"
	kindCPool     = "cpool"
)

var kinds = []string{kindCEN, kindCIN, kindContainer, kindCPool}

// states are the states each kind can be in. Every one is reported, at
// zero when no object is in it, so a query finds the series before the
// first object gets there; a state not listed here is reported as it
// comes.
var states = map[string][]graph.State{
	kindCEN:       {graph.StatePending, graph.StateRunning, graph.StateConfigured, graph.StateUnconfigured, graph.StateDeleting, graph.StateFailed},
	kindCIN:       {graph.StatePending, graph.StateRunning, graph.StateConfigured, graph.StateDeleting, graph.StateFailed},
	kindContainer: {graph.StateRunning, graph.StateStopped},
	kindCPool:     {graph.StatePending, graph.StateConfigured, graph.StateFailed},
}

var runtimes = []string{graph.RuntimeNetns, graph.RuntimeNamed, graph.RuntimeDocker}

var (
	objectsDesc = prometheus.NewDesc(namespace+"_objects",
		"Objects by kind (cen, cin, container, cpool) and state, as they are when scraped.",
		[]string{"kind", "state"}, nil)
	containersDesc = prometheus.NewDesc(namespace+"_containers",
		"This host's containers by runtime (netns, named, docker) and state (running, stopped).",
		[]string{"runtime", "state"}, nil)
	poolContainersDesc = prometheus.NewDesc(namespace+"_cpool_containers",
		"The containers of each CPool by state (running, stopped).",
		[]string{"cpool", "state"}, nil)
)

// objects reads the objects through the same calls the API lists them
// with, on every scrape, so what it reports is what GET /cen, /cin,
// /host/{h} and /cpool show.
type objects struct {
	svc   *core.Service
	pools *cpool.Manager // nil: no CPools (no Docker engine)
}

// CollectObjects adds the objects of svc and, when pools is not nil, its
// CPools, read when scraped.
func (m *Metrics) CollectObjects(svc *core.Service, pools *cpool.Manager) error {
	return m.register("objects", objects{svc: svc, pools: pools})
}

func (o objects) Describe(ch chan<- *prometheus.Desc) {
	ch <- objectsDesc
	ch <- containersDesc
	ch <- poolContainersDesc
}

// counts are objects by a pair of label values, with the pairs in the
// order they were first seen.
type counts struct {
	order [][2]string
	n     map[[2]string]int
}

func (c *counts) add(a, b string, n int) {
	if c.n == nil {
		c.n = map[[2]string]int{}
	}
	k := [2]string{a, b}
	if _, ok := c.n[k]; !ok {
		c.order = append(c.order, k)
	}
	c.n[k] += n
}

func (c *counts) send(ch chan<- prometheus.Metric, d *prometheus.Desc) {
	for _, k := range c.order {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(c.n[k]), k[0], k[1])
	}
}

func (o objects) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := scrapeContext()
	defer cancel()
	var objs, ctrs, members counts
	for _, kind := range kinds {
		if kind == kindCPool && o.pools == nil {
			continue
		}
		for _, s := range states[kind] {
			objs.add(kind, string(s), 0)
		}
	}
	for _, rt := range runtimes {
		for _, s := range states[kindContainer] {
			ctrs.add(rt, string(s), 0)
		}
	}
	failed := false
	fail := func(what string, err error) {
		failed = true
		ch <- prometheus.NewInvalidMetric(objectsDesc, fmt.Errorf("list %s: %w", what, err))
	}
	if cs, err := o.svc.ListCENs(ctx); err != nil {
		fail("CENs", err)
	} else {
		for _, c := range cs {
			objs.add(kindCEN, string(c.State), 1)
		}
	}
	if cs, err := o.svc.ListCINs(ctx); err != nil {
		fail("CINs", err)
	} else {
		for _, c := range cs {
			objs.add(kindCIN, string(c.State), 1)
		}
	}
	if cs, err := o.svc.ListContainers(ctx, o.svc.HostID()); err != nil {
		fail("containers", err)
	} else {
		for _, c := range cs {
			objs.add(kindContainer, string(c.State), 1)
			ctrs.add(c.Runtime, string(c.State), 1)
		}
	}
	if o.pools != nil {
		if ps, err := o.pools.List(ctx); err != nil {
			fail("CPools", err)
		} else {
			for _, p := range ps {
				objs.add(kindCPool, string(p.State), 1)
				for _, s := range states[kindContainer] {
					members.add(p.ID, string(s), 0)
				}
				for _, c := range p.Containers {
					members.add(p.ID, string(c.State), 1)
				}
			}
		}
	}
	if failed {
		return // half a count would read as a change
	}
	objs.send(ch, objectsDesc)
	ctrs.send(ch, containersDesc)
	members.send(ch, poolContainersDesc)
}
