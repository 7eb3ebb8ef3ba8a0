package core

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/netfab"
)

// The realizer. Every host watches the store and realizes its own part
// of what other hosts' APIs committed: a CEN or CIN whose OpHost is
// another host, a container another host registered here, the flood
// lists of CENs when hosts come and go. What this host's own API changes
// it realizes at once, in the call, as a single host always did; the
// realizer then only notes what the kernel holds.
//
// It is level-triggered: a commit only says which objects to look at;
// what is realized is the object as the store holds it now, so commits
// missed while the store was unreachable, or a full resync, converge to
// the same kernel. For each object it realized for another host it
// writes a graph.Realized report, which that host's call waits for
// (await).

// realized is what this host's kernel holds of CENs and CINs, as the
// realizer last saw or made it.
type realized struct {
	mu   sync.Mutex
	cens map[string]*netfab.CEN
	cins map[string]*netfab.CIN
}

func (r *realized) cen(id string) *netfab.CEN {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cens[id]
}

func (r *realized) setCEN(id string, sp *netfab.CEN) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cens == nil {
		r.cens = map[string]*netfab.CEN{}
	}
	if sp == nil {
		delete(r.cens, id)
	} else {
		r.cens[id] = sp
	}
}

func (r *realized) cin(id string) *netfab.CIN {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cins[id]
}

func (r *realized) setCIN(id string, sp *netfab.CIN) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cins == nil {
		r.cins = map[string]*netfab.CIN{}
	}
	if sp == nil {
		delete(r.cins, id)
	} else {
		r.cins[id] = sp
	}
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
		if full {
			r, err := s.realizePass(ctx, nil)
			if err != nil {
				s.log.Warn("realizer: full pass", "err", err)
				sleep(ctx, backoff)
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			rev, full = max(rev, r), false
		}
		w := s.store.Watch(ctx, rev)
		for cm := range w.C {
			backoff = 100 * time.Millisecond
			s.relayEvents(cm)
			sc := scopeOf(cm)
			if sc.empty() {
				rev = cm.Revision
				continue
			}
			// Take every commit already waiting: one pass for them all.
			rev = cm.Revision
			for more := true; more; {
				select {
				case cm2, ok := <-w.C:
					if !ok {
						more = false
						break
					}
					s.relayEvents(cm2)
					sc.add(scopeOf(cm2))
					rev = cm2.Revision
				default:
					more = false
				}
			}
			if _, err := s.realizePass(ctx, sc); err != nil {
				s.log.Warn("realizer", "err", err)
				full = true
				break
			}
		}
		if ctx.Err() != nil {
			return
		}
		if err := w.Err(); err != nil {
			s.log.Warn("realizer: watch ended; resyncing", "err", err)
		}
		full = true
		sleep(ctx, backoff)
		backoff = min(2*backoff, 5*time.Second)
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
}

