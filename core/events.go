package core

import (
	"context"
	"fmt"

	"github.com/leviathan-net/leviathan/cen"
	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/monitor"
)

// commit runs fn in a store transaction and, once it is committed,
// publishes the events that events returns, all under evMu: so events go
// out in commit order, and a snapshot taken under evMu (CINMembers) is
// consistent with the bus's sequence number.
func (s *Service) commit(fn func(tx graph.Tx) error, events func() []monitor.Event) error {
	_, err := s.commitRev(context.Background(), fn, events)
	return err
}

// commitRev is commit, bounded by ctx, returning the revision committed.
// The events are made once fn succeeded, in its transaction: when other
// hosts share the store they are committed with the change (see
// shareEvents).
func (s *Service) commitRev(ctx context.Context, fn func(tx graph.Tx) error, events func() []monitor.Event) (int64, error) {
	s.evMu.Lock()
	defer s.evMu.Unlock()
	var evs []monitor.Event
	rev, err := s.store.UpdateRev(ctx, func(tx graph.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		if events == nil {
			return nil
		}
		evs = events()
		return s.shareEvents(tx, evs)
	})
	if err != nil {
		return rev, err
	}
	s.bus.Publish(evs...)
	return rev, nil
}

// Bus is the service's event bus.
func (s *Service) Bus() *monitor.Bus { return s.bus }

// addrEntry is a member's address in a CIN, keyed by graph.AddrKey.
type addrEntry struct {
	key string
	m   monitor.Member
}

// cinAddresses lists the addresses a CIN's members hold in the kernel:
// none unless the CIN is made; for made CENs with an interface.
func cinAddresses(w *cinWorld) []addrEntry {
	if w == nil || w.cin.State != graph.StateConfigured {
		return nil
	}
	var out []addrEntry
	for _, id := range w.cin.CENs {
		n := w.cens[id]
		if n == nil || n.State != graph.StateConfigured || cen.WiringOf(n) == graph.WiringNone {
			continue
		}
		for _, m := range n.Members {
			k := graph.AddrKey(id, m)
			a, ok := w.cin.Addrs[k]
			if !ok || !wired(n, m, w.ctrs) {
				continue
			}
			e := addrEntry{key: k, m: monitor.Member{Container: m.Container, IP: a}}
			if c := w.ctrs[m]; c != nil && c.Tag != "" {
				tag := c.Tag
				e.m.Tag = &tag
			}
			out = append(out, e)
		}
	}
	return out
}

// addressEvents are the cin.address events between two states of a CIN.
func addressEvents(cinID string, before, after []addrEntry) []monitor.Event {
	was := map[string]monitor.Member{}
	for _, e := range before {
		was[e.key] = e.m
	}
	now := map[string]monitor.Member{}
	for _, e := range after {
		now[e.key] = e.m
	}
	var gone, came []monitor.Member
	for _, e := range before {
		if n, ok := now[e.key]; !ok || !sameMember(n, e.m) {
			gone = append(gone, e.m)
		}
	}
	for _, e := range after {
		if w, ok := was[e.key]; !ok || !sameMember(w, e.m) {
			came = append(came, e.m)
		}
	}
	var evs []monitor.Event
	if len(gone) > 0 {
		evs = append(evs, monitor.Event{Action: monitor.ActionCINAddressDelete, Data: monitor.CINAddresses{CIN: cinID, Members: gone}})
	}
	if len(came) > 0 {
		evs = append(evs, monitor.Event{Action: monitor.ActionCINAddressCreate, Data: monitor.CINAddresses{CIN: cinID, Members: came}})
	}
	return evs
}

func sameMember(a, b monitor.Member) bool {
	return a.IP == b.IP && (a.Tag == nil) == (b.Tag == nil) && (a.Tag == nil || *a.Tag == *b.Tag)
}

// stateDeleted is the state an event shows for an object that is gone.
const stateDeleted = "deleted"

// kind is a kind of batch object with the actions of its events.
type kind struct {
	name                    string
	made, destroyed, failed monitor.Action
}

var (
	kindCEN = kind{"cen", monitor.ActionCENMade, monitor.ActionCENDestroyed, monitor.ActionCENFailed}
	kindCIN = kind{"cin", monitor.ActionCINMade, monitor.ActionCINDestroyed, monitor.ActionCINFailed}
)

// resultEvents are the events of a make or destroy batch.
func resultEvents(k kind, results []Result) []monitor.Event {
	var evs []monitor.Event
	for _, r := range results {
		o := monitor.ObjectEvent{CEN: r.CEN, CIN: r.CIN, State: string(r.State), Error: r.Error}
		var action monitor.Action
		switch {
		case r.Error != "":
			action = k.failed
			evs = append(evs, monitor.Event{Action: monitor.ActionLogError, Data: monitor.LogEvent{Message: fmt.Sprintf("%s %s: %s", k.name, r.CEN+r.CIN, r.Error)}})
		case r.State == graph.StateConfigured:
			action = k.made
		default:
			action = k.destroyed
		}
		evs = append(evs, monitor.Event{Action: action, Data: o})
	}
	return evs
}

// containerEvents announce containers whose runtime state changed. A
// namespace that leviathan itself creates (again) is no news.
func containerEvents(cs []*graph.Container) []monitor.Event {
	var evs []monitor.Event
	for _, c := range cs {
		if c.Owned {
			continue
		}
		action := monitor.ActionContainerStopped
		if c.Running() {
			action = monitor.ActionContainerStarted
		}
		evs = append(evs, monitor.Event{Action: action, Data: monitor.ObjectEvent{Host: c.Host, Container: c.ID, State: string(c.State), Error: c.Error}})
	}
	return evs
}

// CINMembers returns the addresses a CIN's members hold, with the bus
// sequence number that state is consistent with (monitor.Source).
func (s *Service) CINMembers(cinID string) ([]monitor.Member, uint64, error) {
	if err := graph.ValidateID("CIN", cinID); err != nil {
		return nil, 0, err
	}
	s.evMu.Lock()
	defer s.evMu.Unlock()
	var out []monitor.Member
	err := s.store.View(func(tx graph.Tx) error {
		c, err := graph.GetCIN(tx, cinID)
		if err != nil {
			return err
		}
		w, err := loadCINWorld(tx, c)
		if err != nil {
			return err
		}
		for _, e := range cinAddresses(w) {
			out = append(out, e.m)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return out, s.bus.Seq(), nil
}
