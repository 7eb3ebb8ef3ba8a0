package cpool

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/cpool/dockerrt"
	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/monitor"
)

// View is a pool as the API shows it.
type View struct {
	ID        string      `json:"cpoolID"`
	Image     string      `json:"type"`
	StartWith int         `json:"start_with"`
	CINs      []CINView   `json:"cins"`
	Members   []string    `json:"members"`
	State     graph.State `json:"state"`
	Error     string      `json:"error,omitempty"`
	// Containers are the members with their own state.
	Containers []core.MemberView `json:"containers"`
}

// CINView is one entry of a pool's cins, with the CEN its containers
// join.
type CINView struct {
	ID           string `json:"cinID"`
	CEN          string `json:"cenID"`
	DefaultRoute bool   `json:"default_route"`
}

// Failure handling: a container that exits within failFast of its start
// counts as a failure, and the pool waits before starting it again, from
// backoffMin doubling to backoffMax.
const (
	failFast   = 10 * time.Second
	backoffMin = time.Second
	backoffMax = time.Minute
	logLines   = 5
)

// Create records the pools of a CPool file, all or none, and launches
// their containers: it returns when they run and are wired (or with the
// reason they do not). A cinID names a CIN, whose containers then join
// the CIN's first CEN, or else a CEN.
func (m *Manager) Create(ctx context.Context, specs []Spec) ([]View, error) {
	if err := m.engine(); err != nil {
		return nil, err
	}
	for _, sp := range specs {
		ok, err := m.eng.HasImage(ctx, sp.Image)
		if err != nil {
			return nil, dockerErr(err)
		}
		if !ok {
			return nil, graph.Errorf(graph.ErrConflict, "CPool %s: image %q is not in the Docker engine, and leviathan never pulls (docker load or docker import it first)", sp.ID, sp.Image)
		}
	}
	var pools []*graph.CPool
	err := m.store.Update(func(tx graph.Tx) error {
		pools = pools[:0]
		for _, sp := range specs {
			if _, err := graph.GetCPool(tx, sp.ID); err == nil {
				return graph.Errorf(graph.ErrConflict, "CPool %q exists: change its size with PUT /cpool/%s, or DELETE it first", sp.ID, sp.ID)
			} else if !errors.Is(err, graph.ErrNotFound) {
				return err
			}
			p := &graph.CPool{ID: sp.ID, Image: sp.Image, StartWith: sp.StartWith, CINs: []graph.PoolCIN{}, Next: 1, State: graph.StatePending, Host: m.host}
			for _, c := range sp.CINs {
				cen, err := resolveCEN(tx, c.ID)
				if err != nil {
					return fmt.Errorf("CPool %s: %w", sp.ID, err)
				}
				p.CINs = append(p.CINs, graph.PoolCIN{ID: c.ID, CEN: cen, DefaultRoute: c.DefaultRoute})
			}
			if err := graph.PutCPool(tx, p); err != nil {
				return err
			}
			pools = append(pools, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, p := range pools {
		m.publish(p, monitor.ActionCPoolCreated)
	}
	views := make([]View, len(pools))
	var errs []error
	for i, p := range pools {
		core.Progress(ctx, i, len(pools))
		v, err := m.syncPool(ctx, p.ID)
		views[i] = v
		if err != nil {
			errs = append(errs, err)
		}
	}
	return views, errors.Join(errs...)
}

// resolveCEN finds the CEN a pool's cinID names: a CIN's first CEN, or
// the CEN itself.
func resolveCEN(tx graph.Tx, id string) (string, error) {
	ci, err := graph.GetCIN(tx, id)
	switch {
	case err == nil:
		if len(ci.CENs) == 0 {
			return "", graph.Errorf(graph.ErrConflict, "CIN %q spans no CEN for the pool's containers to join", id)
		}
		return ci.CENs[0], nil
	case !errors.Is(err, graph.ErrNotFound):
		return "", err
	}
	if _, err := graph.GetCEN(tx, id); err != nil {
		if errors.Is(err, graph.ErrNotFound) {
			return "", graph.Errorf(graph.ErrNotFound, "cinID %q names no CIN and no CEN", id)
		}
		return "", err
	}
	return id, nil
}

// Get returns one pool.
func (m *Manager) Get(ctx context.Context, id string) (View, error) {
	if err := graph.ValidateID("CPool", id); err != nil {
		return View{}, err
	}
	var v View
	err := m.store.View(func(tx graph.Tx) error {
		p, err := graph.GetCPool(tx, id)
		if err != nil {
			return err
		}
		ctrs, err := graph.ListContainers(tx)
		v = m.view(p, ctrs)
		return err
	})
	return v, err
}

// List returns every pool, by ID.
func (m *Manager) List(ctx context.Context) ([]View, error) {
	out := []View{}
	err := m.store.View(func(tx graph.Tx) error {
		ps, err := graph.ListCPools(tx)
		if err != nil {
			return err
		}
		ctrs, err := graph.ListContainers(tx)
		for _, p := range ps {
			out = append(out, m.view(p, ctrs))
		}
		return err
	})
	return out, err
}

// view shows a pool with its members: the containers of this host that
// carry its tag and run on Docker.
func (m *Manager) view(p *graph.CPool, ctrs []*graph.Container) View {
	v := View{ID: p.ID, Image: p.Image, StartWith: p.StartWith, CINs: []CINView{}, Members: []string{}, Containers: []core.MemberView{}, State: p.State, Error: p.Error}
	for _, c := range p.CINs {
		v.CINs = append(v.CINs, CINView{ID: c.ID, CEN: c.CEN, DefaultRoute: c.DefaultRoute})
	}
	for _, c := range ctrs {
		if c.Host == m.host && c.Runtime == graph.RuntimeDocker && c.Tag == p.ID && isPoolName(p.ID, c.ID) {
			v.Members = append(v.Members, c.ID)
			v.Containers = append(v.Containers, core.MemberView{Host: c.Host, Container: c.ID, State: c.State, Error: c.Error})
		}
	}
	return v
}

// Scale sets a pool's size and launches or removes containers to reach
// it.
func (m *Manager) Scale(ctx context.Context, id string, n int) (View, error) {
	if err := graph.ValidateID("CPool", id); err != nil {
		return View{}, err
	}
	if n < 0 || n > MaxStartWith {
		return View{}, graph.Errorf(graph.ErrInvalid, "start_with: want a whole number from 0 to %d, got %d", MaxStartWith, n)
	}
	if err := m.engine(); err != nil {
		return View{}, err
	}
	unlock := m.lock(id)
	err := m.store.Update(func(tx graph.Tx) error {
		p, err := graph.GetCPool(tx, id)
		if err != nil {
			return err
		}
		if err := m.mine(p); err != nil {
			return err
		}
		p.StartWith = n
		return graph.PutCPool(tx, p)
	})
	unlock()
	if err != nil {
		return View{}, err
	}
	m.clearBackoff(id)
	return m.syncPool(ctx, id)
}

// Delete removes a pool's containers, their wiring and addresses, and
// the pool.
func (m *Manager) Delete(ctx context.Context, id string) error {
	if err := graph.ValidateID("CPool", id); err != nil {
		return err
	}
	if err := m.engine(); err != nil {
		return err
	}
	defer m.lock(id)()
	var p *graph.CPool
	if err := m.store.View(func(tx graph.Tx) (err error) {
		if p, err = graph.GetCPool(tx, id); err != nil {
			return err
		}
		return m.mine(p)
	}); err != nil {
		return err
	}
	cs, err := m.eng.List(ctx, LabelPool, id)
	if err != nil {
		return dockerErr(err)
	}
	if err := m.removeAll(ctx, cs); err != nil {
		return err
	}
	m.clearBackoff(id)
	if err := m.store.Update(func(tx graph.Tx) error { return graph.DeleteCPool(tx, id) }); err != nil {
		return err
	}
	p.State = stateDeleted
	m.publish(p, monitor.ActionCPoolDeleted)
	return nil
}

const stateDeleted graph.State = "deleted"

// removeAll takes containers out of leviathan (their CENs re-wire and
// their addresses are freed) and out of Docker, concurrently.
func (m *Manager) removeAll(ctx context.Context, cs []dockerrt.Container) error {
	return m.each(ctx, len(cs), func(i int) error {
		if err := m.svc.DeleteContainer(ctx, m.host, cs[i].Name); err != nil && !errors.Is(err, graph.ErrNotFound) {
			return err
		}
		return dockerErr(m.eng.Remove(ctx, cs[i].ID))
	})
}

// each runs fn for 0..n-1 with at most m.launches at once.
func (m *Manager) each(ctx context.Context, n int, fn func(i int) error) error {
	var g errgroup.Group
	g.SetLimit(m.launches)
	errs := make([]error, n)
	for i := range n {
		if err := ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		g.Go(func() error { errs[i] = fn(i); return nil })
	}
	g.Wait()
	return errors.Join(errs...)
}

// dockerErr maps an engine that does not answer to a 503.
func dockerErr(err error) error {
	if errors.Is(err, dockerrt.ErrUnavailable) {
		return graph.Errorf(graph.ErrUnavailable, "%w", err)
	}
	return err
}

// poolName is the Docker name (and leviathan ID) of a pool's n-th
// container.
func poolName(pool string, n int) string { return pool + "-" + strconv.Itoa(n) }

// poolIndex is n of a pool container's name, 0 when it is not one.
func poolIndex(pool, name string) int {
	rest, ok := strings.CutPrefix(name, pool+"-")
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 1 {
		return 0
	}
	return n
}

func isPoolName(pool, name string) bool { return poolIndex(pool, name) > 0 }

// sortByIndex orders a pool's containers by their number.
func sortByIndex(pool string, cs []dockerrt.Container) {
	slices.SortFunc(cs, func(a, b dockerrt.Container) int { return poolIndex(pool, a.Name) - poolIndex(pool, b.Name) })
}
