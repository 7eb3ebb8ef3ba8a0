package netfab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/leviathan-net/leviathan/cen"
	"github.com/leviathan-net/leviathan/cin"
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
			if c.VXLAN != nil {
				wanted(f.path, linkKey{VXLANName(c.ID), c.Group})
			}
			for _, p := range c.Ports {
				if p.TAP != nil {
					wanted(f.path, linkKey{TAPPortName(p.HostIf), c.Group})
					continue
				}
				wanted(f.path, linkKey{p.HostIf, c.Group})
				if p.Impair.Relayed() {
					wanted(f.path, linkKey{RelayTAPName(p.HostIf), c.Group})
				}
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

// ReconcileCINs makes the kernel hold exactly the desired CINs' addressing:
// it removes leviathan's own addresses, routes and rules (by their
// protocol mark and table range) that no desired CIN explains, in the
// fabric and in the given member namespaces, then applies each desired
// CIN. Run it after Reconcile, which recreates interfaces.
func (f *Fabric) ReconcileCINs(ctx context.Context, desired []*CIN, namespaces []string) (ReconcileReport, error) {
	rep := ReconcileReport{Failed: map[string]error{}}
	tables := map[int]bool{}
	rulesWanted := map[string]bool{} // "table|iif"
	addrsWanted := map[string]map[string]bool{}
	want := func(ns, ifname string, p netip.Prefix) {
		if addrsWanted[ns] == nil {
			addrsWanted[ns] = map[string]bool{}
		}
		addrsWanted[ns][ifname+"|"+p.String()] = true
	}
	for _, c := range desired {
		if len(c.Gateways) > 0 {
			tables[c.Table] = true
		}
		for _, g := range c.Gateways {
			rulesWanted[fmt.Sprintf("%d|%s", c.Table, g.Bridge)] = true
			want(f.path, g.Bridge, g.Addr)
		}
		for _, a := range c.Addresses {
			want(a.Netns, a.IfName, a.Addr)
		}
	}

	rules, err := f.c.h.RuleList(unix.AF_INET)
	if err != nil {
		return rep, fmt.Errorf("reconcile: list rules: %w", err)
	}
	for _, r := range rules {
		if r.Protocol == Proto && !rulesWanted[fmt.Sprintf("%d|%s", r.Table, r.IifName)] {
			if err := f.c.h.RuleDel(&r); err != nil && !errors.Is(err, unix.ENOENT) {
				return rep, fmt.Errorf("reconcile: delete rule: %w", err)
			}
			rep.Removed++
		}
	}
	routes, err := f.c.h.RouteListFiltered(unix.AF_INET, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return rep, fmt.Errorf("reconcile: list routes: %w", err)
	}
	for _, r := range routes {
		if cin.IsOwnTable(r.Table) && !tables[r.Table] {
			if err := f.c.h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
				return rep, fmt.Errorf("reconcile: delete route: %w", err)
			}
			rep.Removed++
		}
	}

	errs := eachNetns(append([]string{f.path}, namespaces...), func(ns string, c *conn) error {
		own, err := c.ownAddrs(ctx)
		if err != nil {
			return err
		}
		ls, err := c.links(ctx)
		if err != nil {
			return err
		}
		names := linkNames(ls)
		for idx, ps := range own {
			for _, p := range ps {
				if addrsWanted[ns][names[idx]+"|"+p.String()] {
					continue
				}
				if err := c.delOwnRoutes(idx); err != nil {
					return err
				}
				if err := c.delAddr(idx, p); err != nil {
					return err
				}
				rep.Removed++
			}
		}
		return nil
	})

	if err := applyEach(ctx, desired, func(c *CIN) string { return c.ID }, func(c *CIN) error { return f.ApplyCIN(ctx, nil, c, nil) }, rep.Failed); err != nil {
		return rep, err
	}
	return rep, errs
}
