package core

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/leviathan-net/leviathan/cen"
	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/monitor"
	"github.com/leviathan-net/leviathan/netfab"
)

// Bounds of link settings: beyond them a value is a mistake, not a lab.
const (
	maxDelayMs  = 60_000
	maxRateKbit = 100_000_000 // 100 Gbit/s
)

// Link states.
const (
	LinkUp   = "up"
	LinkDown = "down"
)

// LinkPatch changes a member's link settings: a field left out (nil)
// keeps its value; a zero clears that impairment.
type LinkPatch struct {
	State            *string  `json:"state"`
	DelayMs          *int     `json:"delay_ms"`
	JitterMs         *int     `json:"jitter_ms"`
	LossPercent      *float64 `json:"loss_percent"`
	RateKbit         *int     `json:"rate_kbit"`
	CorruptPercent   *float64 `json:"corrupt_percent"`
	DuplicatePercent *float64 `json:"duplicate_percent"`
}

// LinkView is a member's link on a CEN with its settings and, while its
// frames go through the relay, its counters.
type LinkView struct {
	Host      string `json:"hostID"`
	Container string `json:"containerID"`
	CEN       string `json:"cenID"`
	graph.LinkSettings
	// Relayed says its frames go through leviathan's relay (delay,
	// jitter, loss, corruption, duplication or rate are set).
	Relayed bool              `json:"relayed"`
	Stats   *netfab.LinkStats `json:"stats,omitempty"`
}

func (p LinkPatch) apply(cur graph.LinkSettings) (graph.LinkSettings, error) {
	n := cur
	if p.State != nil {
		switch *p.State {
		case LinkUp:
			n.State = ""
		case LinkDown:
			n.State = LinkDown
		default:
			return n, graph.Errorf(graph.ErrInvalid, "state %q: want %q or %q", *p.State, LinkUp, LinkDown)
		}
	}
	ints := []struct {
		name string
		v    *int
		to   *int
		max  int
	}{
		{"delay_ms", p.DelayMs, &n.DelayMs, maxDelayMs},
		{"jitter_ms", p.JitterMs, &n.JitterMs, maxDelayMs},
		{"rate_kbit", p.RateKbit, &n.RateKbit, maxRateKbit},
	}
	for _, f := range ints {
		if f.v == nil {
			continue
		}
		if *f.v < 0 || *f.v > f.max {
			return n, graph.Errorf(graph.ErrInvalid, "%s %d: want 0 (none) to %d", f.name, *f.v, f.max)
		}
		*f.to = *f.v
	}
	pcts := []struct {
		name string
		v    *float64
		to   *float64
	}{
		{"loss_percent", p.LossPercent, &n.LossPercent},
		{"corrupt_percent", p.CorruptPercent, &n.CorruptPercent},
		{"duplicate_percent", p.DuplicatePercent, &n.DuplicatePercent},
	}
	for _, f := range pcts {
		if f.v == nil {
			continue
		}
		if !(*f.v >= 0 && *f.v <= 100) {
			return n, graph.Errorf(graph.ErrInvalid, "%s %v: want 0 to 100", f.name, *f.v)
		}
		*f.to = *f.v
	}
	if n.JitterMs > 0 && n.DelayMs == 0 {
		return n, graph.Errorf(graph.ErrInvalid, "jitter_ms %d needs a delay_ms to vary", n.JitterMs)
	}
	return n, nil
}

// impairment is what netfab realizes for a member's link settings.
func impairment(l *graph.LinkSettings) *netfab.Impairment {
	if l == nil {
		return nil
	}
	return &netfab.Impairment{
		Down: l.State == LinkDown,
		Filters: netfab.Filters{
			Delay:      time.Duration(l.DelayMs) * time.Millisecond,
			Jitter:     time.Duration(l.JitterMs) * time.Millisecond,
			PacketLoss: l.LossPercent,
			Corrupt:    l.CorruptPercent,
			Duplicate:  l.DuplicatePercent,
			RateKbit:   l.RateKbit,
		},
	}
}

// linkStats is what a Fabric that relays impaired links reports.
type linkStats interface {
	LinkStats(hostIf string) (netfab.LinkStats, bool)
}

func (s *Service) viewLink(c *graph.CEN, m graph.Member) LinkView {
	v := LinkView{Host: m.Host, Container: m.Container, CEN: c.ID}
	if l := c.Links[m.Key()]; l != nil {
		v.LinkSettings = *l
		v.Relayed = impairment(l).Relayed()
	}
	if v.State == "" {
		v.State = LinkUp
	}
	if ls, ok := s.fab.(linkStats); ok && c.State == graph.StateConfigured {
		if st, ok := ls.LinkStats(cen.HostIfName(c.ID, m)); ok {
			v.Stats = &st
		}
	}
	return v
}

// GetLink returns a member's link settings on a CEN.
func (s *Service) GetLink(ctx context.Context, host, id, cenID string) (LinkView, error) {
	m, err := s.linkMember(host, id, cenID)
	if err != nil {
		return LinkView{}, err
	}
	var c *graph.CEN
	err = s.store.View(func(tx graph.Tx) error {
		if _, err := graph.GetContainer(tx, host, id); err != nil {
			return err
		}
		cs, err := getAll(tx, "CEN", []string{cenID}, graph.GetCEN)
		if err == nil {
			c = cs[0]
		}
		return err
	})
	if err != nil {
		return LinkView{}, err
	}
	if !c.HasMember(m) {
		return LinkView{}, graph.Errorf(graph.ErrNotFound, "container %q is not a member of CEN %q", id, cenID)
	}
	return s.viewLink(c, m), nil
}

