package core

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/leviathan-net/leviathan/cen"
	"github.com/leviathan-net/leviathan/cin"
	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/monitor"
	"github.com/leviathan-net/leviathan/netfab"
)

// CINMemberView is one member address of a CIN.
type CINMemberView struct {
	Host      string  `json:"hostID"`
	Container string  `json:"containerID"`
	CEN       string  `json:"cenID"`
	Interface string  `json:"interface"`
	IP        *string `json:"ipaddress"`
	Tag       *string `json:"tag"`
}

// CINView is a CIN as the API shows it.
type CINView struct {
	ID           string          `json:"cinID"`
	CENs         []string        `json:"cenIDs"`
	Prefix       string          `json:"prefix"`
	DefaultRoute bool            `json:"default_route"`
	State        graph.State     `json:"state"`
	Error        string          `json:"error,omitempty"`
	Members      []CINMemberView `json:"members"`
}

func viewCIN(c *graph.CIN, cens map[string]*graph.CEN, ctrs map[graph.Member]*graph.Container) CINView {
	v := CINView{ID: c.ID, CENs: slices.Clone(c.CENs), Prefix: c.Prefix, DefaultRoute: c.DefaultRoute, State: c.State, Error: c.Error, Members: []CINMemberView{}}
	p := netip.MustParsePrefix(c.Prefix)
	for _, id := range c.CENs {
		n := cens[id]
		if n == nil {
			continue
		}
		for _, m := range n.Members {
			mv := CINMemberView{Host: m.Host, Container: m.Container, CEN: id, Interface: n.IfName}
			if a, ok := c.Addrs[graph.AddrKey(id, m)]; ok {
				s := fmt.Sprintf("%s/%d", a, cin.Subnet(p, c.Subnets[id]).Bits())
				mv.IP = &s
			}
			if ctr := ctrs[m]; ctr != nil && ctr.Tag != "" {
				mv.Tag = &ctr.Tag
			}
			v.Members = append(v.Members, mv)
		}
	}
	return v
}

// cinKey is the lock key of a CIN.
func cinKey(id string) string { return "cin:" + id }

// cinWorld is a CIN with the CENs and containers its plan reads.
type cinWorld struct {
	cin  *graph.CIN
	cens map[string]*graph.CEN
	ctrs map[graph.Member]*graph.Container
}

