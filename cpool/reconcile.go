package cpool

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/cpool/dockerrt"
	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/monitor"
)

// syncPool brings one pool to what its record says, from what Docker
// holds now (found by the pool's label, so a restarted leviathan finds
// its containers again and launches nothing twice):
//   - containers beyond its size are removed, stopped ones and the
//     highest-numbered first;
//   - a container that stopped or died is started again, keeping its
//     name, interface names, MACs and addresses; one that exits within
//     failFast of its start is a failure, and the pool waits (backoff)
//     before it tries again;
//   - a container that was removed is replaced by a new one;
//   - every container is a member of the pool's CENs, wired while it
//     runs.
//
// It returns when the pool is at size, or with the reason it is not.
func (m *Manager) syncPool(ctx context.Context, id string) (View, error) {
	if err := m.engine(); err != nil {
		return View{}, err
	}
	defer m.lock(id)()
	p, err := m.readPool(id)
	if err != nil {
		return View{}, err
	}
	if err := m.mine(p); err != nil {
		return View{}, err
	}
	cs, err := m.eng.List(ctx, LabelPool, id)
	if err != nil {
		return m.finish(p, dockerErr(err))
	}
	if err := m.forgetRemoved(ctx, p, cs); err != nil {
		return m.finish(p, err)
	}

	// Too many: the stopped ones go first, then the highest-numbered.
	sortByIndex(id, cs)
	if extra := len(cs) - p.StartWith; extra > 0 {
		order := slices.Clone(cs)
		slices.SortStableFunc(order, func(a, b dockerrt.Container) int {
			if a.Running != b.Running {
				if a.Running {
					return 1
				}
				return -1
			}
			return poolIndex(id, b.Name) - poolIndex(id, a.Name)
		})
		gone := order[:extra]
		if err := m.removeAll(ctx, gone); err != nil {
			return m.finish(p, err)
		}
		cs = slices.DeleteFunc(cs, func(c dockerrt.Container) bool {
			return slices.ContainsFunc(gone, func(g dockerrt.Container) bool { return g.ID == c.ID })
		})
	}

	var dead []dockerrt.Container
	for _, c := range cs {
		if !c.Running {
			dead = append(dead, c)
		}
	}
	if why := m.noteFailures(ctx, id, dead); why != "" {
		p.Error = why
	}
	if wait := m.waiting(id); wait > 0 {
		p.State = graph.StateFailed
		return m.finish(p, nil)
	}

	// Start the stopped ones again, launch what is missing, and make
	// sure every running container is a member of the pool's CENs.
	err = m.each(ctx, len(dead), func(i int) error { return dockerErr(m.eng.Start(ctx, dead[i].ID)) })
	if err != nil {
		return m.finish(p, err)
	}
	missing := p.StartWith - len(cs)
	var names []string
	if missing > 0 {
		if names, err = m.reserveNames(p, missing); err != nil {
			return m.finish(p, err)
		}
	}
	launched := make([]string, len(names))
	err = m.each(ctx, len(names), func(i int) error {
		c, err := m.eng.Run(ctx, dockerrt.RunSpec{Name: names[i], Image: p.Image, Labels: map[string]string{LabelPool: id}})
		if err != nil {
			if errors.Is(err, dockerrt.ErrNoImage) {
				return graph.Errorf(graph.ErrConflict, "CPool %s: %w", id, err)
			}
			return dockerErr(err)
		}
		launched[i] = c.Name
		return nil
	})
	if err != nil {
		return m.finish(p, err)
	}
	var all []string
	for _, c := range cs {
		all = append(all, c.Name)
	}
	for _, n := range launched {
		if n != "" {
			all = append(all, n)
		}
	}
	if err := m.each(ctx, len(all), func(i int) error { return m.join(ctx, p, all[i]) }); err != nil {
		return m.finish(p, err)
	}
	// Containers started again are wired now, not only when their
	// start event comes round.
	var restarted []string
	for _, c := range dead {
		restarted = append(restarted, c.Name)
	}
	if err := m.svc.SyncContainers(ctx, m.host, restarted); err != nil {
		return m.finish(p, err)
	}

	// What runs now: a container that exited at once is a failure.
	now, err := m.eng.List(ctx, LabelPool, id)
	if err != nil {
		return m.finish(p, dockerErr(err))
	}
	running := 0
	var failed []dockerrt.Container
	for _, c := range now {
		if c.Running {
			running++
		} else {
			failed = append(failed, c)
		}
	}
	switch {
	case len(failed) > 0:
		p.State, p.Error = graph.StateFailed, m.noteFailures(ctx, id, failed)
		if p.Error == "" {
			p.Error = fmt.Sprintf("container %s stopped: %s", failed[0].Name, exitReason(failed[0]))
		}
	case running >= p.StartWith:
		p.State, p.Error = graph.StateConfigured, ""
		m.clearBackoff(id)
	default:
		p.State = graph.StatePending
	}
	return m.finish(p, nil)
}

// finish records a pool's state (and err, when it is the reason it is
// not at size) and returns its view with err.
func (m *Manager) finish(p *graph.CPool, err error) (View, error) {
	if errors.Is(err, context.Canceled) {
		// Work cut short (leviathan stopping) says nothing of the pool.
		return View{}, err
	}
	if err != nil {
		p.State, p.Error = graph.StateFailed, err.Error()
	}
	var v View
	var changed bool
	uerr := m.store.Update(func(tx graph.Tx) error {
		cur, gerr := graph.GetCPool(tx, p.ID)
		if gerr != nil {
			return gerr
		}
		changed = cur.State != p.State || cur.Error != p.Error
		cur.State, cur.Error = p.State, p.Error
		if p.Next > cur.Next {
			cur.Next = p.Next
		}
		if perr := graph.PutCPool(tx, cur); perr != nil {
			return perr
		}
		ctrs, lerr := graph.ListContainers(tx)
		v = m.view(cur, ctrs)
		return lerr
	})
	if uerr != nil {
		return v, errors.Join(err, uerr)
	}
	if changed {
		m.publish(p, monitor.ActionCPoolUpdated)
	}
	if err != nil {
		return v, fmt.Errorf("CPool %s: %w", p.ID, err)
	}
	if p.State == graph.StateFailed {
		return v, graph.Errorf(graph.ErrConflict, "CPool %s: %s", p.ID, p.Error)
	}
	return v, nil
}

