package core

import (
	"context"
	"fmt"

	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/netfab"
)

// Reconcile makes the kernel match the graph after a start or a crash:
// namespaces leviathan owns are recreated if they are gone, made CENs are
// realized once more (adopting what exists, repairing what is missing),
// leftovers of leviathan's own are removed and foreign objects are left
// alone. A CEN that cannot be realized is marked failed with the reason.
// Call it before serving requests.
func (s *Service) Reconcile(ctx context.Context) error {
	if err := s.settleTransient(); err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	var (
		cens []*graph.CEN
		all  []*graph.Container
	)
	if err := s.store.View(func(tx graph.Tx) (err error) {
		if err := s.peers.load(tx); err != nil {
			return err
		}
		if cens, err = graph.ListCENs(tx); err != nil {
			return err
		}
		all, err = graph.ListContainers(tx)
		return err
	}); err != nil {
		return err
	}
	ctrs := map[graph.Member]*graph.Container{}
	var local []*graph.Container
	for _, c := range all {
		if c.Host == s.host {
			ctrs[c.Member()] = c
			local = append(local, c)
		}
	}
	// Containers as they are now: namespaces of leviathan's are made
	// again, and members that stopped meanwhile are left unwired.
	if err := s.refresh(ctx, local); err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	var namespaces []string
	for _, c := range local {
		if c.Running() && c.Netns != "" { // a TAP member has none
			namespaces = append(namespaces, c.Netns)
		}
	}
	var desired []*netfab.CEN
	for _, c := range cens {
		// Made, or being made by another host's call (this host's own
		// calls that it stopped in were settled above).
		if live(c.State) && s.hasPart(c) && s.partErr(c) == nil {
			desired = append(desired, s.spec(c, ctrs))
		}
	}
	rep, err := s.fab.Reconcile(ctx, desired, namespaces)
	if err != nil {
		return err
	}
	if err := s.markFailed(rep.Failed, func(tx graph.Tx, id, why string) error {
		c, err := graph.GetCEN(tx, id)
		if err != nil {
			return err
		}
		c.State, c.Error = graph.StateFailed, why
		return s.putCEN(tx, c)
	}); err != nil {
		return err
	}
	for _, sp := range desired {
		if rep.Failed[sp.ID] == nil {
			s.real.cens.set(sp.ID, sp)
		}
	}
	s.log.Info("reconciled CENs", "made_cens", len(desired), "containers", len(local), "leftovers_removed", rep.Removed, "failed", len(rep.Failed))
	for id, ferr := range rep.Failed {
		s.log.Warn("reconcile: CEN not realized", "cen", id, "err", ferr)
	}
	return s.reconcileCINs(ctx, namespaces)
}

// reconcileCINs re-applies the made CINs' addressing after the CENs.
func (s *Service) reconcileCINs(ctx context.Context, namespaces []string) error {
	var desired []*netfab.CIN
	if err := s.store.View(func(tx graph.Tx) error {
		all, err := graph.ListCINs(tx)
		if err != nil {
			return err
		}
		for _, c := range all {
			if !live(c.State) {
				continue
			}
			w, err := loadCINWorld(tx, c)
			if err != nil {
				return err
			}
			desired = append(desired, s.cinSpec(w))
		}
		return nil
	}); err != nil {
		return err
	}
	rep, err := s.fab.ReconcileCINs(ctx, desired, namespaces)
	if err != nil {
		return err
	}
	if err := s.markFailed(rep.Failed, func(tx graph.Tx, id, why string) error {
		c, err := graph.GetCIN(tx, id)
		if err != nil {
			return err
		}
		c.State, c.Error = graph.StateFailed, why
		return s.putCIN(tx, c)
	}); err != nil {
		return err
	}
	for _, sp := range desired {
		if rep.Failed[sp.ID] == nil {
			s.real.cins.set(sp.ID, sp)
		}
	}
	s.log.Info("reconciled CINs", "made_cins", len(desired), "leftovers_removed", rep.Removed, "failed", len(rep.Failed))
	for id, ferr := range rep.Failed {
		s.log.Warn("reconcile: CIN not realized", "cin", id, "err", ferr)
	}
	s.syncTAPAddresses(ctx)
	return nil
}

// markFailed records, in one transaction, why objects could not be
// realized again.
func (s *Service) markFailed(failed map[string]error, mark func(tx graph.Tx, id, why string) error) error {
	if len(failed) == 0 {
		return nil
	}
	return s.store.Update(func(tx graph.Tx) error {
		for id, err := range failed {
			if err := mark(tx, id, "reconcile: "+err.Error()); err != nil {
				return err
			}
		}
		return nil
	})
}
