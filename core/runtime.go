package core

import (
	"context"
	"fmt"
	"slices"

	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/netfab"
)

// Sandbox is where a runtime keeps a container's network.
type Sandbox struct {
	Runtime string // graph.Runtime*
	Netns   string // path usable with nsenter --net=
	Owned   bool   // leviathan creates and removes the namespace
}

// Runtime finds containers' network namespaces. The Docker runtime (a
// later addition) plugs in here, before the netns runtime.
type Runtime interface {
	Name() string
	// Lookup returns the sandbox of container id, ok false when this
	// runtime has no such container.
	Lookup(ctx context.Context, id string) (sb Sandbox, ok bool, err error)
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
}

// Name implements Runtime.
func (r *NetnsRuntime) Name() string { return graph.RuntimeNetns }

// Lookup implements Runtime; it claims every ID.
func (r *NetnsRuntime) Lookup(ctx context.Context, id string) (Sandbox, bool, error) {
	name := r.Prefix + id
	if name == r.Fabric {
		return Sandbox{}, false, graph.Errorf(graph.ErrConflict, "container %q would be the fabric namespace %q", id, r.Fabric)
	}
	path := netfab.NetnsPath(name)
	if netfab.IsNetns(path) {
		return Sandbox{Runtime: graph.RuntimeNamed, Netns: path}, true, nil
	}
	return Sandbox{Runtime: graph.RuntimeNetns, Netns: path, Owned: true}, true, nil
}

// resolve finds which runtime container id belongs to.
func (s *Service) resolve(ctx context.Context, host, id string) (*graph.Container, error) {
	for _, r := range s.runtimes {
		sb, ok, err := r.Lookup(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("container %q: %s runtime: %w", id, r.Name(), err)
		}
		if ok {
			return &graph.Container{Host: host, ID: id, Runtime: sb.Runtime, Netns: sb.Netns, Owned: sb.Owned}, nil
		}
	}
	return nil, graph.Errorf(graph.ErrNotFound, "container %q: no runtime knows it", id)
}

// ensureNetns creates, in parallel, the missing namespaces of the
// containers whose namespace leviathan owns. A missing namespace of
// another runtime is left for the kernel work to report on its member.
func (s *Service) ensureNetns(ctx context.Context, ctrs []*graph.Container) error {
	var create []string
	for _, c := range ctrs {
		if c.Owned && !netfab.IsNetns(c.Netns) {
			create = append(create, c.Netns)
		}
	}
	if len(create) == 0 {
		return nil
	}
	slices.Sort(create)
	create = slices.Compact(create)
	keys := make([]string, len(create))
	for i, p := range create {
		keys[i] = "netns:" + p
	}
	defer s.locks.lock(keys...)()
	return netfab.CreateNetns(ctx, create, 2)
}
