package core

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
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

// cinSpec is what this host's kernel should hold for a made CIN: gateways
// on its made bridge CENs (on the host that routes the CIN), addresses on
// its members' interfaces (those of this host), and for each member one
// route to the prefix, through its first bridge CEN (or on-link through
// its first CEN when it is on no bridge of the CIN).
func (s *Service) cinSpec(w *cinWorld) *netfab.CIN {
	c := w.cin
	p := netip.MustParsePrefix(c.Prefix)
	sp := &netfab.CIN{ID: c.ID, Table: c.Table, Prefix: p}
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
			if c.Router == "" || c.Router == s.host {
				sp.Gateways = append(sp.Gateways, netfab.Gateway{Bridge: n.IfName, Addr: netip.PrefixFrom(gw, subnet.Bits())})
			}
		}
		for _, m := range n.Members {
			if m.Host != s.host {
				continue // its own host addresses it
			}
			a, ok := c.Addrs[graph.AddrKey(id, m)]
			if !ok || !wired(n, m, w.ctrs) {
				continue // a member that does not run keeps its address for when it does
			}
			ns := w.ctrs[m].Netns
			if ns == "" {
				continue // a TAP member: its runtime sets its address (syncTAPAddresses)
			}
			addr := netfab.Address{Member: m.Container, Netns: ns, IfName: n.IfName, Addr: netip.PrefixFrom(netip.MustParseAddr(a), subnet.Bits())}
			if i, ok := routed[ns]; !ok || (!sp.Addresses[i].Via.IsValid() && gw.IsValid()) {
				if ok {
					sp.Addresses[i].Route, sp.Addresses[i].DefaultRoute = false, false
				}
				addr.Route, addr.Via = true, gw
				addr.DefaultRoute = (c.DefaultRoute || slices.Contains(w.ctrs[m].DefaultRouteCENs, id)) && gw.IsValid()
				routed[ns] = len(sp.Addresses)
			}
			sp.Addresses = append(sp.Addresses, addr)
		}
	}
	return sp
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
	return s.putCIN(tx, c)
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

// cinLockKeys are the lock keys of CINs and their CENs.
func cinLockKeys(worlds []*cinWorld) []string {
	var keys []string
	for _, w := range worlds {
		keys = append(keys, cinKey(w.cin.ID))
		for _, id := range w.cin.CENs {
			keys = append(keys, cenKey(id))
		}
	}
	return keys
}

// MakeCINs addresses the members of CINs in the kernel. Every CEN of a
// CIN must be made. Each CIN succeeds or fails on its own; a failed one is
// rolled back and left "failed" with the reason.
//
// On several hosts, one host routes the CIN (its router: the first host
// with members, by ID): it holds every CEN's bridge with the gateways,
// and each host addresses its own members.
func (s *Service) MakeCINs(ctx context.Context, ids []string) ([]Result, error) {
	return s.cinBatch(ctx, ids, OpMake, graph.StateConfigured)
}

// DestroyCINs removes exactly the addresses, routes and rules the CINs
// added; members keep their addresses in the graph for the next make.
func (s *Service) DestroyCINs(ctx context.Context, ids []string) ([]Result, error) {
	return s.cinBatch(ctx, ids, OpDestroy, graph.StatePending)
}

// prepareMake checks that a CIN can be made, gives its members their
// addresses and picks its router, which its CENs record too. It changes
// w in place.
func (s *Service) prepareMake(w *cinWorld) error {
	hosts := []string{}
	for _, id := range w.cin.CENs {
		if w.cens[id].State != graph.StateConfigured {
			return graph.Errorf(graph.ErrConflict, "CEN %q is not made (make it first: POST /cen/make)", id)
		}
		for _, m := range w.cens[id].Members {
			hosts = append(hosts, m.Host)
		}
	}
	if err := allocate(w.cin, w.cens); err != nil {
		return err
	}
	w.cin.Router = s.host
	if len(hosts) > 0 {
		w.cin.Router = slices.Min(hosts)
	}
	return nil
}

// withRouter returns w's CENs as they are with router as their router
// ("" for none), by ID, leaving w as it is.
func withRouter(w *cinWorld, router string) map[string]*graph.CEN {
	out := map[string]*graph.CEN{}
	for id, n := range w.cens {
		c := *n
		c.Router = router
		out[id] = &c
	}
	return out
}

// applyRouters changes this host's part of CENs whose router changes
// (a bridge of their own, or its MAC): from before to after.
func (s *Service) applyRouters(ctx context.Context, before, after map[string]*graph.CEN, ctrs map[graph.Member]*graph.Container) error {
	for _, id := range slices.Sorted(maps.Keys(after)) {
		b, a := before[id], after[id]
		if b.Router == a.Router {
			continue
		}
		if err := s.partErr(a); err != nil {
			return err
		}
		if pb, pa := s.spec(b, ctrs), s.spec(a, ctrs); !reflect.DeepEqual(pb, pa) {
			if err := s.applyCEN(ctx, pb, pa); err != nil {
				return fmt.Errorf("CEN %s: %w", id, err)
			}
		}
	}
	return nil
}