func loadCINWorld(tx graph.Tx, c *graph.CIN) (*cinWorld, error) {
	w := &cinWorld{cin: c, cens: map[string]*graph.CEN{}, ctrs: map[graph.Member]*graph.Container{}}
	for _, id := range c.CENs {
		n, err := graph.GetCEN(tx, id)
		if err != nil {
			return nil, err
		}
		w.cens[id] = n
		if err := containersOf(tx, n.Members, w.ctrs); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// allocate gives every CEN of the CIN a subnet and every member of its
// CENs an address, keeping those already given and freeing those of
// members and CENs that left.
func allocate(c *graph.CIN, cens map[string]*graph.CEN) error {
	p, err := netip.ParsePrefix(c.Prefix)
	if err != nil {
		return err
	}
	if c.Subnets == nil {
		c.Subnets = map[string]int{}
	}
	if c.Addrs == nil {
		c.Addrs = map[string]string{}
	}
	want := map[string]bool{}
	for _, id := range c.CENs {
		for _, m := range cens[id].Members {
			want[graph.AddrKey(id, m)] = true
		}
	}
	maps.DeleteFunc(c.Subnets, func(id string, _ int) bool { return !c.HasCEN(id) })
	maps.DeleteFunc(c.Addrs, func(k, _ string) bool { return !want[k] })
	used := map[int]bool{}
	for _, k := range c.Subnets {
		used[k] = true
	}
	for _, id := range c.CENs {
		if _, ok := c.Subnets[id]; !ok {
			k, err := cin.FreeSubnet(p, used)
			if err != nil {
				return fmt.Errorf("CIN %s: %w", c.ID, err)
			}
			c.Subnets[id], used[k] = k, true
		}
	}
	taken := map[netip.Addr]bool{}
	for _, a := range c.Addrs {
		taken[netip.MustParseAddr(a)] = true
	}
	for _, id := range c.CENs {
		subnet := cin.Subnet(p, c.Subnets[id])
		for _, m := range cens[id].Members {
			k := graph.AddrKey(id, m)
			if _, ok := c.Addrs[k]; ok {
				continue
			}
			a, err := cin.Allocate(subnet, taken)
			if err != nil {
				return fmt.Errorf("CIN %s, CEN %s: %w", c.ID, id, err)
			}
			c.Addrs[k], taken[a] = a.String(), true
		}
	}
	return nil
}

// cinSpec is what the kernel should hold for a made CIN: gateways on its
// made bridge CENs, addresses on its members' interfaces, and for each
// member one route to the prefix, through its first bridge CEN (or
// on-link through its first CEN when it is on no bridge of the CIN).
func cinSpec(w *cinWorld) *netfab.CIN {
	c := w.cin
	p := netip.MustParsePrefix(c.Prefix)
	s := &netfab.CIN{ID: c.ID, Table: c.Table, Prefix: p}
	routed := map[string]int{} // netns → index of its routed address
	for _, id := range c.CENs {
		n := w.cens[id]
		wiring := cen.WiringOf(n)
		if n.State != graph.StateConfigured || wiring == graph.WiringNone {
			continue
		}
		subnet := cin.Subnet(p, c.Subnets[id])
		var gw netip.Addr
		if wiring == graph.WiringBridge {
			gw = cin.Gateway(subnet)
			s.Gateways = append(s.Gateways, netfab.Gateway{Bridge: n.IfName, Addr: netip.PrefixFrom(gw, subnet.Bits())})
		}
		for _, m := range n.Members {
			a, ok := c.Addrs[graph.AddrKey(id, m)]
			if !ok || !wired(n, m, w.ctrs) {
				continue // a member that does not run keeps its address for when it does
			}
			ns := w.ctrs[m].Netns
			if ns == "" {
				continue // a TAP member: its runtime sets its address (syncTAPAddresses)
			}
			addr := netfab.Address{Member: m.Container, Netns: ns, IfName: n.IfName, Addr: netip.PrefixFrom(netip.MustParseAddr(a), subnet.Bits())}
			if i, ok := routed[ns]; !ok || (!s.Addresses[i].Via.IsValid() && gw.IsValid()) {
				if ok {
					s.Addresses[i].Route, s.Addresses[i].DefaultRoute = false, false
				}
				addr.Route, addr.Via = true, gw
				addr.DefaultRoute = (c.DefaultRoute || slices.Contains(w.ctrs[m].DefaultRouteCENs, id)) && gw.IsValid()
				routed[ns] = len(s.Addresses)
			}
			s.Addresses = append(s.Addresses, addr)
		}
	}
	return s
}

// ImportCINs creates or updates CINs in one transaction: all or nothing.
// Every CEN must exist and be in no other CIN; a CIN without a prefix of
// its own gets the next free one from the pool.
func (s *Service) ImportCINs(ctx context.Context, specs []cin.Spec) (ImportSummary, error) {
	return retry(ctx, func() (ImportSummary, bool, error) { return s.importCINsOnce(specs) })
}

// importCINsOnce locks the CINs with their CENs, old and new (the old
// ones read first; done is false when they changed before the locks were
// held, and the caller tries again).
func (s *Service) importCINsOnce(specs []cin.Spec) (sum ImportSummary, done bool, err error) {
	var keys, old []string
	for _, sp := range specs {
		keys = append(keys, cinKey(sp.ID))
		for _, id := range sp.CENs {
			keys = append(keys, cenKey(id))
		}
	}
	oldCENs := func(tx graph.Tx) ([]string, error) {
		var out []string
		for _, sp := range specs {
			c, err := graph.GetCIN(tx, sp.ID)
			if errors.Is(err, graph.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			out = append(out, c.CENs...)
		}
		return out, nil
	}
	if err := s.store.View(func(tx graph.Tx) (err error) {
		old, err = oldCENs(tx)
		return err
	}); err != nil {
		return sum, false, err
	}
	for _, id := range old {
		keys = append(keys, cenKey(id))
	}
	defer s.locks.lock(keys...)()
	err = s.store.Update(func(tx graph.Tx) error {
		now, err := oldCENs(tx)
		if err != nil {
			return err
		}
		if !slices.Equal(now, old) {
			return errRetry
		}
		sum = ImportSummary{Created: []string{}, Updated: []string{}, Unchanged: []string{}}
		all, err := graph.ListCINs(tx)
		if err != nil {
			return err
		}
		byID := map[string]*graph.CIN{}
		for _, c := range all {
			byID[c.ID] = c
		}
		for _, sp := range specs {
			if err := s.putCINSpec(tx, byID, sp, &sum); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, errRetry) {
		return sum, false, nil
	}
	return sum, true, err
}

// errRetry aborts a transaction whose locks turned out too few.
var errRetry = errors.New("retry")

func (s *Service) putCINSpec(tx graph.Tx, byID map[string]*graph.CIN, sp cin.Spec, sum *ImportSummary) error {
	if _, err := getAll(tx, "CEN", sp.CENs, graph.GetCEN); err != nil {
		return fmt.Errorf("CIN %s: %w", sp.ID, err)
	}
	for _, other := range byID {
		if other.ID == sp.ID {
			continue
		}
		for _, id := range sp.CENs {
			if other.HasCEN(id) {
				return graph.Errorf(graph.ErrConflict, "CIN %s: CEN %q is in CIN %q already (a CEN's members get one address plan)", sp.ID, id, other.ID)
			}
		}
		if sp.Prefix.IsValid() && netip.MustParsePrefix(other.Prefix).Overlaps(sp.Prefix) {
			return graph.Errorf(graph.ErrConflict, "CIN %s: prefix %s overlaps CIN %q's %s", sp.ID, sp.Prefix, other.ID, other.Prefix)
		}
	}
	old := byID[sp.ID]
	if old != nil && slices.Equal(old.CENs, sp.CENs) && old.DefaultRoute == sp.DefaultRoute &&
		(!sp.Prefix.IsValid() && !old.PrefixGiven || sp.Prefix.String() == old.Prefix) {
		sum.Unchanged = append(sum.Unchanged, sp.ID)
		return nil
	}
	if old != nil && old.State == graph.StateConfigured {
		return graph.Errorf(graph.ErrConflict, "CIN %q is made; destroy it before changing it", sp.ID)
	}
	c := old
	if c == nil {
		c = &graph.CIN{ID: sp.ID, State: graph.StatePending, Subnets: map[string]int{}, Addrs: map[string]string{}}
		used := map[int]bool{}
		for _, o := range byID {
			used[o.Table] = true
		}
		for t := cin.TableBase; ; t++ {
			if !used[t] {
				c.Table = t
				break
			}
		}
		sum.Created = append(sum.Created, sp.ID)
	} else {
		sum.Updated = append(sum.Updated, sp.ID)
	}
	c.CENs, c.DefaultRoute = slices.Clone(sp.CENs), sp.DefaultRoute
	switch {
	case sp.Prefix.IsValid() && sp.Prefix.String() != c.Prefix:
		c.Prefix, c.PrefixGiven = sp.Prefix.String(), true
		clear(c.Subnets)
		clear(c.Addrs)
	case !sp.Prefix.IsValid() && (c.PrefixGiven || c.Prefix == ""):
		var used []netip.Prefix
		for _, o := range byID {
			if o.ID != c.ID {
				used = append(used, netip.MustParsePrefix(o.Prefix))
			}
		}
		p, err := s.pool.Next(used)
		if err != nil {
			return err
		}
		c.Prefix, c.PrefixGiven = p.String(), false
		clear(c.Subnets)
		clear(c.Addrs)
	}
	byID[c.ID] = c
	return graph.PutCIN(tx, c)
}

// PutCIN creates or updates one CIN (the body of PUT /cin/{id}).
func (s *Service) PutCIN(ctx context.Context, sp cin.Spec) (v CINView, created bool, err error) {
	sum, err := s.ImportCINs(ctx, []cin.Spec{sp})
	if err != nil {
		return v, false, err
	}
	v, err = s.GetCIN(ctx, sp.ID)
	return v, len(sum.Created) == 1, err
}

// GetCIN returns one CIN with its members' addresses.
func (s *Service) GetCIN(ctx context.Context, id string) (v CINView, err error) {
	if err := graph.ValidateID("CIN", id); err != nil {
		return v, err
	}
	err = s.store.View(func(tx graph.Tx) error {
		c, err := graph.GetCIN(tx, id)
		if err != nil {
			return err
		}
		w, err := loadCINWorld(tx, c)
		if err == nil {
			v = viewCIN(c, w.cens, w.ctrs)
		}
		return err
	})
	return v, err
}

// ListCINs returns every CIN.
func (s *Service) ListCINs(ctx context.Context) ([]CINView, error) {
	out := []CINView{}
	err := s.store.View(func(tx graph.Tx) error {
		all, err := graph.ListCINs(tx)
		if err != nil {
			return err
		}
		for _, c := range all {
			w, err := loadCINWorld(tx, c)
			if err != nil {
				return err
			}
			out = append(out, viewCIN(c, w.cens, w.ctrs))
		}
		return nil
	})
	return out, err
}

// lockCINs locks CINs and their CENs (read without a lock, then checked
// under it: a CIN whose CENs changed in between is locked again).
func (s *Service) lockCINs(ctx context.Context, ids []string) (unlock func(), worlds []*cinWorld, err error) {
	type locked struct {
		unlock func()
		worlds []*cinWorld
	}
	l, err := retry(ctx, func() (locked, bool, error) {
		unlock, worlds, done, err := s.lockCINsOnce(ids)
		return locked{unlock, worlds}, done, err
	})
	return l.unlock, l.worlds, err
}

// lockCINsOnce is one try of lockCINs; done is false when a CIN's CENs
// changed between the read and the locks.
func (s *Service) lockCINsOnce(ids []string) (unlock func(), worlds []*cinWorld, done bool, err error) {
	var cenIDs []string
	if err := s.store.View(func(tx graph.Tx) error {
		cs, err := getAll(tx, "CIN", ids, graph.GetCIN)
		for _, c := range cs {
			cenIDs = append(cenIDs, c.CENs...)
		}
		return err
	}); err != nil {
		return nil, nil, false, err
	}
	keys := []string{}
	for _, id := range ids {
		keys = append(keys, cinKey(id))
	}
	for _, id := range cenIDs {
		keys = append(keys, cenKey(id))
	}
	unlock = s.locks.lock(keys...)
	var now []string
	err = s.store.View(func(tx graph.Tx) error {
		for _, id := range ids {
			c, err := graph.GetCIN(tx, id)
			if err != nil {
				return err
			}
			now = append(now, c.CENs...)
			w, err := loadCINWorld(tx, c)
			if err != nil {
				return err
			}
			worlds = append(worlds, w)
		}
		return nil
	})
	if err != nil {
		unlock()
		return nil, nil, false, err
	}
	if slices.Equal(now, cenIDs) {
		return unlock, worlds, true, nil
	}
	unlock()
	return nil, nil, false, nil
}

// MakeCINs addresses the members of CINs in the kernel. Every CEN of a
// CIN must be made. Each CIN succeeds or fails on its own; a failed one is
// rolled back and left "failed" with the reason.
func (s *Service) MakeCINs(ctx context.Context, ids []string) ([]Result, error) {
	return s.cinBatch(ctx, ids, OpMake, graph.StateConfigured, func(w *cinWorld) error {
		for _, id := range w.cin.CENs {
			if w.cens[id].State != graph.StateConfigured {
				return graph.Errorf(graph.ErrConflict, "CEN %q is not made (make it first: POST /cen/make)", id)
			}
		}
		if err := allocate(w.cin, w.cens); err != nil {
			return err
		}
		return s.fab.ApplyCIN(ctx, nil, cinSpec(w), nil)
	})
}

// DestroyCINs removes exactly the addresses, routes and rules the CINs
// added; members keep their addresses in the graph for the next make.
func (s *Service) DestroyCINs(ctx context.Context, ids []string) ([]Result, error) {
	return s.cinBatch(ctx, ids, OpDestroy, graph.StatePending, func(w *cinWorld) error {
		if w.cin.State != graph.StateConfigured {
			return nil
		}
		return s.fab.ApplyCIN(ctx, cinSpec(w), nil, nil)
	})
}

func (s *Service) cinBatch(ctx context.Context, ids []string, op Op, okState graph.State, do func(*cinWorld) error) (_ []Result, err error) {
	if err := validateIDs("CIN", ids); err != nil {
		return nil, err
	}
	defer s.observeBatch(kindCIN, op, time.Now(), &err)
	unlock, worlds, err := s.lockCINs(ctx, ids)
	if err != nil {
		return nil, err
	}
	defer unlock()
	cins := make([]*graph.CIN, len(worlds))
	for i, w := range worlds {
		cins[i] = w.cin
	}
	if err := markTransient(s, op, cins, graph.GetCIN, graph.PutCIN); err != nil {
		return nil, err
	}
	results := make([]Result, len(worlds))
	before := make([][]addrEntry, len(worlds))
	var failed []error
	for i, w := range worlds {
		Progress(ctx, i, len(worlds))
		before[i] = cinAddresses(w)
		results[i] = Result{CIN: w.cin.ID, State: okState}
		if err := do(w); err != nil {
			results[i] = Result{CIN: w.cin.ID, State: failedState(op, w.cin.State), Error: err.Error()}
			failed = append(failed, fmt.Errorf("%s CIN %s: %w", op, w.cin.ID, err))
			s.log.Warn(string(op)+" failed", "cin", w.cin.ID, "err", err)
		}
	}
	err = s.commit(func(tx graph.Tx) error {
		for i, w := range worlds {
			if results[i].Error == "" || op != OpDestroy {
				w.cin.State, w.cin.Error = results[i].State, results[i].Error
			}
			if err := graph.PutCIN(tx, w.cin); err != nil {
				return err
			}
		}
		return nil
	}, func() []monitor.Event {
		var evs []monitor.Event
		for i, w := range worlds {
			evs = append(evs, addressEvents(w.cin.ID, before[i], cinAddresses(w))...)
		}
		return append(evs, resultEvents(kindCIN, results)...)
	})
	if err != nil {
		return results, err
	}
	if hasTAPMembers(worlds...) {
		s.syncTAPAddresses(ctx)
	}
	return results, graph.JoinErrors(failed...)
}

// DeleteCIN destroys a CIN's addressing and removes it, freeing its
// prefix and addresses.
func (s *Service) DeleteCIN(ctx context.Context, id string) error {
	if err := graph.ValidateID("CIN", id); err != nil {
		return err
	}
	unlock, worlds, err := s.lockCINs(ctx, []string{id})
	if err != nil {
		return err
	}
	defer unlock()
	w := worlds[0]
	before := cinAddresses(w)
	if w.cin.State == graph.StateConfigured {
		if err := s.fab.ApplyCIN(ctx, cinSpec(w), nil, nil); err != nil {
			return fmt.Errorf("delete CIN %s: %w", id, err)
		}
	}
	err = s.commit(func(tx graph.Tx) error { return graph.DeleteCIN(tx, id) }, func() []monitor.Event {
		evs := addressEvents(id, before, nil)
		if w.cin.State == graph.StateConfigured {
			evs = append(evs, monitor.Event{Action: monitor.ActionCINDestroyed, Data: monitor.ObjectEvent{CIN: id, State: stateDeleted}})
		}
		return evs
	})
	if err == nil && hasTAPMembers(w) {
		s.syncTAPAddresses(ctx)
	}
	return err
}
