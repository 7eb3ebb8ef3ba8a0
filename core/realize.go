package core

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/netfab"
)

// The realizer. Every host watches the store and brings its own part of
// the graph to what the store says: its members' links and addresses,
// its bridges and their VXLAN ports, the containers other hosts
// registered on it, the flood lists when hosts come and go. A call of
// this host's own API does this host's part itself and notes what the
// kernel then holds (applyCEN, applyCIN...); the realizer applies only
// what differs from that, such as another host's change. A host alone on
// its store has nothing to follow: its calls did all there is.
//
// It is level-triggered: a commit only says which objects to look at;
// what is realized is the object as the store holds it now, so commits
// missed while the store was unreachable, or a full resync, converge to
// the same kernel. For each object a commit changed it writes a
// graph.Realized report, which a call of another host waits for (await).

// realized is what this host's kernel holds of CENs and CINs, as the
// realizer last saw or made it, and as this host's calls left it.
type realized struct {
	cens held[netfab.CEN]
	cins held[netfab.CIN]
}

// held is what the kernel holds of one kind of object, by ID.
type held[T any] struct {
	mu sync.Mutex
	m  map[string]*T
}

func (h *held[T]) get(id string) *T {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.m[id]
}

// set records x, or that nothing is held when x is nil.
func (h *held[T]) set(id string, x *T) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if x == nil {
		delete(h.m, id)
		return
	}
	if h.m == nil {
		h.m = map[string]*T{}
	}
	h.m[id] = x
}

// ids returns the IDs of what is held.
func (h *held[T]) ids() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Collect(maps.Keys(h.m))
}

// live reports whether a CEN or CIN in state st is wanted in the kernel.
func live(st graph.State) bool {
	return st == graph.StateRunning || st == graph.StateConfigured || st == graph.StateUnconfigured
}

