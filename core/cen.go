package core

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/leviathan-net/leviathan/cen"
	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/monitor"
	"github.com/leviathan-net/leviathan/netfab"
)

// CENView is a CEN as the API shows it.
type CENView struct {
	ID      string   `json:"cenID"`
	Members []string `json:"contIDs"`
	// Wiring is "wire", "bridge" or null (fewer than 2 members).
	Wiring *string      `json:"wiring_type"`
	IfName string       `json:"ifname"`
	State  graph.State  `json:"state"`
	Error  string       `json:"error,omitempty"`
	Each   []MemberView `json:"members"`
	// Links are the members' link impairments, by "hostID/containerID".
	Links map[string]*graph.LinkSettings `json:"links,omitempty"`
}

// MemberView is one member of a CEN with its own state: a member that
// does not run (a stopped Docker container, a named namespace that is
// gone) stays in the CEN, unwired, and the rest of the CEN works.
type MemberView struct {
	Host      string      `json:"hostID"`
	Container string      `json:"containerID"`
	State     graph.State `json:"state"`
	Error     string      `json:"error,omitempty"`
}

func viewCEN(c *graph.CEN, ctrs map[graph.Member]*graph.Container) CENView {
	v := CENView{ID: c.ID, Members: []string{}, IfName: c.IfName, State: c.State, Error: c.Error, Each: []MemberView{}, Links: c.Links}
	for _, m := range c.Members {
		v.Members = append(v.Members, m.Container)
		mv := MemberView{Host: m.Host, Container: m.Container}
		if ctr := ctrs[m]; ctr != nil {
			mv.State, mv.Error = ctr.State, ctr.Error
		}
		v.Each = append(v.Each, mv)
	}
	if w := cen.WiringOf(c); w != graph.WiringNone {
		s := string(w)
		v.Wiring = &s
		// Made, but a member is not wired: it does not run, or its
		// wiring failed (IM's "unconfigured").
		if c.State == graph.StateConfigured && ctrs != nil {
			for _, m := range v.Each {
				if m.State != graph.StateRunning || m.Error != "" {
					v.State = graph.StateUnconfigured
					break
				}
			}
		}
	}
	return v
}

// Result is the outcome of make or destroy for one CEN or CIN: the state
// it is in afterwards, and the error when the operation failed.
type Result struct {
	CEN   string      `json:"cenID,omitempty"`
	CIN   string      `json:"cinID,omitempty"`
	CPool string      `json:"cpoolID,omitempty"`
	State graph.State `json:"state"`
	Error string      `json:"error,omitempty"`
	// Late names the hosts that have not realized their part yet (their
	// lease lapsed, or they did not report in time): they do when they
	// are back.
	Late string `json:"late,omitempty"`
}

// ImportSummary says what an import did.
type ImportSummary struct {
	Created   []string `json:"created"`
	Updated   []string `json:"updated"`
	Unchanged []string `json:"unchanged"`
}