func (m *Manager) readPool(id string) (p *graph.CPool, err error) {
	err = m.store.View(func(tx graph.Tx) error {
		p, err = graph.GetCPool(tx, id)
		return err
	})
	return p, err
}

// reserveNames takes the next n container numbers of a pool, recorded
// before any container is made: a crash in between wastes numbers, never
// reuses one.
func (m *Manager) reserveNames(p *graph.CPool, n int) ([]string, error) {
	var names []string
	err := m.store.Update(func(tx graph.Tx) error {
		names = names[:0]
		cur, err := graph.GetCPool(tx, p.ID)
		if err != nil {
			return err
		}
		for range n {
			names = append(names, poolName(p.ID, cur.Next))
			cur.Next++
		}
		p.Next = cur.Next
		return graph.PutCPool(tx, cur)
	})
	return names, err
}

// join makes a pool's container a member of the pool's CENs, tagged with
// the pool's ID; what it is already is left as it is.
func (m *Manager) join(ctx context.Context, p *graph.CPool, name string) error {
	var dr []string
	for _, c := range p.CINs {
		if c.DefaultRoute {
			dr = append(dr, c.CEN)
		}
	}
	v, err := m.svc.GetContainer(ctx, m.host, name)
	if errors.Is(err, graph.ErrNotFound) || err == nil && (v.Tag == nil || *v.Tag != p.ID) {
		v, _, err = m.svc.RegisterContainer(ctx, m.host, name, core.Registration{Tag: &p.ID, DefaultRouteCENs: dr})
	}
	if err != nil {
		return fmt.Errorf("container %s: %w", name, err)
	}
	for _, c := range p.CINs {
		if slices.Contains(v.CENs, c.CEN) {
			continue
		}
		if _, err := m.svc.AddMember(ctx, m.host, name, c.CEN); err != nil {
			return fmt.Errorf("container %s: join CEN %s: %w", name, c.CEN, err)
		}
	}
	return nil
}

// forgetRemoved takes out of leviathan the pool's containers that Docker
// no longer has (removed by hand): their CENs re-wire without them and
// their addresses are freed.
func (m *Manager) forgetRemoved(ctx context.Context, p *graph.CPool, cs []dockerrt.Container) error {
	have := map[string]bool{}
	for _, c := range cs {
		have[c.Name] = true
	}
	v, err := m.Get(ctx, p.ID)
	if err != nil {
		return err
	}
	for _, name := range v.Members {
		if have[name] {
			continue
		}
		if err := m.svc.DeleteContainer(ctx, m.host, name); err != nil && !errors.Is(err, graph.ErrNotFound) {
			return err
		}
	}
	return nil
}

// noteFailures looks at a pool's containers that do not run: one that
// ran for less than failFast counts as a failure, and the pool backs
// off. It returns what to show as the pool's error ("" when none of them
// failed that way).
func (m *Manager) noteFailures(ctx context.Context, id string, dead []dockerrt.Container) string {
	var fast *dockerrt.Container
	for i, c := range dead {
		if !c.StartedAt.IsZero() && !c.FinishedAt.IsZero() && c.FinishedAt.Sub(c.StartedAt) < failFast {
			fast = &dead[i]
			break
		}
	}
	if fast == nil {
		return ""
	}
	why := fmt.Sprintf("container %s exited with code %d after %s", fast.Name, fast.ExitCode, max(0, fast.FinishedAt.Sub(fast.StartedAt)).Round(time.Millisecond))
	if logs, err := m.eng.Logs(ctx, fast.ID, logLines); err == nil && strings.TrimSpace(logs) != "" {
		why += "; its last lines: " + strings.Join(strings.Fields(strings.ReplaceAll(strings.TrimSpace(logs), "\n", " | ")), " ")
	}
	m.mu.Lock()
	f := m.backoff[id]
	if f == nil {
		f = &failures{seen: map[string]time.Time{}}
		m.backoff[id] = f
	}
	// Each end of a container counts once, however often it is looked at.
	if !f.seen[fast.ID].Equal(fast.FinishedAt) {
		f.seen[fast.ID] = fast.FinishedAt
		f.n++
		delay := min(backoffMin<<(f.n-1), backoffMax)
		f.until = time.Now().Add(delay)
		time.AfterFunc(delay, func() { m.markDirty(id) })
	}
	why += fmt.Sprintf(" (failure %d; next try at %s)", f.n, f.until.UTC().Format("15:04:05.000"))
	m.mu.Unlock()
	m.log.Warn("cpool: container failed", "cpool", id, "err", why)
	return why
}

// waiting is how long a pool still backs off.
func (m *Manager) waiting(id string) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	if f := m.backoff[id]; f != nil {
		return time.Until(f.until)
	}
	return 0
}

func (m *Manager) clearBackoff(id string) {
	m.mu.Lock()
	delete(m.backoff, id)
	m.mu.Unlock()
}

// markDirty asks the worker to reconcile a pool.
func (m *Manager) markDirty(id string) {
	m.mu.Lock()
	m.dirty[id] = true
	m.mu.Unlock()
	m.poke()
}
