package core

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/leviathan-net/leviathan/cen"
	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/netfab"
)

// InterfaceView is one of a container's CEN interfaces.
type InterfaceView struct {
	CEN  string  `json:"cenID"`
	Name string  `json:"name"`
	MAC  string  `json:"mac"`
	IP   *string `json:"ipaddress"`
	CIN  *string `json:"cinID"`
}

// ContainerView is a container as the API shows it.
type ContainerView struct {
	Host       string          `json:"hostID"`
	ID         string          `json:"containerID"`
	Runtime    string          `json:"runtime"`
	Netns      string          `json:"netns"`
	Tag        *string         `json:"tag"`
	CENs       []string        `json:"cenIDs"`
	Interfaces []InterfaceView `json:"interfaces"`
}

func viewContainer(c *graph.Container, cens []*graph.CEN) ContainerView {
	v := ContainerView{Host: c.Host, ID: c.ID, Runtime: c.Runtime, Netns: c.Netns, CENs: []string{}, Interfaces: []InterfaceView{}}
	if c.Tag != "" {
		v.Tag = &c.Tag
	}
	m := c.Member()
	for _, n := range cens {
		if !n.HasMember(m) {
			continue
		}
		v.CENs = append(v.CENs, n.ID)
		if n.State == graph.StateMade && cen.Plan(len(n.Members)) != graph.WiringNone {
			v.Interfaces = append(v.Interfaces, InterfaceView{CEN: n.ID, Name: n.IfName, MAC: cen.MAC(n.ID, m).String()})
		}
	}
	return v
}

// censOf returns the CENs that have m as a member.
func censOf(tx graph.Tx, m graph.Member) ([]*graph.CEN, error) {
	all, err := graph.ListCENs(tx)
	return slices.DeleteFunc(all, func(c *graph.CEN) bool { return !c.HasMember(m) }), err
}

// RegisterContainer registers a container on a host, creating its network
// namespace when the netns runtime owns it. Registering again updates the
// tag when one is given; created says whether it was new.
func (s *Service) RegisterContainer(ctx context.Context, host, id string, tag *string) (v ContainerView, created bool, err error) {
	if err := s.checkHost(host); err != nil {
		return v, false, err
	}
	if err := graph.ValidateID("container", id); err != nil {
		return v, false, err
	}
	if tag != nil && *tag != "" {
		if err := graph.ValidateID("tag", *tag); err != nil {
			return v, false, err
		}
	}
	m := graph.Member{Host: host, Container: id}
	defer s.locks.lock(ctrKey(m))()
	var c *graph.Container
	err = s.store.View(func(tx graph.Tx) error {
		c, err = graph.GetContainer(tx, host, id)
		return err
	})
	switch {
	case errors.Is(err, graph.ErrNotFound):
		if c, err = s.resolve(ctx, host, id); err != nil {
			return v, false, err
		}
		created = true
	case err != nil:
		return v, false, err
	}
	if tag != nil {
		c.Tag = *tag
	}
	// Record first, then create: a crash in between leaves a record whose
	// namespace reconcile creates, never a namespace nobody knows.
	var cens []*graph.CEN
	err = s.store.Update(func(tx graph.Tx) error {
		if cens, err = censOf(tx, m); err != nil {
			return err
		}
		return graph.PutContainer(tx, c)
	})
	if err != nil {
		return v, false, err
	}
	if err := s.ensureNetns(ctx, []*graph.Container{c}); err != nil {
		if created {
			s.store.Update(func(tx graph.Tx) error { return graph.DeleteContainer(tx, host, id) })
		}
		return v, false, err
	}
	return viewContainer(c, cens), created, nil
}

// ListContainers returns every container of a host, by ID.
func (s *Service) ListContainers(ctx context.Context, host string) ([]ContainerView, error) {
	if err := s.checkHost(host); err != nil {
		return nil, err
	}
	out := []ContainerView{}
	err := s.store.View(func(tx graph.Tx) error {
		cs, err := graph.ListContainers(tx)
		if err != nil {
			return err
		}
		all, err := graph.ListCENs(tx)
		for _, c := range cs {
			if c.Host == host {
				out = append(out, viewContainer(c, all))
			}
		}
		return err
	})
	return out, err
}

// GetContainer returns a container with its interfaces.
func (s *Service) GetContainer(ctx context.Context, host, id string) (v ContainerView, err error) {
	if err := s.checkHost(host); err != nil {
		return v, err
	}
	if err := graph.ValidateID("container", id); err != nil {
		return v, err
	}
	err = s.store.View(func(tx graph.Tx) error {
		c, err := graph.GetContainer(tx, host, id)
		if err != nil {
			return err
		}
		all, err := graph.ListCENs(tx)
		v = viewContainer(c, all)
		return err
	})
	return v, err
}

// AddMember adds a container to a CEN, registering the container if it is
// new. On a made CEN the kernel follows at once, re-wiring between wire and
// bridge as the member count crosses 2 and 3.
func (s *Service) AddMember(ctx context.Context, host, id, cenID string) (CENView, error) {
	return s.changeMember(ctx, host, id, cenID, true)
}

// RemoveMember removes a container from a CEN; the kernel follows at once
// on a made CEN.
func (s *Service) RemoveMember(ctx context.Context, host, id, cenID string) (CENView, error) {
	return s.changeMember(ctx, host, id, cenID, false)
}

