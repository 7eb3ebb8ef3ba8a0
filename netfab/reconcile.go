package netfab

import (
	"context"
	"errors"
	"fmt"

	"github.com/leviathan-net/leviathan/cen"
	"github.com/leviathan-net/leviathan/graph"
)

// ReconcileReport says what a reconcile changed.
type ReconcileReport struct {
	Removed int              // leftover links of leviathan's removed
	Failed  map[string]error // CEN ID → why it could not be realized
}

type linkKey struct {
	name  string
	group uint32
}

// Reconcile makes the kernel hold exactly the desired CENs: it removes
// every link of leviathan's (by link group) that no desired CEN explains,
// in the fabric and in the given member namespaces, then applies each
// desired CEN, adopting what exists and repairing what is missing. Links
// outside leviathan's groups are never touched.
func (f *Fabric) Reconcile(ctx context.Context, desired []*CEN, namespaces []string) (ReconcileReport, error) {
	rep := ReconcileReport{Failed: map[string]error{}}
	want := map[string]map[linkKey]bool{}
	wanted := func(ns string, k linkKey) {
		if want[ns] == nil {
			want[ns] = map[linkKey]bool{}
		}
		want[ns][k] = true
	}
	groups := map[uint32]bool{}
	for _, c := range desired {
		switch c.Wiring() {
		case graph.WiringBridge:
			groups[c.Group] = true
			wanted(f.path, linkKey{c.Name, c.Group})
			for _, p := range c.Ports {
				wanted(f.path, linkKey{p.HostIf, c.Group})
				wanted(p.Netns, linkKey{c.Name, c.Group})
			}
		case graph.WiringWire:
			for _, p := range c.Ports {
				wanted(p.Netns, linkKey{c.Name, c.Group})
			}
		}
	}

	// The fabric: whole groups nobody wants go in one request each.
	ls, err := f.c.links(ctx)
	if err != nil {
		return rep, fmt.Errorf("reconcile: list fabric links: %w", err)
	}
	dropGroups := map[uint32]int{}
	for _, l := range ls {
		a := l.Attrs()
		if !cen.IsOwnGroup(a.Group) || want[f.path][linkKey{a.Name, a.Group}] {
			continue
		}
		if !groups[a.Group] {
			dropGroups[a.Group]++
			continue
		}
		if err := f.c.delLink(a.Name); err != nil {
			return rep, fmt.Errorf("reconcile: %w", err)
		}
		rep.Removed++
	}
	for g, n := range dropGroups {
		if err := f.c.delGroup(g); err != nil {
			return rep, fmt.Errorf("reconcile: %w", err)
		}
		rep.Removed += n
	}

	// Members' namespaces.
	errs := eachNetns(namespaces, func(ns string, c *conn) error {
		ls, err := c.links(ctx)
		if err != nil {
			return err
		}
		for _, l := range ls {
			a := l.Attrs()
			if !cen.IsOwnGroup(a.Group) || want[ns][linkKey{a.Name, a.Group}] {
				continue
			}
			if err := c.delLink(a.Name); err != nil {
				return err
			}
			rep.Removed++
		}
		return nil
	})

	if err := applyEach(ctx, desired, func(c *CEN) string { return c.ID }, func(c *CEN) error { return f.build(ctx, c) }, rep.Failed); err != nil {
		return rep, err
	}
	return rep, errs
}

// eachNetns runs fn with a conn in each of the namespaces that exist,
// going on past failures; the error joins them all.
func eachNetns(namespaces []string, fn func(ns string, c *conn) error) error {
	var errs []error
	for _, ns := range namespaces {
		if !IsNetns(ns) {
			continue
		}
		if err := withConn(ns, func(c *conn) error { return fn(ns, c) }); err != nil {
			errs = append(errs, fmt.Errorf("reconcile %s: %w", ns, err))
		}
	}
	return errors.Join(errs...)
}

// applyEach applies every desired object, recording in failed, by ID,
// why one could not be; only the end of ctx stops it early.
func applyEach[T any](ctx context.Context, desired []T, id func(T) string, apply func(T) error, failed map[string]error) error {
	for _, x := range desired {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := apply(x); err != nil {
			failed[id(x)] = err
		}
	}
	return nil
}