// ImportCENs creates the CENs of a CEN file, and registers their
// containers, in one transaction: all of it or nothing. Containers of the
// netns runtime get their namespaces once the transaction is committed. A CEN that exists
// keeps its identity; its members are replaced by the file's unless it is
// made and the file changes them (a conflict: change a made CEN's members
// one by one, or destroy it first).
func (s *Service) ImportCENs(ctx context.Context, specs []cen.Spec) (ImportSummary, error) {
	sum := ImportSummary{Created: []string{}, Updated: []string{}, Unchanged: []string{}}
	keys := []string{}
	for _, sp := range specs {
		keys = append(keys, cenKey(sp.ID))
	}
	defer s.locks.lock(keys...)()

	// Resolve containers not yet known (I/O stays outside the transaction).
	known := map[graph.Member]bool{}
	ctrOf := map[graph.Member]*graph.Container{}
	if err := s.store.View(func(tx graph.Tx) error {
		cs, err := graph.ListContainers(tx)
		for _, c := range cs {
			known[c.Member()] = true
			ctrOf[c.Member()] = c
		}
		return err
	}); err != nil {
		return sum, err
	}
	membersOf := map[string][]graph.Member{}
	fresh := map[graph.Member]*graph.Container{}
	for _, sp := range specs {
		ms := []graph.Member{}
		for _, x := range sp.Containers {
			h, id := cen.SplitMember(x)
			if h == "" {
				h = s.host
			}
			m := graph.Member{Host: h, Container: id}
			if slices.Contains(ms, m) {
				continue
			}
			ms = append(ms, m)
			if known[m] || fresh[m] != nil {
				continue
			}
			if err := s.checkHost(h); err != nil {
				return sum, fmt.Errorf("CEN %q: %w", sp.ID, err)
			}
			c, err := s.resolve(ctx, h, id)
			if err != nil {
				return sum, err
			}
			fresh[m] = c
			ctrOf[m] = c
		}
		membersOf[sp.ID] = ms
	}

	err := s.store.Update(func(tx graph.Tx) error {
		sum = ImportSummary{Created: []string{}, Updated: []string{}, Unchanged: []string{}}
		all, err := graph.ListCENs(tx)
		if err != nil {
			return err
		}
		alloc := s.newCENAlloc(all)
		for _, sp := range specs {
			members := membersOf[sp.ID]
			old := alloc.byID[sp.ID]
			switch {
			case old == nil:
				c, err := alloc.add(sp.ID)
				if err != nil {
					return err
				}
				c.Members = members
				s.markTAPMembers(c, ctrOf)
				if err := s.putCEN(tx, c); err != nil {
					return err
				}
				sum.Created = append(sum.Created, sp.ID)
			case slices.Equal(old.Members, members):
				sum.Unchanged = append(sum.Unchanged, sp.ID)
			case old.State == graph.StateConfigured:
				return graph.Errorf(graph.ErrConflict, "CEN %q is made and the file changes its members; destroy it first or change members with PUT/DELETE /host/{hostId}/{containerId}/%s", sp.ID, sp.ID)
			default:
				old.Members = members
				s.markTAPMembers(old, ctrOf)
				if err := s.putCEN(tx, old); err != nil {
					return err
				}
				sum.Updated = append(sum.Updated, sp.ID)
			}
		}
		for _, c := range fresh {
			if err := graph.PutContainer(tx, c); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return sum, err
	}
	// New containers get their namespaces now that they are recorded; one
	// that fails here is created again by make, which needs it.
	var ctrs []*graph.Container
	for _, c := range fresh {
		ctrs = append(ctrs, c)
	}
	if err := s.refresh(ctx, ctrs); err != nil {
		s.log.Warn("import: observing new containers", "err", err)
	}
	return sum, nil
}

// cenAlloc hands out link groups and VNIs, and checks interface names
// against the CENs that exist.
type cenAlloc struct {
	s      *Service
	byID   map[string]*graph.CEN
	names  map[string]string
	groups map[uint32]bool
	vnis   map[uint32]bool
}

func (s *Service) newCENAlloc(all []*graph.CEN) *cenAlloc {
	a := &cenAlloc{s: s, byID: map[string]*graph.CEN{}, names: map[string]string{}, groups: map[uint32]bool{}, vnis: map[uint32]bool{}}
	for _, c := range all {
		a.byID[c.ID] = c
		a.names[c.IfName] = c.ID
		a.groups[c.Group] = true
		a.vnis[c.VNI] = true
	}
	return a
}

func (a *cenAlloc) add(id string) (*graph.CEN, error) {
	name := cen.IfName(id)
	if other, ok := a.names[name]; ok {
		return nil, graph.Errorf(graph.ErrConflict, "CEN %q would share the interface name %q with CEN %q", id, name, other)
	}
	g, err := cen.FreeGroup(a.groups)
	if err != nil {
		return nil, err
	}
	vni, err := a.s.freeVNI(a.vnis)
	if err != nil {
		return nil, err
	}
	c := &graph.CEN{ID: id, Members: []graph.Member{}, IfName: name, Group: g, VNI: vni, State: graph.StatePending}
	a.byID[id], a.names[name], a.groups[g], a.vnis[vni] = c, id, true, true
	return c, nil
}

// CreateCEN creates an empty CEN; created is false when it existed.
func (s *Service) CreateCEN(ctx context.Context, id string) (v CENView, created bool, err error) {
	if err := cen.ValidateCENID(id); err != nil {
		return v, false, err
	}
	defer s.locks.lock(cenKey(id))()
	err = s.store.Update(func(tx graph.Tx) error {
		all, err := graph.ListCENs(tx)
		if err != nil {
			return err
		}
		a := s.newCENAlloc(all)
		if c := a.byID[id]; c != nil {
			v, err = cenView(tx, c)
			return err
		}
		c, err := a.add(id)
		if err != nil {
			return err
		}
		v, created = viewCEN(c, nil), true
		return s.putCEN(tx, c)
	})
	return v, created, err
}

// GetCEN returns one CEN.
func (s *Service) GetCEN(ctx context.Context, id string) (v CENView, err error) {
	if err := graph.ValidateID("CEN", id); err != nil {
		return v, err
	}
	err = s.store.View(func(tx graph.Tx) error {
		c, err := graph.GetCEN(tx, id)
		if err == nil {
			v, err = cenView(tx, c)
		}
		return err
	})
	return v, err
}

// cenView reads what a CEN's view needs.
func cenView(tx graph.Tx, c *graph.CEN) (CENView, error) {
	ctrs := map[graph.Member]*graph.Container{}
	err := containersOf(tx, c.Members, ctrs)
	return viewCEN(c, ctrs), err
}

// ListCENs returns every CEN, by ID.
func (s *Service) ListCENs(ctx context.Context) ([]CENView, error) {
	out := []CENView{}
	err := s.store.View(func(tx graph.Tx) error {
		all, err := graph.ListContainers(tx)
		if err != nil {
			return err
		}
		ctrs := map[graph.Member]*graph.Container{}
		for _, c := range all {
			ctrs[c.Member()] = c
		}
		cs, err := graph.ListCENs(tx)
		for _, c := range cs {
			out = append(out, viewCEN(c, ctrs))
		}
		return err
	})
	return out, err
}

// getAll reads the objects with ids; ErrNotFound names every ID that has
// none.
func getAll[T any](tx graph.Tx, kind string, ids []string, get func(graph.Tx, string) (*T, error)) ([]*T, error) {
	var out []*T
	var missing []string
	for _, id := range ids {
		x, err := get(tx, id)
		if errors.Is(err, graph.ErrNotFound) {
			missing = append(missing, id)
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	if len(missing) > 0 {
		return nil, graph.Errorf(graph.ErrNotFound, "no %s %s", kind, joinQuoted(missing))
	}
	return out, nil
}

// loadCENs reads CENs and their members' containers; ErrNotFound names
// every unknown ID.
func (s *Service) loadCENs(ids []string) (cs []*graph.CEN, ctrs map[graph.Member]*graph.Container, err error) {
	ctrs = map[graph.Member]*graph.Container{}
	err = s.store.View(func(tx graph.Tx) error {
		if cs, err = getAll(tx, "CEN", ids, graph.GetCEN); err != nil {
			return err
		}
		for _, c := range cs {
			if err := containersOf(tx, c.Members, ctrs); err != nil {
				return err
			}
		}
		return nil
	})
	return cs, ctrs, err
}

// failedState is the state an object is left in when op failed on it: a
// failed make is rolled back ("failed"); a failed destroy leaves it as it
// was.
func failedState(op Op, was graph.State) graph.State {
	if op == OpDestroy {
		return was
	}
	return graph.StateFailed
}

// joinQuoted names IDs in a message: the first few, and how many more.
func joinQuoted(ss []string) string { return graph.QuoteList(ss) }

func validateIDs(kind string, ids []string) error {
	for _, id := range ids {
		if err := graph.ValidateID(kind, id); err != nil {
			return err
		}
	}
	return nil
}

// MakeCENs realizes CENs in the kernel. Each CEN succeeds or fails on its
// own: a failed one is removed from the kernel whole, so that the kernel
// holds nothing of it, and left "failed" with the reason. A member that
// does not run (a stopped Docker container, a named namespace that is
// gone) fails nothing: it is left unwired, shown "stopped", and wired
// when it runs again. The error, when any CEN failed, names them; results
// are returned either way.
func (s *Service) MakeCENs(ctx context.Context, ids []string) ([]Result, error) {
	return s.cenBatch(ctx, ids, OpMake, graph.StateConfigured, func(cs []*graph.CEN, specs []*netfab.CEN) []error {
		errs := make([]error, len(cs))
		for i := range cs {
			Progress(ctx, i, len(cs))
			if errs[i] = s.partErr(cs[i]); errs[i] != nil {
				continue
			}
			if errs[i] = s.applyCEN(ctx, nil, specs[i]); errs[i] != nil {
				// Apply undid what it created, but a CEN made before
				// keeps what it had: a failed CEN holds nothing.
				if derr := s.destroyCEN(context.WithoutCancel(ctx), specs[i]); derr != nil {
					errs[i] = fmt.Errorf("%w (and removing what was left failed: %w)", errs[i], derr)
				}
			}
		}
		return errs
	})
}

// DestroyCENs removes CENs' kernel objects, all in one batch; their
// definitions stay. Destroying a CEN that is not made succeeds and
// changes nothing. A CEN in a made CIN cannot be destroyed (a conflict):
// destroy the CIN first.
func (s *Service) DestroyCENs(ctx context.Context, ids []string) ([]Result, error) {
	return s.cenBatch(ctx, ids, OpDestroy, graph.StatePending, func(cs []*graph.CEN, specs []*netfab.CEN) []error {
		errs := make([]error, len(cs))
		var batch []*netfab.CEN
		var in []int
		for i, c := range cs {
			if errs[i] = s.checkNotInMadeCIN(c.ID, OpDestroy); errs[i] == nil {
				batch = append(batch, specs[i])
				in = append(in, i)
			}
		}
		if err := s.destroyCENs(ctx, batch); err != nil {
			for _, i := range in {
				errs[i] = err
			}
		}
		return errs
	})
}

// checkNotInMadeCIN fails with a conflict when a CEN is in a made CIN.
// The caller holds the CEN's lock, under which no CIN can be made or
// changed to span it.
func (s *Service) checkNotInMadeCIN(cenID string, op Op) error {
	return s.store.View(func(tx graph.Tx) error {
		c, err := graph.CINOf(tx, cenID)
		if err == nil && c != nil && c.State == graph.StateConfigured {
			return graph.Errorf(graph.ErrConflict, "CEN %q is in CIN %q, which is made: destroy the CIN before you %s the CEN", cenID, c.ID, op)
		}
		return err
	})
}

func (s *Service) cenBatch(ctx context.Context, ids []string, op Op, okState graph.State, do func([]*graph.CEN, []*netfab.CEN) []error) (_ []Result, err error) {
	if err := validateIDs("CEN", ids); err != nil {
		return nil, err
	}
	defer s.observeBatch(kindCEN, op, time.Now(), &err)
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = cenKey(id)
	}
	unlock := s.locks.lock(keys...)
	defer func() { unlock() }()
	cs, ctrs, err := s.loadCENs(ids)
	if err != nil {
		return nil, err
	}
	var observed []*graph.Container // members whose state changed
	if op == OpMake {
		var need []*graph.Container
		for _, c := range cs {
			if cen.WiringOf(c) != graph.WiringNone {
				for _, m := range c.Members {
					need = append(need, ctrs[m])
				}
			}
		}
		if observed, err = s.observe(ctx, uniqueContainers(need)); err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
	}
	specs := make([]*netfab.CEN, len(cs))
	for i, c := range cs {
		specs[i] = s.spec(c, ctrs)
	}
	rev, err := markTransient(ctx, s, op, cs, graph.GetCEN, s.putCEN)
	if err != nil {
		return nil, err
	}
	errs := do(cs, specs)
	// The other hosts' parts: they realize them from the store, and this
	// call waits for their reports. A make that failed anywhere is undone
	// here, and by the others once the CEN is committed failed.
	want := map[awaitKey][]string{}
	for i, c := range cs {
		if hs := s.others(c); len(hs) > 0 && (errs[i] == nil || op == OpDestroy) {
			want[awaitKey{kindCEN, c.ID}] = hs
		}
	}
	fails := s.awaitReleased(ctx, &unlock, keys, want, rev)
	late := make([]error, len(cs)) // hosts that have not realized it yet
	for i, c := range cs {
		ferr := fails[awaitKey{kindCEN, c.ID}]
		if ferr == nil {
			continue
		}
		if isLagging(ferr) && errs[i] == nil {
			// Made: those hosts realize their part when they are back.
			late[i] = ferr
			continue
		}
		if op == OpMake {
			if derr := s.destroyCEN(context.WithoutCancel(ctx), specs[i]); derr != nil {
				ferr = fmt.Errorf("%w (and removing this host's part failed: %w)", ferr, derr)
			}
		}
		errs[i] = errors.Join(errs[i], ferr)
	}
	results := make([]Result, len(cs))
	var failed []error
	for i, c := range cs {
		err := errs[i]
		results[i] = Result{CEN: c.ID, State: okState}
		if late[i] != nil {
			results[i].Late = late[i].Error()
			failed = append(failed, fmt.Errorf("%s CEN %s: %w", op, c.ID, late[i]))
		}
		if err != nil {
			results[i] = Result{CEN: c.ID, State: failedState(op, c.State), Error: err.Error()}
			failed = append(failed, fmt.Errorf("%s CEN %s: %w", op, c.ID, err))
			s.log.Warn(string(op)+" failed", "cen", c.ID, "err", err)
		}
	}
	err = s.commit(func(tx graph.Tx) error {
		if err := recordObserved(tx, observed); err != nil {
			return err
		}
		for i, c := range cs {
			// As it is now: other hosts' calls may have changed it
			// while this one waited for them.
			cur, err := graph.GetCEN(tx, c.ID)
			if err != nil {
				return err
			}
			// A failed destroy keeps the state it had: the kernel may
			// still hold the CEN. Hosts that are late are not an error
			// of the CEN's.
			switch {
			case results[i].Error == "" || op != OpDestroy:
				cur.State, cur.Error = results[i].State, results[i].Error
			default:
				cur.State, cur.Error = c.State, c.Error
			}
			if err := s.putCEN(tx, cur); err != nil {
				return err
			}
		}
		return nil
	}, func() []monitor.Event { return append(containerEvents(observed), resultEvents(kindCEN, results)...) })
	if err != nil {
		return results, err
	}
	return results, graph.JoinErrors(failed...)
}

// DeleteCEN destroys a CEN's kernel objects and removes it.
func (s *Service) DeleteCEN(ctx context.Context, id string) error {
	if err := graph.ValidateID("CEN", id); err != nil {
		return err
	}
	unlock := s.locks.lock(cenKey(id))
	defer func() { unlock() }()
	cs, ctrs, err := s.loadCENs([]string{id})
	if err != nil {
		return err
	}
	if err := s.store.View(func(tx graph.Tx) error {
		c, err := graph.CINOf(tx, id)
		if err == nil && c != nil {
			return graph.Errorf(graph.ErrConflict, "CEN %q is in CIN %q: take it out of the CIN (PUT /cin/%s) before deleting it", id, c.ID, c.ID)
		}
		return err
	}); err != nil {
		return err
	}
	// The other hosts remove their part first (the CEN deleting), so that
	// the call returns with every live host's kernel clean; one that is
	// not live removes it when it is back and finds the CEN gone.
	var rev int64
	if s.spans(cs[0]) {
		if rev, err = markTransient(ctx, s, OpDestroy, cs, graph.GetCEN, s.putCEN); err != nil {
			return err
		}
	}
	if err := s.destroyCEN(ctx, s.spec(cs[0], ctrs)); err != nil {
		return fmt.Errorf("delete CEN %s: %w", id, err)
	}
	if s.spans(cs[0]) {
		for _, err := range s.awaitReleased(ctx, &unlock, []string{cenKey(id)}, map[awaitKey][]string{{kindCEN, id}: s.others(cs[0])}, rev) {
			s.log.Warn("delete CEN: a host did not remove its part yet", "cen", id, "err", err)
		}
	}
	return s.commit(func(tx graph.Tx) error {
		if err := forgetReports(tx, kindCEN, id); err != nil {
			return err
		}
		return graph.DeleteCEN(tx, id)
	}, func() []monitor.Event {
		return []monitor.Event{{Action: monitor.ActionCENDestroyed, Data: monitor.ObjectEvent{CEN: id, State: stateDeleted}}}
	})
}