func (s *Service) changeMember(ctx context.Context, host, id, cenID string, add bool) (v CENView, err error) {
	if err := s.checkHost(host); err != nil {
		return v, err
	}
	if err := graph.ValidateID("container", id); err != nil {
		return v, err
	}
	if err := graph.ValidateID("CEN", cenID); err != nil {
		return v, err
	}
	m := graph.Member{Host: host, Container: id}
	defer s.locks.lock(cenKey(cenID), ctrKey(m))()

	cs, ctrs, err := s.loadCENs([]string{cenID})
	if err != nil {
		return v, err
	}
	c := cs[0]
	var fresh *graph.Container // a container this change registers
	if err := s.store.View(func(tx graph.Tx) error {
		return containersOf(tx, []graph.Member{m}, ctrs)
	}); errors.Is(err, graph.ErrNotFound) && add {
		if fresh, err = s.resolve(ctx, host, id); err != nil {
			return v, err
		}
		ctrs[m] = fresh
	} else if err != nil {
		return v, err
	}

	next := slices.Clone(c.Members)
	switch {
	case add && c.HasMember(m):
		return viewCEN(c), nil // already a member
	case !add && !c.HasMember(m):
		return v, graph.Errorf(graph.ErrNotFound, "container %q is not a member of CEN %q", id, cenID)
	case add:
		next = append(next, m)
	default:
		next = slices.DeleteFunc(next, func(x graph.Member) bool { return x == m })
	}
	nc := withMembers(c, next)

	if c.State == graph.StateMade {
		createdNs := false
		if add {
			createdNs = ctrs[m].Owned && !netfab.IsNetns(ctrs[m].Netns)
			if err := s.ensureNetns(ctx, []*graph.Container{ctrs[m]}); err != nil {
				return v, err
			}
		}
		if err := s.fab.Apply(ctx, spec(c, ctrs), spec(nc, ctrs)); err != nil {
			if fresh != nil && createdNs {
				netfab.DeleteNetns(fresh.Netns)
			}
			return v, fmt.Errorf("CEN %s: %w", cenID, err)
		}
	}
	err = s.store.Update(func(tx graph.Tx) error {
		if fresh != nil {
			if err := graph.PutContainer(tx, fresh); err != nil {
				return err
			}
		}
		return graph.PutCEN(tx, nc)
	})
	if err == nil && fresh != nil {
		if err := s.ensureNetns(ctx, []*graph.Container{fresh}); err != nil {
			s.log.Warn("creating a container namespace", "container", id, "err", err)
		}
	}
	return viewCEN(nc), err
}

// DeleteContainer removes a container from every CEN it is in (re-wiring
// made ones), deletes the namespace leviathan created for it, and forgets
// it.
func (s *Service) DeleteContainer(ctx context.Context, host, id string) error {
	if err := s.checkHost(host); err != nil {
		return err
	}
	if err := graph.ValidateID("container", id); err != nil {
		return err
	}
	m := graph.Member{Host: host, Container: id}
	for {
		// Find the container's CENs, lock them, and check they are still
		// its CENs; else a membership change came in between: again.
		var ids []string
		if err := s.store.View(func(tx graph.Tx) error {
			if _, err := graph.GetContainer(tx, host, id); err != nil {
				return err
			}
			cs, err := censOf(tx, m)
			for _, c := range cs {
				ids = append(ids, c.ID)
			}
			return err
		}); err != nil {
			return err
		}
		done, err := s.deleteContainerLocked(ctx, m, ids)
		if done || err != nil {
			return err
		}
	}
}

func (s *Service) deleteContainerLocked(ctx context.Context, m graph.Member, ids []string) (done bool, err error) {
	keys := []string{ctrKey(m)}
	for _, id := range ids {
		keys = append(keys, cenKey(id))
	}
	defer s.locks.lock(keys...)()
	var ctr *graph.Container
	var cs []*graph.CEN
	if err := s.store.View(func(tx graph.Tx) error {
		if ctr, err = graph.GetContainer(tx, m.Host, m.Container); err != nil {
			return err
		}
		cs, err = censOf(tx, m)
		return err
	}); err != nil {
		return false, err
	}
	now := make([]string, len(cs))
	for i, c := range cs {
		now[i] = c.ID
	}
	if !slices.Equal(now, ids) {
		return false, nil
	}
	ctrs := map[graph.Member]*graph.Container{}
	if err := s.store.View(func(tx graph.Tx) error {
		for _, c := range cs {
			if err := containersOf(tx, c.Members, ctrs); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return false, err
	}
	// Re-wire made CENs one by one, committing each as it succeeds so the
	// graph always says what the kernel holds.
	for _, c := range cs {
		nc := withMembers(c, slices.DeleteFunc(slices.Clone(c.Members), func(x graph.Member) bool { return x == m }))
		if c.State == graph.StateMade {
			if err := s.fab.Apply(ctx, spec(c, ctrs), spec(nc, ctrs)); err != nil {
				return false, fmt.Errorf("remove container %q from CEN %s: %w", m.Container, c.ID, err)
			}
		}
		if err := s.store.Update(func(tx graph.Tx) error { return graph.PutCEN(tx, nc) }); err != nil {
			return false, err
		}
	}
	// The namespace goes before the record: a crash in between leaves a
	// record (whose namespace reconcile recreates), never an unknown
	// namespace.
	if ctr.Owned {
		if err := netfab.DeleteNetns(ctr.Netns); err != nil {
			return false, err
		}
	}
	return true, s.store.Update(func(tx graph.Tx) error { return graph.DeleteContainer(tx, m.Host, m.Container) })
}
