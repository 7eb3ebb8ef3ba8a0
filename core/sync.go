package core

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/monitor"
	"github.com/leviathan-net/leviathan/netfab"
)

// SyncContainers makes the kernel follow containers whose runtime state
// may have changed: a Docker container that started, stopped, died or was
// removed, a named namespace that came or went. Each is observed again;
// when it changed, the made CENs it is in are applied again (a member
// that runs is wired, with the interface name, MAC and CIN address it
// had; one that does not loses its port) and the made CINs over them
// follow. It is level-triggered, as a restart's reconcile is: a container
// that did not change costs one observation and changes nothing. IDs
// that name no container of the host are skipped.
//
// A member that cannot be wired does not fail its CEN: its error is
// recorded on the container and the rest of the CEN works.
func (s *Service) SyncContainers(ctx context.Context, host string, ids []string) error {
	if err := s.checkHost(host); err != nil {
		return err
	}
	if host != s.host {
		return graph.Errorf(graph.ErrConflict, "host %q observes its own containers", host)
	}
	var errs []error
	for _, id := range ids {
		m := graph.Member{Host: host, Container: id}
		if _, err := retry(ctx, func() (struct{}, bool, error) {
			done, err := s.syncOnce(ctx, m)
			return struct{}{}, done, err
		}); err != nil {
			errs = append(errs, fmt.Errorf("container %q: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// SyncRuntime runs SyncContainers over every container of this host that
// belongs to the named runtime: a full resync after a runtime's event
// stream was lost.
func (s *Service) SyncRuntime(ctx context.Context, runtime string) error {
	var ids []string
	if err := s.store.View(func(tx graph.Tx) error {
		all, err := graph.ListContainers(tx)
		for _, c := range all {
			if c.Host == s.host && c.Runtime == runtime {
				ids = append(ids, c.ID)
			}
		}
		return err
	}); err != nil {
		return err
	}
	return s.SyncContainers(ctx, s.host, ids)
}

// syncScope is what one container's sync reads: its record, the CENs it
// is in, and the CINs over those.
type syncScope struct {
	ctr    *graph.Container
	cens   []*graph.CEN
	worlds []*cinWorld
}

func (sc *syncScope) keys() []string {
	keys := []string{ctrKey(sc.ctr.Member())}
	for _, c := range sc.cens {
		keys = append(keys, cenKey(c.ID))
	}
	for _, w := range sc.worlds {
		keys = append(keys, cinKey(w.cin.ID))
	}
	return keys
}

func (sc *syncScope) same(o *syncScope) bool {
	ids := func(x *syncScope) []string {
		var out []string
		for _, c := range x.cens {
			out = append(out, c.ID)
		}
		for _, w := range x.worlds {
			out = append(out, "cin:"+w.cin.ID)
		}
		return out
	}
	return slices.Equal(ids(sc), ids(o))
}

func (s *Service) readSyncScope(m graph.Member) (*syncScope, error) {
	sc := &syncScope{}
	err := s.store.View(func(tx graph.Tx) (err error) {
		if sc.ctr, err = graph.GetContainer(tx, m.Host, m.Container); err != nil {
			return err
		}
		if sc.cens, err = censOf(tx, m); err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, c := range sc.cens {
			ci, err := graph.CINOf(tx, c.ID)
			if err != nil {
				return err
			}
			if ci == nil || seen[ci.ID] {
				continue
			}
			seen[ci.ID] = true
			w, err := loadCINWorld(tx, ci)
			if err != nil {
				return err
			}
			sc.worlds = append(sc.worlds, w)
		}
		return nil
	})
	return sc, err
}

// syncOnce syncs one container under the locks of everything it touches;
// done is false when its CENs or CINs changed between the read and the
// locks, and the caller tries again.
func (s *Service) syncOnce(ctx context.Context, m graph.Member) (done bool, err error) {
	sc, err := s.readSyncScope(m)
	if errors.Is(err, graph.ErrNotFound) {
		return true, nil // forgotten meanwhile: nothing to follow
	}
	if err != nil {
		return false, err
	}
	defer s.locks.lock(sc.keys()...)()
	now, err := s.readSyncScope(m)
	if errors.Is(err, graph.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	if !now.same(sc) {
		return false, nil
	}
	sc = now

	old := *sc.ctr
	changed, err := s.observe(ctx, []*graph.Container{sc.ctr})
	if err != nil || len(changed) == 0 {
		return true, err
	}
	ctr := sc.ctr

	// The made CENs it is in, applied again from what the graph says:
	// netfab adopts what is there and repairs the rest.
	var wireIfs = map[string]bool{}
	var kernelErrs []error
	for _, c := range sc.cens {
		if c.State != graph.StateConfigured {
			continue
		}
		ctrs, err := s.membersOf(c, ctr)
		if err != nil {
			return true, err
		}
		sp := s.spec(c, ctrs)
		if sp.Wiring() == graph.WiringWire && ctr.Running() {
			wireIfs[c.IfName] = true // both ends are new: both addresses again
		}
		if err := s.applyCEN(ctx, nil, sp); err != nil {
			kernelErrs = append(kernelErrs, fmt.Errorf("CEN %s: %w", c.ID, err))
		}
	}
	// The CINs over them: its address goes or comes back; on a wire
	// both ends are new, so both ends' addresses are applied again.
	var evs []monitor.Event
	for _, w := range sc.worlds {
		if w.cin.State != graph.StateConfigured {
			continue
		}
		was := &cinWorld{cin: w.cin, cens: w.cens, ctrs: maps.Clone(w.ctrs)}
		was.ctrs[m] = &old
		w.ctrs[m] = ctr
		dirty := func(a netfab.Address) bool { return a.Member == m.Container || wireIfs[a.IfName] }
		if err := s.applyCIN(ctx, s.cinSpec(was), s.cinSpec(w), dirty); err != nil {
			kernelErrs = append(kernelErrs, fmt.Errorf("CIN %s: %w", w.cin.ID, err))
		}
		evs = append(evs, addressEvents(w.cin.ID, cinAddresses(was), cinAddresses(w))...)
	}
	if err := errors.Join(kernelErrs...); err != nil {
		ctr.Error = err.Error()
		s.log.Warn("container not wired", "container", m.Container, "err", err)
	}
	err = s.commit(func(tx graph.Tx) error { return recordObserved(tx, changed) },
		func() []monitor.Event { return append(containerEvents(changed), evs...) })
	if err == nil && len(sc.worlds) > 0 && s.tapRuntimeOf(ctr) != nil {
		s.syncTAPAddresses(ctx)
	}
	return true, err
}

// membersOf reads the containers of a CEN's members, with ctr as given.
func (s *Service) membersOf(c *graph.CEN, ctr *graph.Container) (map[graph.Member]*graph.Container, error) {
	ctrs := map[graph.Member]*graph.Container{ctr.Member(): ctr}
	err := s.store.View(func(tx graph.Tx) error { return containersOf(tx, c.Members, ctrs) })
	return ctrs, err
}
