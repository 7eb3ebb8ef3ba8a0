package core

import (
	"context"

	"github.com/leviathan-net/leviathan/graph"
)

// stated is a CEN or a CIN: an object with an ID and a state.
type stated interface {
	*graph.CEN | *graph.CIN
}

func idOf[T stated](x T) string {
	switch v := any(x).(type) {
	case *graph.CEN:
		return v.ID
	case *graph.CIN:
		return v.ID
	}
	return ""
}

func stateOf[T stated](x T) *graph.State {
	switch v := any(x).(type) {
	case *graph.CEN:
		return &v.State
	case *graph.CIN:
		return &v.State
	}
	return nil
}

// markTransient records, before the kernel work of a make or destroy,
// that the objects are being made (running) or destroyed (deleting):
// what GET shows meanwhile, and what a restart finds if the daemon stops
// in between (see settleTransient). The objects in xs keep the state
// they had, for the batch to decide from.
//
// It returns the revision it committed at: other hosts realize their
// part from that revision on.
func markTransient[T stated](ctx context.Context, s *Service, op Op, xs []T, get func(graph.Tx, string) (T, error), put func(graph.Tx, T) error) (int64, error) {
	st := graph.StateRunning
	if op == OpDestroy {
		st = graph.StateDeleting
	}
	return s.store.UpdateRev(ctx, func(tx graph.Tx) error {
		for _, x := range xs {
			cur, err := get(tx, idOf(x))
			if err != nil {
				return err
			}
			*stateOf(cur) = st
			if err := put(tx, cur); err != nil {
				return err
			}
		}
		return nil
	})
}

// mine reports whether this host's API made the last change of an
// object whose OpHost is opHost: only it can know that its call ended.
func (s *Service) mine(opHost string) bool { return opHost == "" || opHost == s.host }

// settleTransient is the first step of a start's reconcile: a CEN or CIN
// the daemon stopped in the middle of making is failed (its error says
// so; make it again), one it stopped destroying is pending. Either way
// the kernel holds none of it once reconcile has removed leviathan's
// leftovers, as the graph then says.
func (s *Service) settleTransient() error {
	const interrupted = "interrupted: the daemon stopped while making it; make it again"
	settle := func(st *graph.State, e *string) bool {
		switch *st {
		case graph.StateRunning:
			*st, *e = graph.StateFailed, interrupted
		case graph.StateDeleting:
			*st, *e = graph.StatePending, ""
		default:
			return false
		}
		return true
	}
	return s.store.Update(func(tx graph.Tx) error {
		cens, err := graph.ListCENs(tx)
		if err != nil {
			return err
		}
		for _, c := range cens {
			if s.mine(c.OpHost) && settle(&c.State, &c.Error) {
				if err := s.putCEN(tx, c); err != nil {
					return err
				}
			}
		}
		cins, err := graph.ListCINs(tx)
		if err != nil {
			return err
		}
		for _, c := range cins {
			if s.mine(c.OpHost) && settle(&c.State, &c.Error) {
				if err := s.putCIN(tx, c); err != nil {
					return err
				}
			}
		}
		return nil
	})
}
