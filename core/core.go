// Package core is leviathan's one internal API: the domain operations on
// CENs and containers that every frontend (REST, CLI, websocket) calls. It
// validates, plans, drives netfab, and commits each change to the graph in
// one transaction once the kernel work it describes has succeeded.
//
// Threading: a Service is safe for concurrent use. Operations on different
// objects run in parallel; operations on the same CEN or container are
// serialized by per-object locks, always taken in one global order (sorted
// keys) so that operations spanning several objects cannot deadlock.
package core

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"

	"github.com/leviathan-net/leviathan/cen"
	"github.com/leviathan-net/leviathan/cin"
	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/monitor"
	"github.com/leviathan-net/leviathan/netfab"
)

// Fabric is the kernel side, as core uses it (netfab.Fabric).
type Fabric interface {
	Apply(ctx context.Context, prev, next *netfab.CEN) error
	Destroy(ctx context.Context, c *netfab.CEN) error
	DestroyMany(ctx context.Context, cs []*netfab.CEN) error
	Reconcile(ctx context.Context, desired []*netfab.CEN, namespaces []string) (netfab.ReconcileReport, error)
	ApplyCIN(ctx context.Context, prev, next *netfab.CIN, dirty func(netfab.Address) bool) error
	ReconcileCINs(ctx context.Context, desired []*netfab.CIN, namespaces []string) (netfab.ReconcileReport, error)
}

// Options configure a Service.
type Options struct {
	HostID string
	Store  graph.Store
	Fabric Fabric
	// Runtimes are asked, in order, whether a container ID is theirs; the
	// netns runtime, which takes every ID, comes last.
	Runtimes []Runtime
	// CINPool is where CINs without a prefix of their own get one
	// (cin.DefaultPool when zero).
	CINPool cin.Pool
	// Bus receives an event for every committed change (a new bus when
	// nil).
	Bus *monitor.Bus
	// Metrics receives measurements of make and destroy (none when nil).
	Metrics Metrics
	Log     *slog.Logger
	// Hosts is this host's part among several sharing the Store.
	Hosts HostConfig
}

// Service implements the internal API.
type Service struct {
	host     string
	store    graph.Store
	fab      Fabric
	runtimes []Runtime
	pool     cin.Pool
	log      *slog.Logger
	locks    keyedLocks
	jobs     jobs
	bus      *monitor.Bus
	metrics  Metrics
	oplog    *oplog
	// evMu is held across each event-producing commit and its publish,
	// and across CIN snapshots: see commit.
	evMu sync.Mutex
	// evSeq numbers the events shared with other hosts (guarded by evMu).
	evSeq uint64
	hc    HostConfig
	// peers are the hosts sharing the store, as the realizer last saw.
	peers hostTable
	// real is what this host's kernel holds of CENs and CINs: see
	// realize.go.
	real realized
	// lastWorld is the realizer's last read of the graph (its goroutine
	// only).
	lastWorld *world
}

// New returns a Service; call Reconcile before serving requests.
func New(o Options) (*Service, error) {
	if err := graph.ValidateID("host", o.HostID); err != nil {
		return nil, err
	}
	if o.Store == nil || o.Fabric == nil || len(o.Runtimes) == 0 {
		return nil, errors.New("core: Store, Fabric and Runtimes are required")
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pool := o.CINPool
	if !pool.Base.IsValid() {
		pool = cin.DefaultPool
	}
	bus := o.Bus
	if bus == nil {
		bus = monitor.NewBus()
	}
	var metrics Metrics = noMetrics{}
	if o.Metrics != nil {
		metrics = o.Metrics
	}
	hc := o.Hosts
	if hc.VXLANPort == 0 {
		hc.VXLANPort = DefaultVXLANPort
	}
	if hc.VNIs == (VNIRange{}) {
		hc.VNIs = DefaultVNIs
	}
	if hc.Timeout == 0 {
		hc.Timeout = defaultHostTimeout
	}
	return &Service{host: o.HostID, store: o.Store, fab: o.Fabric, runtimes: o.Runtimes, pool: pool, bus: bus, metrics: metrics, log: log, oplog: newOplog(o.Store, bus), hc: hc}, nil
}

// Lock keys.
func cenKey(id string) string      { return "cen:" + id }
func ctrKey(m graph.Member) string { return "ctr:" + m.Key() }

// keyedLocks serializes operations per object key.
type keyedLocks struct {
	mu sync.Mutex // guards m
	m  map[string]*keyedLock
}

type keyedLock struct {
	mu   sync.Mutex
	refs int // guarded by keyedLocks.mu
}

// tryLock takes the lock of key if it is free, and reports whether it
// did.
func (k *keyedLocks) tryLock(key string) (unlock func(), ok bool) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyedLock{}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	release := func() {
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
	if !l.mu.TryLock() {
		release()
		return nil, false
	}
	return func() {
		l.mu.Unlock()
		release()
	}, true
}

// lock takes the locks of keys in sorted order and returns the function
// that releases them.
func (k *keyedLocks) lock(keys ...string) (unlock func()) {
	keys = slices.Clone(keys)
	slices.Sort(keys)
	keys = slices.Compact(keys)
	held := make([]*keyedLock, len(keys))
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedLock{}
	}
	for i, key := range keys {
		l := k.m[key]
		if l == nil {
			l = &keyedLock{}
			k.m[key] = l
		}
		l.refs++
		held[i] = l
	}
	k.mu.Unlock()
	for _, l := range held {
		l.mu.Lock()
	}
	return func() {
		for i := len(held) - 1; i >= 0; i-- {
			held[i].mu.Unlock()
		}
		k.mu.Lock()
		for i, key := range keys {
			if held[i].refs--; held[i].refs == 0 {
				delete(k.m, key)
			}
		}
		k.mu.Unlock()
	}
}

