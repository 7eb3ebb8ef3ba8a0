package core

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"

	"github.com/leviathan-net/leviathan/cen"
	"github.com/leviathan-net/leviathan/cin"
	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/monitor"
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
	State      graph.State     `json:"state"`
	Error      string          `json:"error,omitempty"`
	Tag        *string         `json:"tag"`
	CENs       []string        `json:"cenIDs"`
	Interfaces []InterfaceView `json:"interfaces"`
}

func viewContainer(c *graph.Container, cens []*graph.CEN, cins []*graph.CIN) ContainerView {
	v := ContainerView{Host: c.Host, ID: c.ID, Runtime: c.Runtime, State: c.State, Error: c.Error, CENs: []string{}, Interfaces: []InterfaceView{}}
	if c.Running() || c.Owned || c.Runtime == graph.RuntimeNamed {
		v.Netns = c.Netns // a Docker container's is its process's, while it runs
	}
	if c.Tag != "" {
		v.Tag = &c.Tag
	}
	m := c.Member()
	for _, n := range cens {
		if !n.HasMember(m) {
			continue
		}
		v.CENs = append(v.CENs, n.ID)
		if n.State != graph.StateConfigured || cen.WiringOf(n) == graph.WiringNone {
			continue
		}
		iv := InterfaceView{CEN: n.ID, Name: n.IfName, MAC: cen.MAC(n.ID, m).String()}
		for _, ci := range cins {
			if !ci.HasCEN(n.ID) || ci.State != graph.StateConfigured {
				continue
			}
			if a, ok := ci.Addrs[graph.AddrKey(n.ID, m)]; ok {
				ip := fmt.Sprintf("%s/%d", a, cin.Subnet(netip.MustParsePrefix(ci.Prefix), ci.Subnets[n.ID]).Bits())
				iv.IP, iv.CIN = &ip, &ci.ID
			}
		}
		v.Interfaces = append(v.Interfaces, iv)
	}
	return v
}

// containerView reads what a container's view needs.
func containerView(tx graph.Tx, c *graph.Container) (ContainerView, error) {
	cens, err := graph.ListCENs(tx)
	if err != nil {
		return ContainerView{}, err
	}
	cins, err := graph.ListCINs(tx)
	return viewContainer(c, cens, cins), err
}

// cinWorldsOf reads the CINs that span a CEN m is a member of.
func cinWorldsOf(tx graph.Tx, m graph.Member) ([]*cinWorld, error) {
	cins, err := graph.ListCINs(tx)
	if err != nil {
		return nil, err
	}
	var out []*cinWorld
	for _, c := range cins {
		w, err := loadCINWorld(tx, c)
		if err != nil {
			return nil, err
		}
		for _, id := range c.CENs {
			if w.cens[id].HasMember(m) {
				out = append(out, w)
				break
			}
		}
	}
	return out, nil
}

// censOf returns the CENs that have m as a member.
func censOf(tx graph.Tx, m graph.Member) ([]*graph.CEN, error) {
	all, err := graph.ListCENs(tx)
	return slices.DeleteFunc(all, func(c *graph.CEN) bool { return !c.HasMember(m) }), err
}

// Registration is what a container may be registered with.
type Registration struct {
	// Tag, when not nil, is the container's monitor tag ("" clears it).
	Tag *string
	// DefaultRouteCENs, when not nil, are the CENs whose CIN's gateway is
	// to be its default route (only when it has none of its own).
	DefaultRouteCENs []string
}