// SetLink changes a member's link settings on a CEN (the fields the patch
// gives) and, on a made CEN, the kernel at once: a link down keeps its
// interface; delay, jitter, loss, corruption, duplication and rate send
// its frames through leviathan's relay (making the CEN a bridge if it
// was a wire). Settings stay across re-wiring and restarts, and go when
// the member leaves the CEN.
func (s *Service) SetLink(ctx context.Context, host, id, cenID string, p LinkPatch) (LinkView, error) {
	m, err := s.linkMember(host, id, cenID)
	if err != nil {
		return LinkView{}, err
	}
	return retry(ctx, func() (LinkView, bool, error) {
		return s.changeLinkOnce(ctx, m, cenID, func(cur graph.LinkSettings) (*graph.LinkSettings, error) {
			n, err := p.apply(cur)
			if err != nil || n == (graph.LinkSettings{}) {
				return nil, err
			}
			return &n, nil
		})
	})
}

// ClearLink clears a member's link settings on a CEN: the link is up and
// pure kernel again.
func (s *Service) ClearLink(ctx context.Context, host, id, cenID string) (LinkView, error) {
	m, err := s.linkMember(host, id, cenID)
	if err != nil {
		return LinkView{}, err
	}
	return retry(ctx, func() (LinkView, bool, error) {
		return s.changeLinkOnce(ctx, m, cenID, func(graph.LinkSettings) (*graph.LinkSettings, error) { return nil, nil })
	})
}

func (s *Service) linkMember(host, id, cenID string) (graph.Member, error) {
	if err := s.checkHost(host); err != nil {
		return graph.Member{}, err
	}
	if err := graph.ValidateID("container", id); err != nil {
		return graph.Member{}, err
	}
	if err := graph.ValidateID("CEN", cenID); err != nil {
		return graph.Member{}, err
	}
	return graph.Member{Host: host, Container: id}, nil
}

// changeLinkOnce applies a change of one member's settings under the
// locks of its CEN, the container and the CEN's CIN (done is false when
// the CEN moved to another CIN meanwhile).
func (s *Service) changeLinkOnce(ctx context.Context, m graph.Member, cenID string, change func(graph.LinkSettings) (*graph.LinkSettings, error)) (v LinkView, done bool, err error) {
	sc, unlock, ok, err := s.lockCENScope(cenID, m)
	if !ok || err != nil {
		return v, ok, err
	}
	defer func() { unlock() }()
	c, w := sc.c, sc.w
	if !sc.known {
		return v, true, graph.Errorf(graph.ErrNotFound, "no container %q on host %q", m.Container, m.Host)
	}
	if !c.HasMember(m) {
		return v, true, graph.Errorf(graph.ErrNotFound, "container %q is not a member of CEN %q", m.Container, cenID)
	}
	var cur graph.LinkSettings
	if l := c.Links[m.Key()]; l != nil {
		cur = *l
	}
	next, err := change(cur)
	if err != nil {
		return v, true, err
	}
	nc := *c
	nc.Links = maps.Clone(c.Links)
	if next == nil {
		delete(nc.Links, m.Key())
	} else {
		if nc.Links == nil {
			nc.Links = map[string]*graph.LinkSettings{}
		}
		nc.Links[m.Key()] = next
	}
	if len(nc.Links) == 0 {
		nc.Links = nil
	}
	var nw *cinWorld
	if w != nil {
		nw = &cinWorld{cin: w.cin, cens: maps.Clone(w.cens), ctrs: w.ctrs}
		nw.cens[cenID] = &nc
	}
	if err := s.applyMemberChange(ctx, c, &nc, sc.ctrs, w, nw); err != nil {
		return v, true, err
	}
	rev, err := s.commitRev(ctx, func(tx graph.Tx) error {
		if err := unchanged(tx, c, nil); err != nil {
			return err
		}
		return s.putCEN(tx, &nc)
	}, func() []monitor.Event {
		st := LinkUp
		if next != nil && next.State == LinkDown {
			st = LinkDown
		}
		return []monitor.Event{{Action: monitor.ActionLinkUpdated, Data: monitor.ObjectEvent{CEN: cenID, Host: m.Host, Container: m.Container, State: st}}}
	})
	if errors.Is(err, errMoved) {
		// Another host changed the CEN meanwhile: from the store again.
		if uerr := s.undoMemberChange(context.WithoutCancel(ctx), c, &nc, sc.ctrs, w, nw); uerr != nil {
			return v, true, fmt.Errorf("CEN %s changed meanwhile, and undoing this change failed: %w", cenID, uerr)
		}
		return v, false, nil
	}
	if err == nil && m.Host != s.host && c.State == graph.StateConfigured {
		// The member's link is its own host's to impair.
		fails := s.awaitReleased(ctx, &unlock, sc.keys, map[awaitKey][]string{{kindCEN, cenID}: {m.Host}}, rev)
		if ferr := fails[awaitKey{kindCEN, cenID}]; ferr != nil {
			err = fmt.Errorf("link of %s on CEN %s changed, but not on its host yet: %w", m.Container, cenID, ferr)
		}
	}
	return s.viewLink(&nc, m), true, err
}