// spec turns a CEN and its members' containers into what netfab realizes.
// Only members that run have a port; the wiring follows from every
// member, running or not, so a member that stops and starts again finds
// the CEN as it was.
// A member of a TAP runtime (an emulated VM) gets a TAP on the bridge
// instead of a veth.
//
// Only this host's members have ports here. A CEN that spans hosts is a
// bridge with a VXLAN port on each host that has a part of it; only its
// router's bridge has the gateway's MAC. A host with no part holds
// nothing of the CEN.
func (s *Service) spec(c *graph.CEN, ctrs map[graph.Member]*graph.Container) *netfab.CEN {
	sp := &netfab.CEN{ID: c.ID, Name: c.IfName, Group: c.Group, BridgeMAC: cen.BridgeMAC(c.ID), Plan: cen.WiringOf(c)}
	if !s.hasPart(c) {
		sp.Plan = graph.WiringNone
		return sp
	}
	if len(c.Hosts()) > 1 {
		sp.VXLAN = s.vxlan(c)
		if c.Router != s.host {
			sp.BridgeMAC = cen.HostBridgeMAC(c.ID, s.host)
		}
	}
	for _, m := range c.Members {
		if m.Host != s.host {
			continue
		}
		ctr := ctrs[m]
		if !ctr.Running() {
			continue
		}
		p := netfab.Port{
			Member: m.Container,
			Netns:  ctr.Netns,
			HostIf: cen.HostIfName(c.ID, m),
			MAC:    cen.MAC(c.ID, m),
			Impair: impairment(c.Links[m.Key()]),
		}
		if tr := s.tapRuntimeOf(ctr); tr != nil {
			p.Netns, p.TAP = "", tr.TAPPort(ctr)
		}
		sp.Ports = append(sp.Ports, p)
	}
	return sp
}

// withMembers returns a copy of c with members ms.
// A member that left takes its link settings along.
func withMembers(c *graph.CEN, ms []graph.Member) *graph.CEN {
	n := *c
	n.Members = ms
	n.Links, n.TAPMembers = nil, nil
	for _, m := range ms {
		if l := c.Links[m.Key()]; l != nil {
			if n.Links == nil {
				n.Links = map[string]*graph.LinkSettings{}
			}
			n.Links[m.Key()] = l
		}
		if slices.Contains(c.TAPMembers, m.Key()) {
			n.TAPMembers = append(n.TAPMembers, m.Key())
		}
	}
	return &n
}

// markTAPMembers records in c which members are TAP members.
func (s *Service) markTAPMembers(c *graph.CEN, ctrs map[graph.Member]*graph.Container) {
	c.TAPMembers = nil
	for _, m := range c.Members {
		if ctr := ctrs[m]; ctr != nil && s.tapRuntimeOf(ctr) != nil {
			c.TAPMembers = append(c.TAPMembers, m.Key())
		}
	}
}

// wired reports whether a member of a made CEN has its link in the
// kernel: it runs and, on a wire, so does the other end (one veth pair:
// when either end's namespace goes, the pair goes).
func wired(n *graph.CEN, m graph.Member, ctrs map[graph.Member]*graph.Container) bool {
	if !ctrs[m].Running() {
		return false
	}
	if cen.WiringOf(n) == graph.WiringWire {
		for _, o := range n.Members {
			if !ctrs[o].Running() {
				return false
			}
		}
	}
	return true
}

// uniqueContainers drops repeated containers, keeping the first of each.
func uniqueContainers(cs []*graph.Container) []*graph.Container {
	seen := map[*graph.Container]bool{}
	return slices.DeleteFunc(cs, func(c *graph.Container) bool {
		dup := seen[c]
		seen[c] = true
		return dup
	})
}

// containersOf reads the containers of the given members.
func containersOf(tx graph.Tx, ms []graph.Member, into map[graph.Member]*graph.Container) error {
	for _, m := range ms {
		if into[m] != nil {
			continue
		}
		ctr, err := graph.GetContainer(tx, m.Host, m.Container)
		if err != nil {
			return err
		}
		into[m] = ctr
	}
	return nil
}

// putCEN writes a CEN changed by this host's API: the other hosts
// realize their part of it, this host did its own.
func (s *Service) putCEN(tx graph.Tx, c *graph.CEN) error {
	c.OpHost = s.host
	return graph.PutCEN(tx, c)
}

// putCIN writes a CIN changed by this host's API (see putCEN).
func (s *Service) putCIN(tx graph.Tx, c *graph.CIN) error {
	c.OpHost = s.host
	return graph.PutCIN(tx, c)
}
