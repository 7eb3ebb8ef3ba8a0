package metrics

import (
	"context"
	"time"

	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/netfab"
)

// Kernel operation names, the op label of the kernel metrics.
const (
	opApply         = "apply"
	opDestroy       = "destroy"
	opDestroyMany   = "destroy_many"
	opReconcile     = "reconcile"
	opApplyCIN      = "apply_cin"
	opReconcileCINs = "reconcile_cins"
)

var kernelOps = []string{opApply, opDestroy, opDestroyMany, opReconcile, opApplyCIN, opReconcileCINs}

// countedFabric is a netfab.Fabric whose core.Fabric calls are counted
// and timed. It embeds the fabric rather than wrapping the interface, so
// whatever else core asks of it by type assertion (Path for captures,
// LinkStats for impaired links) still answers.
type countedFabric struct {
	*netfab.Fabric
	m *Metrics
}

var _ core.Fabric = countedFabric{}

// Fabric returns f as core should use it: every call through core.Fabric
// counted by op and outcome, and timed. The counters of every op start at
// zero, so a rate is defined before the first failure.
func (m *Metrics) Fabric(f *netfab.Fabric) core.Fabric {
	for _, op := range kernelOps {
		m.kernelOps.WithLabelValues(op, outcomeOK)
		m.kernelOps.WithLabelValues(op, outcomeFailed)
		m.kernelSeconds.WithLabelValues(op)
	}
	return countedFabric{Fabric: f, m: m}
}

// observe records one call of op that started at start and ended with err.
func (f countedFabric) observe(op string, start time.Time, err error) {
	f.m.kernelSeconds.WithLabelValues(op).Observe(time.Since(start).Seconds())
	f.m.kernelOps.WithLabelValues(op, outcome(err == nil)).Inc()
}

func (f countedFabric) Apply(ctx context.Context, prev, next *netfab.CEN) error {
	start := time.Now()
	err := f.Fabric.Apply(ctx, prev, next)
	f.observe(opApply, start, err)
	return err
}

func (f countedFabric) Destroy(ctx context.Context, c *netfab.CEN) error {
	start := time.Now()
	err := f.Fabric.Destroy(ctx, c)
	f.observe(opDestroy, start, err)
	return err
}

func (f countedFabric) DestroyMany(ctx context.Context, cs []*netfab.CEN) error {
	start := time.Now()
	err := f.Fabric.DestroyMany(ctx, cs)
	f.observe(opDestroyMany, start, err)
	return err
}

func (f countedFabric) Reconcile(ctx context.Context, desired []*netfab.CEN, namespaces []string) (netfab.ReconcileReport, error) {
	start := time.Now()
	r, err := f.Fabric.Reconcile(ctx, desired, namespaces)
	f.observe(opReconcile, start, err)
	return r, err
}

func (f countedFabric) ApplyCIN(ctx context.Context, prev, next *netfab.CIN, dirty func(netfab.Address) bool) error {
	start := time.Now()
	err := f.Fabric.ApplyCIN(ctx, prev, next, dirty)
	f.observe(opApplyCIN, start, err)
	return err
}

func (f countedFabric) ReconcileCINs(ctx context.Context, desired []*netfab.CIN, namespaces []string) (netfab.ReconcileReport, error) {
	start := time.Now()
	r, err := f.Fabric.ReconcileCINs(ctx, desired, namespaces)
	f.observe(opReconcileCINs, start, err)
	return r, err
}