func scopeOf(cm graph.Commit) *scope {
	sc := &scope{cens: map[string]bool{}, cins: map[string]bool{}, ctrs: map[string]bool{}}
	for _, ch := range cm.Changes {
		switch ch.Bucket {
		case graph.BucketCENs:
			sc.cens[ch.Key] = true
		case graph.BucketCINs:
			sc.cins[ch.Key] = true
		case graph.BucketContainers:
			sc.ctrs[ch.Key] = true
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

func (s *Service) readWorld(ctx context.Context) (*world, error) {
	w := &world{cens: map[string]*graph.CEN{}, ctrs: map[graph.Member]*graph.Container{}}
	rev, err := s.store.ViewRev(ctx, func(tx graph.Tx) error {
		if err := s.peers.load(tx); err != nil {
			return err
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
// nil) and returns the revision it read at.
func (s *Service) realizePass(ctx context.Context, sc *scope) (int64, error) {
	if sc == nil || len(sc.ctrs) > 0 {
		var keys map[string]bool
		if sc != nil {
			keys = sc.ctrs
		}
		if err := s.adoptContainers(ctx, keys); err != nil {
			s.log.Warn("realizer: containers registered by other hosts", "err", err)
		}
	}
	w, err := s.readWorld(ctx)
	if err != nil {
		return 0, err
	}
	all := sc == nil || sc.hosts
	var cens []string
	if all {
		for id := range w.cens {
			cens = append(cens, id)
		}
		s.real.mu.Lock()
		for id := range s.real.cens {
			cens = append(cens, id)
		}
		s.real.mu.Unlock()
	} else {
		for id := range sc.cens {
			cens = append(cens, id)
		}
		// A container's state moves its ports.
		for _, c := range w.cens {
			for _, m := range c.Members {
				if sc.ctrs[m.Key()] {
					cens = append(cens, c.ID)
					break
				}
			}
		}
	}
	slices.Sort(cens)
	cens = slices.Compact(cens)
	var reports []*graph.Realized
	for _, id := range cens {
		if r := s.realizeCEN(ctx, w, id, sc != nil && sc.hosts); r != nil {
			reports = append(reports, r)
		}
	}
	for _, c := range w.cins {
		if !all && !sc.cins[c.ID] && !touchesAny(c, cens) {
			continue
		}
		if r := s.realizeCIN(ctx, w, c); r != nil {
			reports = append(reports, r)
		}
	}
	return w.rev, s.report(ctx, reports)
}

func touchesAny(c *graph.CIN, cens []string) bool {
	for _, id := range c.CENs {
		if _, ok := slices.BinarySearch(cens, id); ok {
			return true
		}
	}
	return false
}

// realizeCEN brings this host's part of a CEN to what w says. It applies
// nothing when this host's own API made the change (the call did), unless
// hosts came or went (force), which no call follows.
func (s *Service) realizeCEN(ctx context.Context, w *world, id string, force bool) *graph.Realized {
	defer s.locks.lock(cenKey(id))()
	c := w.cens[id]
	var want *netfab.CEN
	if c != nil && live(c.State) && s.hasPart(c) {
		want = s.spec(c, w.ctrs)
	}
	have := s.real.cen(id)
	ours := c == nil || s.mine(c.OpHost)
	if ours && !force {
		s.real.setCEN(id, want)
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
		s.real.setCEN(id, want)
	} else {
		s.log.Warn("realizer: CEN", "cen", id, "err", err)
	}
	if c == nil || ours || (!s.hasPart(c) && have == nil) {
		return nil
	}
	return s.realizedReport(kindCEN, id, w.rev, c.State, err)
}

// realizeCIN brings this host's part of a CIN (its members' addresses,
// and the gateways where this host routes it) to what w says.
func (s *Service) realizeCIN(ctx context.Context, w *world, c *graph.CIN) *graph.Realized {
	defer s.locks.lock(cinKey(c.ID))()
	cw := &cinWorld{cin: c, cens: map[string]*graph.CEN{}, ctrs: w.ctrs}
	part := c.Router == s.host
	for _, id := range c.CENs {
		if n := w.cens[id]; n != nil {
			cw.cens[id] = n
			part = part || s.hasPart(n)
		}
	}
	var want *netfab.CIN
	if live(c.State) && part && len(cw.cens) == len(c.CENs) {
		want = s.cinSpec(cw)
	}
	have := s.real.cin(c.ID)
	if s.mine(c.OpHost) {
		s.real.setCIN(c.ID, want)
		return nil
	}
	var err error
	if !reflect.DeepEqual(have, want) {
		err = s.fab.ApplyCIN(ctx, have, want, nil)
	}
	if err == nil {
		s.real.setCIN(c.ID, want)
	} else {
		s.log.Warn("realizer: CIN", "cin", c.ID, "err", err)
	}
	if !part && have == nil {
		return nil
	}
	return s.realizedReport(kindCIN, c.ID, w.rev, c.State, err)
}

func (s *Service) realizedReport(k kind, id string, rev int64, st graph.State, err error) *graph.Realized {
	r := &graph.Realized{Host: s.host, Kind: k.name, ID: id, Revision: rev, State: st}
	if err != nil {
		r.State, r.Error = graph.StateFailed, err.Error()
	}
	return r
}

// maxReportsPerTxn keeps a report's transaction under etcd's default
// limit of operations per transaction.
const maxReportsPerTxn = 100

// report writes the realizer's reports, in as few transactions as fit.
func (s *Service) report(ctx context.Context, rs []*graph.Realized) error {
	for len(rs) > 0 {
		n := min(len(rs), maxReportsPerTxn)
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

// adoptContainers resolves the containers other hosts registered on
// this one (records without a runtime): this host's runtimes find them,
// and the netns runtime makes their namespaces. It forgets those other
// hosts deleted (state deleting), releasing their namespaces. keys
// limits it to those containers (nil: all of this host's).
func (s *Service) adoptContainers(ctx context.Context, keys map[string]bool) error {
	var todo, gone []*graph.Container
	if err := s.store.View(func(tx graph.Tx) error {
		cs, err := graph.ListContainers(tx)
		for _, c := range cs {
			if c.Host != s.host || keys != nil && !keys[c.Member().Key()] {
				continue
			}
			switch {
			case c.State == graph.StateDeleting:
				gone = append(gone, c)
			case c.Runtime == "":
				todo = append(todo, c)
			}
		}
		return err
	}); err != nil {
		return err
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
		batch := rest[:min(len(rest), maxReportsPerTxn)]
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