// RegisterContainer registers a container on a host, creating its network
// namespace when the netns runtime owns it. Registering again updates the
// tag when one is given; created says whether it was new.
func (s *Service) RegisterContainer(ctx context.Context, host, id string, r Registration) (v ContainerView, created bool, err error) {
	tag := r.Tag
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
	if r.DefaultRouteCENs != nil {
		c.DefaultRouteCENs = slices.Clone(r.DefaultRouteCENs)
	}
	// Record first, then create: a crash in between leaves a record whose
	// namespace reconcile creates, never a namespace nobody knows. A new
	// tag is news to tag-filtered monitors: the container's addresses
	// leave under its old tag and come back under the new one.
	var before, after []*cinWorld
	err = s.commit(func(tx graph.Tx) error {
		if before, err = cinWorldsOf(tx, m); err != nil {
			return err
		}
		if err := graph.PutContainer(tx, c); err != nil {
			return err
		}
		if after, err = cinWorldsOf(tx, m); err != nil {
			return err
		}
		v, err = containerView(tx, c)
		return err
	}, func() []monitor.Event {
		var evs []monitor.Event
		for i := range before {
			evs = append(evs, addressEvents(before[i].cin.ID, cinAddresses(before[i]), cinAddresses(after[i]))...)
		}
		return evs
	})
	if err != nil {
		return v, false, err
	}
	if host != s.host && c.Runtime == "" {
		// Another host's container: that host finds it.
		if err := s.awaitResolved(ctx, c); err != nil {
			if created {
				if derr := s.store.Update(func(tx graph.Tx) error { return graph.DeleteContainer(tx, host, id) }); derr != nil {
					err = fmt.Errorf("%w (and forgetting it failed: %w)", err, derr)
				}
			}
			return v, false, err
		}
		v.Runtime, v.State, v.Error, v.Netns = c.Runtime, c.State, c.Error, c.Netns
		return v, created, nil
	}
	if err := s.refresh(ctx, []*graph.Container{c}); err != nil {
		if created {
			if derr := s.store.Update(func(tx graph.Tx) error { return graph.DeleteContainer(tx, host, id) }); derr != nil {
				err = fmt.Errorf("%w (and forgetting it failed: %w)", err, derr)
			}
		}
		return v, false, err
	}
	v.State, v.Error = c.State, c.Error
	if c.Running() {
		v.Netns = c.Netns
	}
	return v, created, nil
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
		cens, err := graph.ListCENs(tx)
		if err != nil {
			return err
		}
		cins, err := graph.ListCINs(tx)
		for _, c := range cs {
			if c.Host == host {
				out = append(out, viewContainer(c, cens, cins))
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
		v, err = containerView(tx, c)
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
	return retry(ctx, func() (CENView, bool, error) { return s.changeMemberOnce(ctx, m, cenID, add) })
}

// changeMemberOnce locks the CEN, the container and the CIN the CEN is in
// (looked up first, checked again under the locks: done is false when it
// changed in between, and the caller tries again).
func (s *Service) changeMemberOnce(ctx context.Context, m graph.Member, cenID string, add bool) (v CENView, done bool, err error) {
	sc, unlock, ok, err := s.lockCENScope(cenID, m)
	if !ok || err != nil {
		return v, ok, err
	}
	defer func() { unlock() }()
	c, w, ctrs, known := sc.c, sc.w, sc.ctrs, sc.known
	if !known && !add {
		return v, true, graph.Errorf(graph.ErrNotFound, "no container %q on host %q", m.Container, m.Host)
	}
	var fresh *graph.Container // a container this change registers
	committed := false         // the change is in the store
	if !known {
		var err error
		if fresh, err = s.resolve(ctx, m.Host, m.Container); err != nil {
			return v, true, err
		}
		ctrs[m] = fresh
	}
	// A container this change registers on a made CEN is recorded before
	// its runtime makes anything for it (a crash in between leaves a
	// record that reconcile completes, never a namespace nobody knows),
	// and forgotten again, with what was made for it, if the change fails.
	if fresh != nil && c.State == graph.StateConfigured {
		if err := s.store.Update(func(tx graph.Tx) error { return graph.PutContainer(tx, fresh) }); err != nil {
			return v, true, err
		}
		defer func() {
			if err == nil || committed {
				return
			}
			if rt, rerr := s.runtimeOf(fresh); rerr == nil {
				rt.Release(context.WithoutCancel(ctx), fresh)
			}
			if derr := s.store.Update(func(tx graph.Tx) error { return graph.DeleteContainer(tx, m.Host, m.Container) }); derr != nil {
				s.log.Warn("forgetting a container whose joining failed", "container", m.Container, "err", derr)
			}
		}()
	}
	// The joining or leaving member as it is now: it is wired only if it
	// runs (a namespace of leviathan's is created first).
	var observed []*graph.Container
	if c.State == graph.StateConfigured {
		if observed, err = s.observe(ctx, []*graph.Container{ctrs[m]}); err != nil {
			return v, true, err
		}
	}

	next := slices.Clone(c.Members)
	switch {
	case add && c.HasMember(m):
		return viewCEN(c, ctrs), true, nil // already a member
	case !add && !c.HasMember(m):
		return v, true, graph.Errorf(graph.ErrNotFound, "container %q is not a member of CEN %q", m.Container, cenID)
	case add:
		next = append(next, m)
	default:
		next = slices.DeleteFunc(next, func(x graph.Member) bool { return x == m })
	}
	nc := withMembers(c, next)
	s.markTAPMembers(nc, ctrs)

	var ncin *graph.CIN // the CIN as it is after the change
	var nw *cinWorld
	if w != nil {
		cp := *w.cin
		cp.Subnets, cp.Addrs = maps.Clone(cp.Subnets), maps.Clone(cp.Addrs)
		ncin = &cp
		nw = &cinWorld{cin: ncin, cens: maps.Clone(w.cens), ctrs: maps.Clone(w.ctrs)}
		nw.cens[cenID] = nc
		nw.ctrs[m] = ctrs[m]
		if ncin.State == graph.StateConfigured {
			if err := allocate(ncin, nw.cens); err != nil {
				return v, true, err
			}
		} else {
			delete(ncin.Addrs, graph.AddrKey(cenID, m)) // leaving frees it
		}
		if err := s.applyMemberChange(ctx, c, nc, ctrs, w, nw); err != nil {
			return v, true, err
		}
	} else if err := s.applyMemberChange(ctx, c, nc, ctrs, nil, nil); err != nil {
		return v, true, err
	}

	rev, err := s.commitRev(ctx, func(tx graph.Tx) error {
		// Another host's call may have changed the CEN or its CIN since
		// they were read (this host's locks do not reach it): then this
		// change is made again from what they are now, so neither is
		// lost.
		if err := unchanged(tx, c, w); err != nil {
			return err
		}
		if fresh != nil {
			if err := graph.PutContainer(tx, fresh); err != nil {
				return err
			}
		}
		if err := recordObserved(tx, observed); err != nil {
			return err
		}
		if ncin != nil {
			if err := s.putCIN(tx, ncin); err != nil {
				return err
			}
		}
		return s.putCEN(tx, nc)
	}, func() []monitor.Event {
		action := monitor.ActionContainerLeft
		if add {
			action = monitor.ActionContainerJoined
		}
		evs := []monitor.Event{{Action: action, Data: monitor.ObjectEvent{CEN: cenID, Host: m.Host, Container: m.Container}}}
		if w != nil {
			evs = append(evs, addressEvents(w.cin.ID, cinAddresses(w), cinAddresses(nw))...)
		}
		return evs
	})
	if errors.Is(err, errMoved) {
		// The kernel goes back to what the store said when this try
		// read it; the next try starts from what the store says now.
		s.log.Info("another host changed the CEN meanwhile: changing it again", "cen", cenID)
		if uerr := s.undoMemberChange(context.WithoutCancel(ctx), c, nc, ctrs, w, nw); uerr != nil {
			return v, true, fmt.Errorf("CEN %s changed meanwhile, and undoing this change failed: %w", cenID, uerr)
		}
		return v, false, nil
	}
	committed = err == nil
	if err == nil && c.State == graph.StateConfigured {
		// The other hosts' parts: the member's own host wires it, the
		// others change their flood lists when a host joins or leaves.
		want := map[awaitKey][]string{}
		if hs := append(s.others(c), s.others(nc)...); len(hs) > 0 {
			want[awaitKey{kindCEN, cenID}] = hs
		}
		if w != nil && w.cin.State == graph.StateConfigured {
			if hs := s.cinHosts(nw); len(hs) > 0 {
				want[awaitKey{kindCIN, w.cin.ID}] = hs
			}
		}
		var errs []error
		for _, e := range s.awaitReleased(ctx, &unlock, sc.keys, want, rev) {
			errs = append(errs, e)
		}
		if err = errors.Join(errs...); err != nil {
			err = fmt.Errorf("CEN %s changed, but not everywhere yet: %w", cenID, err)
		}
	}
	if err == nil && w != nil && s.tapRuntimeOf(ctrs[m]) != nil {
		s.syncTAPAddresses(ctx) // a VM joined or left a CEN of a made CIN
	}
	if err == nil && fresh != nil && c.State != graph.StateConfigured {
		// Not wired yet: its namespace is made now, once it is recorded.
		if err := s.refresh(ctx, []*graph.Container{fresh}); err != nil {
			s.log.Warn("observing a new container", "container", m.Container, "err", err)
		}
	}
	return viewCEN(nc, ctrs), true, err
}

// errMoved says an object changed between a call's read and its commit.
var errMoved = errors.New("changed by another call meanwhile")

// unchanged fails with errMoved unless the CEN c, and the CIN of w when
// there is one, are in the store as they were read.
func unchanged(tx graph.Tx, c *graph.CEN, w *cinWorld) error {
	cur, err := graph.GetCEN(tx, c.ID)
	if err != nil {
		return err
	}
	if !reflect.DeepEqual(cur, c) {
		return errMoved
	}
	if w == nil {
		return nil
	}
	ci, err := graph.GetCIN(tx, w.cin.ID)
	if err != nil {
		return err
	}
	if !reflect.DeepEqual(ci, w.cin) {
		return errMoved
	}
	return nil
}

// cenScope is what a change of one CEN reads: the CEN, its members'
// containers (and the container the change is about, when known is
// true), and the CIN over the CEN, if any.
type cenScope struct {
	c     *graph.CEN
	w     *cinWorld
	ctrs  map[graph.Member]*graph.Container
	known bool
	keys  []string // its lock keys
}

// lockCENScope locks a CEN, a container and the CIN over the CEN (looked
// up first, checked again under the locks), and reads them in one
// transaction. ok is false, with nothing held, when the CEN moved to
// another CIN in between: the caller tries again.
func (s *Service) lockCENScope(cenID string, m graph.Member) (sc *cenScope, unlock func(), ok bool, err error) {
	var cinID string
	if err := s.store.View(func(tx graph.Tx) error {
		c, err := graph.CINOf(tx, cenID)
		if c != nil {
			cinID = c.ID
		}
		return err
	}); err != nil {
		return nil, nil, false, err
	}
	keys := []string{cenKey(cenID), ctrKey(m)}
	if cinID != "" {
		keys = append(keys, cinKey(cinID))
	}
	unlock = s.locks.lock(keys...)
	sc = &cenScope{ctrs: map[graph.Member]*graph.Container{}, keys: keys}
	err = s.store.View(func(tx graph.Tx) error {
		cs, err := getAll(tx, "CEN", []string{cenID}, graph.GetCEN)
		if err != nil {
			return err
		}
		sc.c = cs[0]
		if err := containersOf(tx, sc.c.Members, sc.ctrs); err != nil {
			return err
		}
		ci, err := graph.CINOf(tx, cenID)
		if err != nil {
			return err
		}
		if ci != nil {
			if sc.w, err = loadCINWorld(tx, ci); err != nil {
				return err
			}
		}
		err = containersOf(tx, []graph.Member{m}, sc.ctrs)
		sc.known = err == nil
		if errors.Is(err, graph.ErrNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		unlock()
		return nil, nil, true, err
	}
	if (sc.w == nil) != (cinID == "") || sc.w != nil && sc.w.cin.ID != cinID {
		unlock()
		return nil, nil, false, nil // the CEN moved to another CIN meanwhile
	}
	return sc, unlock, true, nil
}

// applyMemberChange makes the kernel follow a membership change of a made
// CEN (c → nc), and of the made CIN it is in (w → nw), undoing the CEN
// change when the CIN's fails.
func (s *Service) applyMemberChange(ctx context.Context, c, nc *graph.CEN, ctrs map[graph.Member]*graph.Container, w, nw *cinWorld) error {
	if c.State != graph.StateConfigured {
		return nil
	}
	fail := func(err error) error { return fmt.Errorf("CEN %s: %w", c.ID, err) }
	if err := s.partErr(nc); err != nil {
		return err
	}
	if err := s.applyCEN(ctx, s.spec(c, ctrs), s.spec(nc, ctrs)); err != nil {
		return fail(err)
	}
	if w == nil || w.cin.State != graph.StateConfigured {
		return nil
	}
	// A change of wiring recreates every member's interface: their
	// addresses need applying again.
	rewired := cen.WiringOf(c) != cen.WiringOf(nc)
	dirty := func(a netfab.Address) bool { return rewired && a.IfName == nc.IfName }
	if err := s.applyCIN(ctx, s.cinSpec(w), s.cinSpec(nw), dirty); err != nil {
		if uerr := s.applyCEN(context.WithoutCancel(ctx), s.spec(nc, ctrs), s.spec(c, ctrs)); uerr != nil {
			err = fmt.Errorf("%w (and undoing the CEN change failed: %w)", err, uerr)
		}
		return fail(fmt.Errorf("CIN %s: %w", w.cin.ID, err))
	}
	return nil
}

// undoMemberChange puts the kernel back from a membership change that
// applyMemberChange made (c → nc, w → nw) and that was not committed.
func (s *Service) undoMemberChange(ctx context.Context, c, nc *graph.CEN, ctrs map[graph.Member]*graph.Container, w, nw *cinWorld) error {
	if c.State != graph.StateConfigured {
		return nil
	}
	if err := s.applyCEN(ctx, s.spec(nc, ctrs), s.spec(c, ctrs)); err != nil {
		return err
	}
	if w != nil && w.cin.State == graph.StateConfigured {
		// Every address again: an interface the undo made anew has none.
		if err := s.applyCIN(ctx, s.cinSpec(nw), s.cinSpec(w), nil); err != nil {
			return fmt.Errorf("CIN %s: %w", w.cin.ID, err)
		}
	}
	return nil
}

// DeleteContainer removes a container from every CEN it is in (re-wiring
// made ones and releasing its addresses), deletes the namespace leviathan
// created for it, and forgets it.
func (s *Service) DeleteContainer(ctx context.Context, host, id string) error {
	if err := s.checkHost(host); err != nil {
		return err
	}
	if err := graph.ValidateID("container", id); err != nil {
		return err
	}
	m := graph.Member{Host: host, Container: id}
	_, err := retry(ctx, func() (struct{}, bool, error) {
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
			return struct{}{}, false, err
		}
		// Leave every CEN, each change committed as it succeeds so the
		// graph always says what the kernel holds.
		for _, cenID := range ids {
			if _, err := s.changeMember(ctx, host, id, cenID, false); err != nil && !errors.Is(err, graph.ErrNotFound) {
				return struct{}{}, false, fmt.Errorf("remove container %q from CEN %s: %w", id, cenID, err)
			}
		}
		done, err := s.forgetContainer(ctx, m)
		return struct{}{}, done, err
	})
	return err
}

// forgetContainer deletes a container in no CEN; done is false when it
// joined one meanwhile.
func (s *Service) forgetContainer(ctx context.Context, m graph.Member) (done bool, err error) {
	defer s.locks.lock(ctrKey(m))()
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
	if len(cs) > 0 {
		return false, nil
	}
	if m.Host != s.host {
		return true, s.forgetRemote(ctx, ctr)
	}
	// The namespace goes before the record: a crash in between leaves a
	// record (whose namespace reconcile recreates), never an unknown
	// namespace.
	if rt, err := s.runtimeOf(ctr); err == nil {
		if err := rt.Release(ctx, ctr); err != nil {
			return false, err
		}
	}
	return true, s.store.Update(func(tx graph.Tx) error { return graph.DeleteContainer(tx, m.Host, m.Container) })
}

// awaitResolved waits until the host of a container registered from
// here has found it, and updates c as its host recorded it.
func (s *Service) awaitResolved(ctx context.Context, c *graph.Container) error {
	ctx, cancel := context.WithTimeout(ctx, s.hc.Timeout)
	defer cancel()
	err := s.waitFor(ctx, func(tx graph.Tx) (bool, error) {
		cur, err := graph.GetContainer(tx, c.Host, c.ID)
		if err != nil {
			return false, err
		}
		if alive, err := graph.ListAlive(tx); err != nil || !alive[c.Host] {
			return false, errors.Join(err, graph.Errorf(graph.ErrUnavailable, "host %q is unknown (its lease expired): it cannot find container %q", c.Host, c.ID))
		}
		*c = *cur
		return cur.Runtime != "" || cur.State == graph.StateFailed, nil
	}, graph.BucketContainers, graph.BucketAlive)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return graph.Errorf(graph.ErrUnavailable, "host %q did not find container %q within %v", c.Host, c.ID, s.hc.Timeout)
	case err != nil:
		return err
	case c.State == graph.StateFailed:
		return graph.Errorf(graph.ErrNotFound, "host %q: %s", c.Host, c.Error)
	}
	return nil
}

// forgetRemote asks a container's own host to release what its runtime
// made for it and forget it, and waits until it has.
func (s *Service) forgetRemote(ctx context.Context, ctr *graph.Container) error {
	if err := s.store.Update(func(tx graph.Tx) error {
		cur, err := graph.GetContainer(tx, ctr.Host, ctr.ID)
		if err != nil {
			return err
		}
		cur.State = graph.StateDeleting
		return graph.PutContainer(tx, cur)
	}); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.hc.Timeout)
	defer cancel()
	err := s.waitFor(ctx, func(tx graph.Tx) (bool, error) {
		_, err := graph.GetContainer(tx, ctr.Host, ctr.ID)
		if errors.Is(err, graph.ErrNotFound) {
			return true, nil
		}
		return false, err
	}, graph.BucketContainers)
	if errors.Is(err, context.DeadlineExceeded) {
		return graph.Errorf(graph.ErrUnavailable, "host %q did not forget container %q within %v: it will when it runs again", ctr.Host, ctr.ID, s.hc.Timeout)
	}
	return err
}