// Realize runs the realizer from revision rev (that of the state the
// start's Reconcile read) until ctx ends. A watch that ends (the store
// unreachable too long, changes no longer kept) is started again after
// a full pass over the store, so nothing is missed.
func (s *Service) Realize(ctx context.Context, rev int64) {
	backoff := 100 * time.Millisecond
	full := true
	for ctx.Err() == nil {
		var later *scope // objects a call of this host held: tried again
		if full {
			r, busy, err := s.realizePass(ctx, nil)
			if err != nil {
				s.log.Warn("realizer: full pass", "err", err)
				sleep(ctx, backoff)
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			rev, full, later = max(rev, r), false, busy
		}
		wctx, stop := context.WithCancel(ctx)
		w := s.store.Watch(wctx, rev)
		if err := s.follow(ctx, w, &rev, later); err != nil {
			s.log.Warn("realizer", "err", err)
		}
		stop()
		if ctx.Err() != nil {
			return
		}
		if err := w.Err(); err != nil && !errors.Is(err, context.Canceled) {
			s.log.Warn("realizer: watch ended; resyncing", "err", err)
		}
		full = true
		sleep(ctx, backoff)
		backoff = min(2*backoff, 5*time.Second)
	}
}

// alone reports whether no other host shares the store, as it says now.
func (s *Service) alone() bool {
	if s.peers.shared() {
		return false
	}
	if err := s.store.View(s.peers.load); err != nil {
		return false // a pass finds out
	}
	return !s.peers.shared()
}

// retryBusy is how soon the realizer looks again at objects a call of
// this host held when it came to them.
const retryBusy = 50 * time.Millisecond

// follow realizes what the commits of w change, a pass for every batch
// of commits waiting, until the watch ends or a pass fails. Objects a
// call of this host held are looked at again shortly, not waited for: a
// call that waits for this host's report while another host's call
// waits for this one's must not hold the two realizers up.
func (s *Service) follow(ctx context.Context, w *graph.Watcher, rev *int64, later *scope) error {
	wait := retryBusy
	retry := time.NewTimer(wait)
	defer retry.Stop()
	if later == nil {
		retry.Stop()
	}
	for {
		sc := newScope()
		take := func(cm graph.Commit) {
			s.relayEvents(cm)
			sc.add(s.scopeOf(cm))
			*rev = cm.Revision
		}
		select {
		case cm, ok := <-w.C:
			if !ok {
				return nil
			}
			take(cm)
		case <-retry.C:
		case <-ctx.Done():
			return nil
		}
		// Take every commit already waiting: one pass for them all.
		for more := true; more; {
			select {
			case cm, ok := <-w.C:
				if !ok {
					return nil
				}
				take(cm)
			default:
				more = false
			}
		}
		if later != nil {
			sc.add(later)
			later = nil
		}
		if sc.empty() || !sc.hosts && s.alone() {
			// Alone on the store: this host's calls did all there is.
			continue
		}
		_, busy, err := s.realizePass(ctx, sc)
		if err != nil {
			return err
		}
		if busy != nil {
			// Backing off: a call may hold them while it waits for
			// other hosts.
			later, wait = busy, min(2*wait, time.Second)
			retry.Reset(wait)
		} else {
			wait = retryBusy / 2
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// scope is what commits touched that the realizer may have to follow.
type scope struct {
	cens, cins map[string]bool
	ctrs       map[string]bool // by Member.Key
	hosts      bool            // host records or leases changed
	// adopt are containers of this host that other hosts registered
	// (no runtime yet) or deleted (state deleting), as committed.
	adopt []*graph.Container
}

func (sc *scope) empty() bool {
	return len(sc.cens) == 0 && len(sc.cins) == 0 && len(sc.ctrs) == 0 && !sc.hosts
}

func (sc *scope) add(o *scope) {
	for k := range o.cens {
		sc.cens[k] = true
	}
	for k := range o.cins {
		sc.cins[k] = true
	}
	for k := range o.ctrs {
		sc.ctrs[k] = true
	}
	sc.hosts = sc.hosts || o.hosts
	sc.adopt = append(sc.adopt, o.adopt...)
}

func scopeCENs(sc *scope) map[string]bool { return sc.cens }
func scopeCINs(sc *scope) map[string]bool { return sc.cins }

func newScope() *scope {
	return &scope{cens: map[string]bool{}, cins: map[string]bool{}, ctrs: map[string]bool{}}
}

func (s *Service) scopeOf(cm graph.Commit) *scope {
	sc := newScope()
	for _, ch := range cm.Changes {
		switch ch.Bucket {
		case graph.BucketCENs:
			sc.cens[ch.Key] = true
		case graph.BucketCINs:
			sc.cins[ch.Key] = true
		case graph.BucketContainers:
			sc.ctrs[ch.Key] = true
			if ch.Deleted || !strings.HasPrefix(ch.Key, s.host+"/") {
				continue
			}
			if c, err := graph.DecodeContainer(ch.Value); err == nil && (c.Runtime == "" || c.State == graph.StateDeleting) {
				sc.adopt = append(sc.adopt, c)
			}
		case graph.BucketHosts, graph.BucketAlive:
			sc.hosts = true
		}
	}
	return sc
}

// world is the whole graph as one read saw it.
type world struct {
	rev  int64
	cens map[string]*graph.CEN
	cins []*graph.CIN
	ctrs map[graph.Member]*graph.Container
}

// readWorld reads the graph in one snapshot, and the hosts too when
// hosts is true.
func (s *Service) readWorld(ctx context.Context, hosts bool) (*world, error) {
	w := &world{cens: map[string]*graph.CEN{}, ctrs: map[graph.Member]*graph.Container{}}
	rev, err := s.store.ViewRev(ctx, func(tx graph.Tx) error {
		if hosts {
			if err := s.peers.load(tx); err != nil {
				return err
			}
		}
		cs, err := graph.ListCENs(tx)
		if err != nil {
			return err
		}
		clear(w.cens)
		for _, c := range cs {
			w.cens[c.ID] = c
		}
		if w.cins, err = graph.ListCINs(tx); err != nil {
			return err
		}
		ctrs, err := graph.ListContainers(tx)
		clear(w.ctrs)
		for _, c := range ctrs {
			w.ctrs[c.Member()] = c
		}
		return err
	})
	w.rev = rev
	return w, err
}

// realizePass follows the objects sc names (every object when sc is
// nil) and returns the revision it read at. It locks those objects, as
// a call would, and reads them again under the locks: what it applies is
// what the store holds while no call of this host can change it.
func (s *Service) realizePass(ctx context.Context, sc *scope) (rev int64, busy *scope, err error) {
	all := sc == nil || sc.hosts
	if all || len(sc.adopt) > 0 {
		var todo []*graph.Container
		if sc != nil {
			todo = sc.adopt
		}
		if err := s.adoptContainers(ctx, todo, all); err != nil {
			s.log.Warn("realizer: containers registered by other hosts", "err", err)
		}
	}
	// Which objects to look at, from the last pass's read (or a first
	// one): the commits name the CENs and CINs they changed, and a
	// container's CENs only change in commits of those CENs.
	w := s.lastWorld
	if w == nil || all {
		if w, err = s.readWorld(ctx, false); err != nil {
			return 0, nil, err
		}
	}
	cens, cins := s.passObjects(w, sc, all)
	// Objects a call of this host holds are left for a later pass.
	var unlocks []func()
	defer func() {
		for _, u := range unlocks {
			u()
		}
	}()
	held := func(ids []string, key func(string) string, later func(*scope) map[string]bool) []string {
		var got []string
		for _, id := range ids {
			unlock, ok := s.locks.tryLock(key(id))
			if !ok {
				if busy == nil {
					busy = newScope()
				}
				later(busy)[id] = true
				continue
			}
			unlocks = append(unlocks, unlock)
			got = append(got, id)
		}
		return got
	}
	cens = held(cens, cenKey, scopeCENs)
	cins = held(cins, cinKey, scopeCINs)
	// The pass reads at one revision, the hosts too when they changed:
	// the watch goes on from it, so no change after it is missed.
	if w, err = s.readWorld(ctx, all); err != nil {
		return 0, busy, err
	}
	s.lastWorld = w
	// Reports answer calls that wait: for the objects a commit changed,
	// or all of them after hosts came or went.
	asked := func(kind func(*scope) map[string]bool, id string) bool { return all || kind(sc)[id] }
	var reports []*graph.Realized
	for _, id := range cens {
		if r := s.realizeCEN(ctx, w, id, sc != nil && sc.hosts); r != nil && asked(scopeCENs, id) {
			reports = append(reports, r)
		}
	}
	for _, id := range cins {
		if r := s.realizeCIN(ctx, w, id); r != nil && asked(scopeCINs, id) {
			reports = append(reports, r)
		}
	}
	if busy != nil && sc != nil && sc.hosts {
		busy.hosts = true
	}
	// Containers registered here after the adoption above: the watch
	// goes on after this read, so they are taken now, in a pass soon.
	for _, c := range w.ctrs {
		if c.Host == s.host && (c.Runtime == "" && c.State != graph.StateFailed || c.State == graph.StateDeleting) {
			if busy == nil {
				busy = newScope()
			}
			busy.adopt = append(busy.adopt, c)
		}
	}
	s.log.Debug("realizer pass", "rev", w.rev, "cens", len(cens), "cins", len(cins), "reports", len(reports), "all", all)
	return w.rev, busy, s.report(ctx, reports)
}

// passObjects returns the CENs and CINs a pass looks at, sorted: those sc
// names, the CENs of the containers it names and the CINs over those
// CENs; every one, and every one this host holds, when all.
func (s *Service) passObjects(w *world, sc *scope, all bool) (cens, cins []string) {
	if sc != nil {
		// Named by the commits, new ones too (w may be from before them).
		for id := range sc.cens {
			cens = append(cens, id)
		}
		for id := range sc.cins {
			cins = append(cins, id)
		}
	}
	for _, id := range s.real.cens.ids() {
		if all || sc.cens[id] {
			cens = append(cens, id)
		}
	}
	for _, id := range s.real.cins.ids() {
		if all || sc.cins[id] {
			cins = append(cins, id)
		}
	}
	for id, c := range w.cens {
		switch {
		case all || sc.cens[id]:
			cens = append(cens, id)
		case len(sc.ctrs) > 0:
			// A container's state moves its ports.
			for _, m := range c.Members {
				if sc.ctrs[m.Key()] {
					cens = append(cens, id)
					break
				}
			}
		}
	}
	slices.Sort(cens)
	cens = slices.Compact(cens)
	for _, c := range w.cins {
		if all || sc.cins[c.ID] || touchesAny(c, cens) {
			cins = append(cins, c.ID)
		}
	}
	slices.Sort(cins)
	return cens, slices.Compact(cins)
}

func touchesAny(c *graph.CIN, cens []string) bool {
	for _, id := range c.CENs {
		if _, ok := slices.BinarySearch(cens, id); ok {
			return true
		}
	}
	return false
}

// realizeCEN brings this host's part of a CEN to what w says; the caller
// holds the CEN's lock. What this host's own calls applied is noted
// (applyCEN...), so it applies only what differs: other hosts' changes,
// flood lists when hosts come and go. A CEN that is gone is removed
// whoever deleted it (removing what is not there changes nothing). A host
// alone on its store only notes what its calls did, unless its hosts
// changed (force).
func (s *Service) realizeCEN(ctx context.Context, w *world, id string, force bool) *graph.Realized {
	c := w.cens[id]
	var want *netfab.CEN
	if c != nil && live(c.State) {
		want = s.spec(c, w.ctrs) // nothing, on a host with no part
	}
	have := s.real.cens.get(id)
	if !force && !s.peers.shared() {
		// Alone: this host's calls did all there is; the kernel holds want.
		s.real.cens.set(id, want)
		return nil
	}
	var err error
	if c != nil && want != nil {
		err = s.partErr(c)
	}
	if err == nil && !reflect.DeepEqual(have, want) {
		switch {
		case want == nil && have != nil:
			err = s.fab.Destroy(ctx, have)
		case want != nil:
			err = s.fab.Apply(ctx, have, want)
		}
	}
	if err == nil {
		s.real.cens.set(id, want)
	} else {
		s.log.Warn("realizer: CEN", "cen", id, "err", err)
	}
	if c == nil || (!s.hasPart(c) && have == nil) {
		return nil
	}
	return s.realizedReport(kindCEN, id, w.rev, c.State, err)
}

// realizeCIN brings this host's part of a CIN (its members' addresses,
// and the gateways where this host routes it) to what w says; the
// caller holds the CIN's lock.
func (s *Service) realizeCIN(ctx context.Context, w *world, id string) *graph.Realized {
	var c *graph.CIN
	for _, x := range w.cins {
		if x.ID == id {
			c = x
		}
	}
	have := s.real.cins.get(id)
	if c == nil {
		// Gone: its addresses go, whoever deleted it.
		if have != nil {
			if err := s.fab.ApplyCIN(ctx, have, nil, nil); err != nil {
				s.log.Warn("realizer: CIN", "cin", id, "err", err)
				return nil
			}
		}
		s.real.cins.set(id, nil)
		return nil
	}
	cw := &cinWorld{cin: c, cens: map[string]*graph.CEN{}, ctrs: w.ctrs}
	part := c.Router == s.host
	for _, id := range c.CENs {
		if n := w.cens[id]; n != nil {
			cw.cens[id] = n
			part = part || s.hasPart(n)
		}
	}
	var want *netfab.CIN
	if live(c.State) && len(cw.cens) == len(c.CENs) {
		want = s.cinSpec(cw)
	}
	if !s.peers.shared() {
		s.real.cins.set(id, want)
		return nil
	}
	var err error
	if !reflect.DeepEqual(have, want) {
		err = s.fab.ApplyCIN(ctx, have, want, nil)
	}
	if err == nil {
		s.real.cins.set(id, want)
	} else {
		s.log.Warn("realizer: CIN", "cin", id, "err", err)
	}
	if !part && have == nil {
		return nil
	}
	return s.realizedReport(kindCIN, id, w.rev, c.State, err)
}

func (s *Service) realizedReport(k kind, id string, rev int64, st graph.State, err error) *graph.Realized {
	r := &graph.Realized{Host: s.host, Kind: k.name, ID: id, Revision: rev, State: st}
	if err != nil {
		r.State, r.Error = graph.StateFailed, err.Error()
	}
	return r
}

// maxWritesPerTxn keeps the realizer's transactions (reports, containers
// found) under etcd's default limit of operations per transaction.
const maxWritesPerTxn = 100

// report writes the realizer's reports, in as few transactions as fit.
func (s *Service) report(ctx context.Context, rs []*graph.Realized) error {
	for len(rs) > 0 {
		n := min(len(rs), maxWritesPerTxn)
		batch := rs[:n]
		rs = rs[n:]
		if _, err := s.store.UpdateRev(ctx, func(tx graph.Tx) error {
			for _, r := range batch {
				if err := graph.PutRealized(tx, r); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return fmt.Errorf("report what was realized: %w", err)
		}
	}
	return nil
}

// forgetReports deletes every host's reports on an object that is being
// deleted.
func forgetReports(tx graph.Tx, k kind, id string) error {
	rs, err := graph.ListRealized(tx, k.name, id)
	for _, r := range rs {
		if err := graph.DeleteRealized(tx, k.name, id, r.Host); err != nil {
			return err
		}
	}
	return err
}

// adoptContainers resolves the containers other hosts registered on
// this one (records without a runtime): this host's runtimes find them,
// and the netns runtime makes their namespaces. It forgets those other
// hosts deleted (state deleting), releasing their namespaces: those of
// cs, as commits had them, or every one in the store when all.
func (s *Service) adoptContainers(ctx context.Context, cs []*graph.Container, all bool) error {
	if all {
		if err := s.store.View(func(tx graph.Tx) (err error) {
			cs, err = graph.ListContainers(tx)
			return err
		}); err != nil {
			return err
		}
	}
	var todo, gone []*graph.Container
	for _, c := range cs {
		switch {
		case c.Host != s.host:
		case c.State == graph.StateDeleting:
			gone = append(gone, c)
		case c.Runtime == "":
			todo = append(todo, c)
		}
	}
	var errs []error
	for _, c := range gone {
		if _, err := s.forgetContainer(ctx, c.Member()); err != nil {
			errs = append(errs, fmt.Errorf("container %q: %w", c.ID, err))
		}
	}
	if len(todo) == 0 {
		return errors.Join(errs...)
	}
	// Found in one pass, recorded in as few transactions as fit, their
	// namespaces made in one batch: a CEN file of hundreds of members
	// costs a few round trips to the store.
	var locks []string
	for _, c := range todo {
		locks = append(locks, ctrKey(c.Member()))
	}
	defer s.locks.lock(locks...)()
	found := make([]*graph.Container, len(todo))
	for i, p := range todo {
		c, err := s.resolve(ctx, s.host, p.ID)
		if err != nil {
			c = p
			c.State, c.Error = graph.StateFailed, err.Error()
		}
		found[i] = c
	}
	var done []*graph.Container
	for rest := found; len(rest) > 0; {
		batch := rest[:min(len(rest), maxWritesPerTxn)]
		rest = rest[len(batch):]
		var put []*graph.Container
		if err := s.store.Update(func(tx graph.Tx) error {
			put = put[:0]
			for _, c := range batch {
				cur, err := graph.GetContainer(tx, c.Host, c.ID)
				if errors.Is(err, graph.ErrNotFound) || err == nil && cur.Runtime != "" {
					continue // forgotten, or found meanwhile
				}
				if err != nil {
					return err
				}
				cur.Runtime, cur.Netns, cur.Owned, cur.State, cur.Error = c.Runtime, c.Netns, c.Owned, c.State, c.Error
				if err := graph.PutContainer(tx, cur); err != nil {
					return err
				}
				put = append(put, cur)
			}
			return nil
		}); err != nil {
			errs = append(errs, err)
			continue
		}
		for _, c := range put {
			if c.Runtime != "" {
				done = append(done, c)
			}
		}
	}
	if err := s.refresh(ctx, done); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// The kernel calls of this host's own calls go through these, which note
// what the kernel holds after them: the realizer then applies only what
// differs, such as another host's change that came in meanwhile. On
// failure the fabric has put back what was there before.

func (s *Service) applyCEN(ctx context.Context, prev, next *netfab.CEN) error {
	err := s.fab.Apply(ctx, prev, next)
	if err == nil {
		s.real.cens.set(next.ID, next)
	}
	return err
}

func (s *Service) destroyCEN(ctx context.Context, c *netfab.CEN) error {
	err := s.fab.Destroy(ctx, c)
	if err == nil && c != nil {
		s.real.cens.set(c.ID, nil)
	}
	return err
}

func (s *Service) destroyCENs(ctx context.Context, cs []*netfab.CEN) error {
	err := s.fab.DestroyMany(ctx, cs)
	if err == nil {
		for _, c := range cs {
			s.real.cens.set(c.ID, nil)
		}
	}
	return err
}

func (s *Service) applyCIN(ctx context.Context, prev, next *netfab.CIN, dirty func(netfab.Address) bool) error {
	err := s.fab.ApplyCIN(ctx, prev, next, dirty)
	switch {
	case err == nil && next != nil:
		s.real.cins.set(next.ID, next)
	case err == nil && prev != nil:
		s.real.cins.set(prev.ID, nil)
	}
	return err
}
