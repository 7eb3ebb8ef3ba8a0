package core

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/monitor"
	"github.com/leviathan-net/leviathan/netfab"
)

// Sandbox is where a runtime keeps a container's network, as it is now.
type Sandbox struct {
	Runtime string // graph.Runtime*
	// Netns is a path usable with nsenter --net= while the container
	// runs; it may change when the container restarts (Docker).
	Netns string
	Owned bool // leviathan creates and removes the namespace
	// Running says the container's namespace exists now, so its links
	// can be made. A member that is not running is kept in its CENs and
	// wired when it runs again.
	Running bool
	// Error says why a container does not run, when the runtime knows
	// (it exited with a code, it was removed, the engine is gone).
	Error string
}

// Runtime finds containers' network namespaces and tells, when asked,
// whether they run. Runtimes are level-triggered: Observe reports what
// is, and core makes the kernel follow.
type Runtime interface {
	Name() string
	// Lookup returns the sandbox of container id, ok false when this
	// runtime has no such container.
	Lookup(ctx context.Context, id string) (sb Sandbox, ok bool, err error)
	// Owns reports whether a recorded container is this runtime's.
	Owns(c *graph.Container) bool
	// Observe brings up the sandboxes this runtime keeps itself (the
	// netns runtime creates the namespaces it owns) and returns each
	// container's sandbox as it is now, in the order of ctrs.
	Observe(ctx context.Context, ctrs []*graph.Container) ([]Sandbox, error)
	// Release frees what the runtime keeps for a container that is being
	// forgotten (an owned namespace); it must not fail for one that is
	// already gone.
	Release(ctx context.Context, c *graph.Container) error
}

// TAPRuntime is a Runtime whose members have no namespace: emulated VMs.
// netfab gives each member a TAP on its CEN's bridge (so such a CEN is
// always a bridge), and the member relays its frames to it; in a made
// CIN its address is set through SetAddress, not netlink.
type TAPRuntime interface {
	Runtime
	// TAPPort is the member's side of its TAP.
	TAPPort(c *graph.Container) netfab.TAPPort
	// SetAddress gives a member its address and gateway in a CIN (a
	// zero addr takes it away). It is called again with the same values
	// freely: it must then change nothing.
	SetAddress(ctx context.Context, c *graph.Container, addr netip.Prefix, gw netip.Addr) error
}

// tapRuntimeOf returns a container's runtime when it is a TAP runtime.
func (s *Service) tapRuntimeOf(c *graph.Container) TAPRuntime {
	for _, r := range s.runtimes {
		if tr, ok := r.(TAPRuntime); ok && r.Owns(c) {
			return tr
		}
	}
	return nil
}

// Namespaces is the kernel's side of named network namespaces, as the
// netns runtime uses it (netfab.Fabric).
type Namespaces interface {
	// NetnsPath is the path of the named namespace name.
	NetnsPath(name string) string
	IsNetns(path string) bool
	// CreateNetns creates the namespaces in paths that do not exist.
	CreateNetns(ctx context.Context, paths []string) error
	// DeleteNetns deletes one; a missing one is not an error.
	DeleteNetns(path string) error
}

// NetnsRuntime is the embedded default that needs nothing but a Linux
// kernel: a container ID names an existing named network namespace, or
// else one that leviathan creates for it. Prefix (empty by default) is put
// before the ID to form the namespace's name, which keeps test runs apart
// from a machine's own namespaces.
type NetnsRuntime struct {
	Prefix string
	// Fabric is the fabric namespace's name, which no container may claim.
	Fabric string
	NS     Namespaces

	locks keyedLocks // one creation of a namespace at a time
}

// Name implements Runtime.
func (r *NetnsRuntime) Name() string { return graph.RuntimeNetns }

// Lookup implements Runtime; it claims every ID.
func (r *NetnsRuntime) Lookup(ctx context.Context, id string) (Sandbox, bool, error) {
	name := r.Prefix + id
	if name == r.Fabric {
		return Sandbox{}, false, graph.Errorf(graph.ErrConflict, "container %q would be the fabric namespace %q", id, r.Fabric)
	}
	path := r.NS.NetnsPath(name)
	if r.NS.IsNetns(path) {
		return Sandbox{Runtime: graph.RuntimeNamed, Netns: path, Running: true}, true, nil
	}
	return Sandbox{Runtime: graph.RuntimeNetns, Netns: path, Owned: true}, true, nil
}

// Owns implements Runtime.
func (r *NetnsRuntime) Owns(c *graph.Container) bool {
	return c.Runtime == graph.RuntimeNetns || c.Runtime == graph.RuntimeNamed
}