// cinHosts returns the hosts other than this one with a part of a CIN.
func (s *Service) cinHosts(w *cinWorld) []string {
	var hs []string
	for _, n := range w.cens {
		hs = append(hs, s.others(n)...)
	}
	if w.cin.Router != "" && w.cin.Router != s.host {
		hs = append(hs, w.cin.Router)
	}
	slices.Sort(hs)
	return slices.Compact(hs)
}

func (s *Service) cinBatch(ctx context.Context, ids []string, op Op, okState graph.State) (_ []Result, err error) {
	if err := validateIDs("CIN", ids); err != nil {
		return nil, err
	}
	defer s.observeBatch(kindCIN, op, time.Now(), &err)
	return retry(ctx, func() ([]Result, bool, error) { return s.cinBatchOnce(ctx, ids, op, okState) })
}

// cloneCIN copies a CIN, its maps and lists too.
func cloneCIN(c *graph.CIN) *graph.CIN {
	cp := *c
	cp.CENs, cp.Subnets, cp.Addrs = slices.Clone(c.CENs), maps.Clone(c.Subnets), maps.Clone(c.Addrs)
	return &cp
}

// cinBatchOnce is one try of cinBatch: done is false, with nothing done,
// when another host's call changed a CIN between its read and this
// call's first commit.
func (s *Service) cinBatchOnce(ctx context.Context, ids []string, op Op, okState graph.State) (_ []Result, done bool, err error) {
	unlock, worlds, err := s.lockCINs(ctx, ids)
	if err != nil {
		return nil, true, err
	}
	defer func() { unlock() }()
	results := make([]Result, len(worlds))
	errs := make([]error, len(worlds))
	before := make([][]addrEntry, len(worlds))
	was := make([]graph.State, len(worlds))
	cens := make([]map[string]*graph.CEN, len(worlds)) // with their routers after
	olds := make([]map[string]*graph.CEN, len(worlds))
	read := make([]*graph.CIN, len(worlds)) // as read, to check at the commit
	for i, w := range worlds {
		read[i] = cloneCIN(w.cin)
		before[i], was[i], olds[i] = cinAddresses(w), w.cin.State, w.cens
		switch {
		case op == OpMake:
			errs[i] = s.prepareMake(w)
			cens[i] = withRouter(w, w.cin.Router)
		case w.cin.State == graph.StateConfigured:
			cens[i] = withRouter(w, "")
		default:
			cens[i] = w.cens
		}
	}
	// One commit says what every host is to realize: the CINs in their
	// transient state, with their addresses and routers, and their CENs'
	// routers.
	st := graph.StateRunning
	if op == OpDestroy {
		st = graph.StateDeleting
	}
	rev, err := s.store.UpdateRev(ctx, func(tx graph.Tx) error {
		for i, w := range worlds {
			if cur, err := graph.GetCIN(tx, w.cin.ID); err != nil {
				return err
			} else if !reflect.DeepEqual(cur, read[i]) {
				return errMoved
			}
			c := *w.cin
			c.State = st
			if err := s.putCIN(tx, &c); err != nil {
				return err
			}
			if op == OpMake && errs[i] == nil {
				for _, id := range w.cin.CENs {
					if cens[i][id].Router != olds[i][id].Router {
						if err := s.putCEN(tx, cens[i][id]); err != nil {
							return err
						}
					}
				}
			}
		}
		return nil
	})
	if errors.Is(err, errMoved) {
		return nil, false, nil
	}
	if err != nil {
		return nil, true, err
	}
	want := map[awaitKey][]string{}
	for i, w := range worlds {
		Progress(ctx, i, len(worlds))
		if errs[i] != nil {
			continue
		}
		if op == OpMake {
			if errs[i] = s.applyRouters(ctx, olds[i], cens[i], w.ctrs); errs[i] == nil {
				next := &cinWorld{cin: w.cin, cens: cens[i], ctrs: w.ctrs}
				if errs[i] = s.applyCIN(ctx, nil, s.cinSpec(next), nil); errs[i] != nil {
					s.applyRouters(context.WithoutCancel(ctx), cens[i], olds[i], w.ctrs)
				}
			}
		} else if was[i] == graph.StateConfigured {
			errs[i] = s.applyCIN(ctx, s.cinSpec(w), nil, nil)
		}
		if hs := s.cinHosts(&cinWorld{cin: w.cin, cens: cens[i]}); len(hs) > 0 && errs[i] == nil {
			want[awaitKey{kindCIN, w.cin.ID}] = hs
		}
	}
	fails := s.awaitReleased(ctx, &unlock, cinLockKeys(worlds), want, rev)
	var failed []error
	for i, w := range worlds {
		ferr := fails[awaitKey{kindCIN, w.cin.ID}]
		results[i] = Result{CIN: w.cin.ID, State: okState}
		if errs[i] == nil && isLagging(ferr) {
			// Made or destroyed: those hosts follow when they are back.
			results[i].Late = ferr.Error()
			failed = append(failed, fmt.Errorf("%s CIN %s: %w", op, w.cin.ID, ferr))
			continue
		}
		err := errors.Join(errs[i], ferr)
		if err != nil {
			if op == OpMake && errs[i] == nil {
				// Made here, failed elsewhere: undo this host's part.
				next := &cinWorld{cin: w.cin, cens: cens[i], ctrs: w.ctrs}
				s.applyCIN(context.WithoutCancel(ctx), s.cinSpec(next), nil, nil)
				s.applyRouters(context.WithoutCancel(ctx), cens[i], olds[i], w.ctrs)
			}
			results[i] = Result{CIN: w.cin.ID, State: failedState(op, was[i]), Error: err.Error()}
			failed = append(failed, fmt.Errorf("%s CIN %s: %w", op, w.cin.ID, err))
			s.log.Warn(string(op)+" failed", "cin", w.cin.ID, "err", err)
		}
	}
	// A CIN that is not made has no router; on a destroy its CENs lose
	// theirs here and on the other hosts, which follow the commit.
	for i, w := range worlds {
		if results[i].State != graph.StateConfigured {
			w.cin.Router = ""
			if op == OpDestroy && results[i].Error == "" {
				if err := s.applyRouters(ctx, olds[i], cens[i], w.ctrs); err != nil {
					s.log.Warn("destroy: CENs' routers", "cin", w.cin.ID, "err", err)
				}
			}
		}
	}
	err = s.commit(func(tx graph.Tx) error {
		for i, w := range worlds {
			if results[i].Error == "" || op != OpDestroy {
				w.cin.State, w.cin.Error = results[i].State, results[i].Error
			}
			// As it is now (other hosts' calls may have changed its
			// members' addresses while this one waited), with this
			// call's outcome.
			cur, err := graph.GetCIN(tx, w.cin.ID)
			if err != nil {
				return err
			}
			cur.State, cur.Error, cur.Router = w.cin.State, w.cin.Error, w.cin.Router
			if err := s.putCIN(tx, cur); err != nil {
				return err
			}
			after := cens[i]
			switch {
			case results[i].Error == "":
			case op == OpMake:
				after = withRouter(&cinWorld{cens: olds[i]}, "")
			default:
				after = olds[i]
			}
			for _, id := range w.cin.CENs {
				cur, err := graph.GetCEN(tx, id)
				if err != nil {
					return err
				}
				if cur.Router == after[id].Router {
					continue
				}
				cur.Router = after[id].Router
				if err := s.putCEN(tx, cur); err != nil {
					return err
				}
			}
			w.cens = after
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
		return results, true, err
	}
	if hasTAPMembers(worlds...) {
		s.syncTAPAddresses(ctx)
	}
	return results, true, graph.JoinErrors(failed...)
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
	defer func() { unlock() }()
	w := worlds[0]
	before := cinAddresses(w)
	hosts := s.cinHosts(w)
	var rev int64
	if len(hosts) > 0 {
		if rev, err = markTransient(ctx, s, OpDestroy, []*graph.CIN{w.cin}, graph.GetCIN, s.putCIN); err != nil {
			return err
		}
	}
	if w.cin.State == graph.StateConfigured {
		if err := s.applyCIN(ctx, s.cinSpec(w), nil, nil); err != nil {
			return fmt.Errorf("delete CIN %s: %w", id, err)
		}
	}
	for _, err := range s.awaitReleased(ctx, &unlock, cinLockKeys(worlds), map[awaitKey][]string{{kindCIN, id}: hosts}, rev) {
		s.log.Warn("delete CIN: a host did not remove its part yet", "cin", id, "err", err)
	}
	// Its CENs have no router any more.
	norouter := withRouter(w, "")
	if err := s.applyRouters(ctx, w.cens, norouter, w.ctrs); err != nil {
		s.log.Warn("delete CIN: CENs' routers", "cin", id, "err", err)
	}
	err = s.commit(func(tx graph.Tx) error {
		for _, cid := range w.cin.CENs {
			cur, err := graph.GetCEN(tx, cid)
			if err != nil {
				return err
			}
			if cur.Router != "" {
				cur.Router = ""
				if err := s.putCEN(tx, cur); err != nil {
					return err
				}
			}
		}
		if err := forgetReports(tx, kindCIN, id); err != nil {
			return err
		}
		return graph.DeleteCIN(tx, id)
	}, func() []monitor.Event {
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