// Observe implements Runtime: the namespaces leviathan owns are created
// when missing (in parallel); a named namespace that is gone makes its
// container not running, until someone creates it again.
func (r *NetnsRuntime) Observe(ctx context.Context, ctrs []*graph.Container) ([]Sandbox, error) {
	var create []string
	for _, c := range ctrs {
		if c.Owned && !r.NS.IsNetns(c.Netns) {
			create = append(create, c.Netns)
		}
	}
	if len(create) > 0 {
		slices.Sort(create)
		create = slices.Compact(create)
		keys := make([]string, len(create))
		for i, p := range create {
			keys[i] = "netns:" + p
		}
		unlock := r.locks.lock(keys...)
		err := r.NS.CreateNetns(ctx, create)
		unlock()
		if err != nil {
			return nil, err
		}
	}
	out := make([]Sandbox, len(ctrs))
	for i, c := range ctrs {
		out[i] = Sandbox{Runtime: c.Runtime, Netns: c.Netns, Owned: c.Owned, Running: r.NS.IsNetns(c.Netns)}
	}
	return out, nil
}

// Release implements Runtime: an owned namespace is deleted, with every
// link in it; a named one is left to whoever made it.
func (r *NetnsRuntime) Release(ctx context.Context, c *graph.Container) error {
	if !c.Owned {
		return nil
	}
	return r.NS.DeleteNetns(c.Netns)
}

// resolve finds which runtime container id belongs to. A container of
// another host is that host's to resolve: it is recorded pending, and
// that host's realizer finds it (adoptContainers).
func (s *Service) resolve(ctx context.Context, host, id string) (*graph.Container, error) {
	if host != s.host {
		return &graph.Container{Host: host, ID: id, State: graph.StatePending}, nil
	}
	for _, r := range s.runtimes {
		sb, ok, err := r.Lookup(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("container %q: %s runtime: %w", id, r.Name(), err)
		}
		if ok {
			c := &graph.Container{Host: host, ID: id, Runtime: sb.Runtime, Netns: sb.Netns, Owned: sb.Owned}
			c.State = runState(sb.Running)
			return c, nil
		}
	}
	return nil, graph.Errorf(graph.ErrNotFound, "container %q: no runtime knows it", id)
}

// runtimeOf returns the runtime a recorded container belongs to.
func (s *Service) runtimeOf(c *graph.Container) (Runtime, error) {
	for _, r := range s.runtimes {
		if r.Owns(c) {
			return r, nil
		}
	}
	return nil, graph.Errorf(graph.ErrUnavailable, "container %q: its %s runtime is not available", c.ID, c.Runtime)
}

func runState(running bool) graph.State {
	if running {
		return graph.StateRunning
	}
	return graph.StateStopped
}

// observe asks each container's runtime how it is now, bringing up what
// runtimes keep themselves, and updates ctrs in place (netns, state). It
// returns the containers whose state or namespace changed. A container
// whose runtime is unavailable (Docker gone) is taken as not running.
// Containers of other hosts are theirs to observe: they are left alone.
func (s *Service) observe(ctx context.Context, ctrs []*graph.Container) (changed []*graph.Container, err error) {
	byRT := map[Runtime][]*graph.Container{}
	var order []Runtime
	for _, c := range ctrs {
		if c.Host != s.host {
			continue
		}
		r, rerr := s.runtimeOf(c)
		if rerr != nil {
			if c.State != graph.StateStopped {
				c.State, c.Error = graph.StateStopped, rerr.Error()
				changed = append(changed, c)
			}
			continue
		}
		if byRT[r] == nil {
			order = append(order, r)
		}
		byRT[r] = append(byRT[r], c)
	}
	for _, r := range order {
		cs := byRT[r]
		sbs, err := r.Observe(ctx, cs)
		if err != nil {
			return changed, fmt.Errorf("%s runtime: %w", r.Name(), err)
		}
		for i, c := range cs {
			sb := sbs[i]
			st := runState(sb.Running)
			if st != c.State || (sb.Running && sb.Netns != c.Netns) || sb.Error != c.Error {
				c.State, c.Error = st, sb.Error
				if sb.Netns != "" {
					c.Netns = sb.Netns
				}
				changed = append(changed, c)
			}
		}
	}
	return changed, nil
}

// refresh observes containers and records the state of those that
// changed. Only the observed fields are written, over the record as it
// is in the store, so a concurrent change of anything else stands.
func (s *Service) refresh(ctx context.Context, ctrs []*graph.Container) error {
	changed, err := s.observe(ctx, ctrs)
	if err != nil || len(changed) == 0 {
		return err
	}
	return s.commit(func(tx graph.Tx) error { return recordObserved(tx, changed) },
		func() []monitor.Event { return containerEvents(changed) })
}

// recordObserved writes the observed fields of containers that are still
// recorded.
func recordObserved(tx graph.Tx, cs []*graph.Container) error {
	for _, c := range cs {
		cur, err := graph.GetContainer(tx, c.Host, c.ID)
		if errors.Is(err, graph.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		cur.State, cur.Error, cur.Netns = c.State, c.Error, c.Netns
		if err := graph.PutContainer(tx, cur); err != nil {
			return err
		}
	}
	return nil
}
