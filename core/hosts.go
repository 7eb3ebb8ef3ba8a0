package core

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/netfab"
)

// HostConfig is this host's part in a fabric of several hosts sharing
// one store: how its segments of CENs are joined to the other hosts'.
type HostConfig struct {
	// Underlay is this host's address toward the other hosts; without
	// one, CENs that span hosts cannot have a part here.
	Underlay netip.Addr
	// VXLANPort is the UDP port of VXLAN, the same on every host (4789
	// when 0).
	VXLANPort uint16
	// MTU is set on every link of a CEN that spans hosts (the underlay's
	// less VXLAN's 50 bytes); 0 leaves links as they are.
	MTU int
	// VNIs is where CENs get their VXLAN network identifiers.
	VNIs VNIRange
	// Timeout bounds how long a call waits for other hosts to realize
	// their part (30 s when 0).
	Timeout time.Duration
}

// VNIRange is a range of VXLAN network identifiers, both ends included.
type VNIRange struct{ Lo, Hi uint32 }

// DefaultVNIs leaves the low VNIs to whatever else the network runs.
var DefaultVNIs = VNIRange{Lo: 4096, Hi: 1<<24 - 1}

func (r VNIRange) String() string { return fmt.Sprintf("%d-%d", r.Lo, r.Hi) }

// ParseVNIRange parses "LO-HI".
func ParseVNIRange(s string) (VNIRange, error) {
	lo, hi, ok := strings.Cut(s, "-")
	a, err1 := strconv.ParseUint(lo, 10, 32)
	b, err2 := strconv.ParseUint(hi, 10, 32)
	if !ok || err1 != nil || err2 != nil || a < 1 || a > b || b >= 1<<24 {
		return VNIRange{}, graph.Errorf(graph.ErrInvalid, "VNI range %q: want LO-HI with 1 <= LO <= HI < 16777216", s)
	}
	return VNIRange{Lo: uint32(a), Hi: uint32(b)}, nil
}

// DefaultVXLANPort is IANA's VXLAN port.
const DefaultVXLANPort = 4789

// defaultHostTimeout bounds the wait for other hosts.
const defaultHostTimeout = 30 * time.Second

// HostView is a host as GET /host shows it.
type HostView struct {
	ID        string `json:"hostID"`
	Underlay  string `json:"underlay"`
	State     string `json:"state"` // running while its lease lives, else unknown
	VXLANPort int    `json:"vxlan_port"`
	MTU       int    `json:"mtu"`
	VNIRange  string `json:"vni_range"`
	// Error names a setting that differs from this host's: VXLAN between
	// the two would not work.
	Error   string    `json:"error,omitempty"`
	Started time.Time `json:"started"`
}

// hostTable is what this host knows of the others: their records and
// whether their lease lives, kept current by the realizer's watch.
type hostTable struct {
	mu    sync.RWMutex
	hosts map[string]*graph.Host
	alive map[string]bool
}

func (t *hostTable) load(tx graph.Tx) error {
	hs, err := graph.ListHosts(tx)
	if err != nil {
		return err
	}
	alive, err := graph.ListAlive(tx)
	if err != nil {
		return err
	}
	m := map[string]*graph.Host{}
	for _, h := range hs {
		m[h.ID] = h
	}
	t.mu.Lock()
	t.hosts, t.alive = m, alive
	t.mu.Unlock()
	return nil
}

// shared reports whether other hosts share the store.
func (t *hostTable) shared() bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.hosts) > 1
}

func (t *hostTable) get(id string) (h *graph.Host, alive bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.hosts[id], t.alive[id]
}

// record returns this host's record as the store should hold it.
func (s *Service) record(version string) *graph.Host {
	h := &graph.Host{ID: s.host, VXLANPort: int(s.hc.VXLANPort), MTU: s.hc.MTU, VNIRange: s.hc.VNIs.String(), Version: version, Started: time.Now().UTC()}
	if s.hc.Underlay.IsValid() {
		h.Underlay = s.hc.Underlay.String()
	}
	return h
}

// mismatch says how another host's settings differ from this host's in
// ways that break VXLAN between them ("" when they agree).
func (s *Service) mismatch(h *graph.Host) string {
	var d []string
	if h.VXLANPort != int(s.hc.VXLANPort) {
		d = append(d, fmt.Sprintf("VXLAN port %d (this host %q: %d)", h.VXLANPort, s.host, s.hc.VXLANPort))
	}
	if h.MTU != s.hc.MTU {
		d = append(d, fmt.Sprintf("MTU %d (this host %q: %d)", h.MTU, s.host, s.hc.MTU))
	}
	if h.VNIRange != s.hc.VNIs.String() {
		d = append(d, fmt.Sprintf("VNI range %s (this host %q: %s)", h.VNIRange, s.host, s.hc.VNIs))
	}
	if len(d) == 0 {
		return ""
	}
	return "settings differ from this host's: " + strings.Join(d, ", ")
}

// ListHosts returns every host that ever served this store, by ID.
func (s *Service) ListHosts(ctx context.Context) ([]HostView, error) {
	out := []HostView{}
	err := s.store.View(func(tx graph.Tx) error {
		hs, err := graph.ListHosts(tx)
		if err != nil {
			return err
		}
		alive, err := graph.ListAlive(tx)
		for _, h := range hs {
			v := HostView{ID: h.ID, Underlay: h.Underlay, State: string(graph.StateUnknown), VXLANPort: h.VXLANPort, MTU: h.MTU, VNIRange: h.VNIRange, Started: h.Started}
			if alive[h.ID] {
				v.State = string(graph.StateRunning)
			}
			if h.ID != s.host {
				v.Error = s.mismatch(h)
			}
			out = append(out, v)
		}
		return err
	})
	return out, err
}

// checkHost accepts this host and every host that registered with the
// store.
func (s *Service) checkHost(host string) error {
	if err := graph.ValidateID("host", host); err != nil {
		return err
	}
	if host == s.host {
		return nil
	}
	if h, _ := s.peers.get(host); h != nil {
		return nil
	}
	err := s.store.View(func(tx graph.Tx) error {
		_, err := graph.GetHost(tx, host)
		return err
	})
	if errors.Is(err, graph.ErrNotFound) {
		return graph.Errorf(graph.ErrNotFound, "no host %q (this server is %q)", host, s.host)
	}
	return err
}

// spans reports whether c has a part on another host than this one.
func (s *Service) spans(c *graph.CEN) bool {
	for _, h := range c.Hosts() {
		if h != s.host {
			return true
		}
	}
	return false
}

// hasPart reports whether this host holds a part of c.
func (s *Service) hasPart(c *graph.CEN) bool { return slices.Contains(c.Hosts(), s.host) }

// others returns the hosts other than this one that hold a part of c.
func (s *Service) others(c *graph.CEN) []string {
	return slices.DeleteFunc(c.Hosts(), func(h string) bool { return h == s.host })
}

// vxlan is this host's VXLAN port of a CEN that spans hosts: flooding to
// every other host of the CEN whose lease lives.
func (s *Service) vxlan(c *graph.CEN) *netfab.VXLANSpec {
	v := &netfab.VXLANSpec{VNI: c.VNI, Port: s.hc.VXLANPort, Local: s.hc.Underlay, MTU: s.hc.MTU}
	for _, h := range s.others(c) {
		rec, alive := s.peers.get(h)
		if !alive || rec == nil {
			continue
		}
		if a, err := netip.ParseAddr(rec.Underlay); err == nil {
			v.Peers = append(v.Peers, a)
		}
	}
	return v
}

// partErr says why this host cannot hold its part of a CEN that spans
// hosts, or nil.
func (s *Service) partErr(c *graph.CEN) error {
	if !s.hasPart(c) || len(c.Hosts()) < 2 {
		return nil
	}
	if !s.hc.Underlay.IsValid() {
		return graph.Errorf(graph.ErrInvalid, "CEN %q spans hosts %s, and host %q has no underlay address (serve --underlay)", c.ID, graph.QuoteList(c.Hosts()), s.host)
	}
	if c.VNI == 0 {
		return graph.Errorf(graph.ErrInvalid, "CEN %q spans hosts but has no VNI (it dates from before hosts were joined): delete it and create it again", c.ID)
	}
	return nil
}

// freeVNI returns the lowest VNI of the range that no CEN in used has.
func (s *Service) freeVNI(used map[uint32]bool) (uint32, error) {
	for v := s.hc.VNIs.Lo; v <= s.hc.VNIs.Hi && v != 0; v++ {
		if !used[v] {
			return v, nil
		}
	}
	return 0, graph.Errorf(graph.ErrConflict, "no free VNI in %s", s.hc.VNIs)
}

// awaitKey names an object whose realization a call waits for.
type awaitKey struct {
	kind kind
	id   string
}

// await waits until every host in want has reported on its object at
// revision rev or later (see Realize), and returns, by object, what went
// wrong: the errors hosts reported, hosts whose lease is gone, and hosts
// that did not report within the host timeout. Objects with nothing
// wrong have no entry.
func (s *Service) await(ctx context.Context, want map[awaitKey][]string, rev int64) map[awaitKey]error {
	out := map[awaitKey]error{}
	if len(want) == 0 {
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, s.hc.Timeout)
	defer cancel()
	pending := map[awaitKey][]string{}
	for k, hs := range want {
		hs = slices.Clone(hs)
		slices.Sort(hs)
		if hs = slices.DeleteFunc(slices.Compact(hs), func(h string) bool { return h == s.host }); len(hs) > 0 {
			pending[k] = hs
		}
	}
	fails := map[awaitKey][]error{}
	check := func(tx graph.Tx) error {
		alive, err := graph.ListAlive(tx)
		if err != nil {
			return err
		}
		for k, hs := range pending {
			rs, err := graph.ListRealized(tx, k.kind.name, k.id)
			if err != nil {
				return err
			}
			by := map[string]*graph.Realized{}
			for _, r := range rs {
				by[r.Host] = r
			}
			var left []string
			for _, h := range hs {
				r := by[h]
				switch {
				case r != nil && r.Revision >= rev:
					if r.Error != "" {
						fails[k] = append(fails[k], fmt.Errorf("host %q: %s", h, r.Error))
					}
				case !alive[h]:
					fails[k] = append(fails[k], graph.Errorf(graph.ErrUnavailable, "host %q is unknown (its lease expired): its part is not realized", h))
				default:
					left = append(left, h)
				}
			}
			if len(left) == 0 {
				delete(pending, k)
			} else {
				pending[k] = left
			}
		}
		return nil
	}
	err := s.waitFor(ctx, func(tx graph.Tx) (bool, error) {
		err := check(tx)
		return len(pending) == 0, err
	}, graph.BucketRealized, graph.BucketAlive)
	for k, hs := range pending {
		for _, h := range hs {
			why := fmt.Sprintf("did not report within %v", s.hc.Timeout)
			if !errors.Is(err, context.DeadlineExceeded) {
				why = fmt.Sprintf("could not be waited for: %v", err)
			}
			fails[k] = append(fails[k], graph.Errorf(graph.ErrUnavailable, "host %q %s", h, why))
		}
	}
	for k, errs := range fails {
		out[k] = errors.Join(errs...)
		if !slices.ContainsFunc(errs, func(e error) bool { return !errors.Is(e, graph.ErrUnavailable) }) {
			out[k] = lagging{out[k]}
		}
	}
	return out
}

// lagging is what await returns for an object when every host that did
// not realize it is only late: unknown, or silent. None failed: the
// object stays as the call committed it, and those hosts realize it when
// they are back.
type lagging struct{ error }

func (l lagging) Unwrap() error { return l.error }

// isLagging reports whether err says only that hosts are late.
func isLagging(err error) bool {
	var l lagging
	return errors.As(err, &l)
}

// touches reports whether a commit changes a key of one of buckets.
func touches(cm graph.Commit, buckets ...string) bool {
	for _, ch := range cm.Changes {
		if slices.Contains(buckets, ch.Bucket) {
			return true
		}
	}
	return false
}

// waitFor calls done in a read of the store, again after every commit to
// one of buckets, until it reports true, fails, or ctx ends.
func (s *Service) waitFor(ctx context.Context, done func(graph.Tx) (bool, error), buckets ...string) error {
	for {
		var ok bool
		at, err := s.store.ViewRev(ctx, func(tx graph.Tx) (err error) {
			ok, err = done(tx)
			return err
		})
		if err != nil || ok {
			return err
		}
		wctx, stop := context.WithCancel(ctx)
		w := s.store.Watch(wctx, at)
		for cm := range w.C {
			if touches(cm, buckets...) {
				break
			}
		}
		stop()
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// Register records this host among those sharing the store, and warns
// of other hosts whose settings would break VXLAN with this one.
func (s *Service) Register(ctx context.Context, version string) error {
	rec := s.record(version)
	var others []*graph.Host
	_, err := s.store.UpdateRev(ctx, func(tx graph.Tx) error {
		hs, err := graph.ListHosts(tx)
		if err != nil {
			return err
		}
		others = slices.DeleteFunc(hs, func(h *graph.Host) bool { return h.ID == s.host })
		return graph.PutHost(tx, rec)
	})
	if err != nil {
		return fmt.Errorf("register host %q: %w", s.host, err)
	}
	for _, h := range others {
		if d := s.mismatch(h); d != "" {
			s.log.Error("host "+h.ID+": "+d, "host", h.ID)
		}
	}
	return nil
}

// AwaitAlive waits until the store shows this host running (its lease
// is in place).
func (s *Service) AwaitAlive(ctx context.Context) error {
	return s.waitFor(ctx, func(tx graph.Tx) (bool, error) {
		alive, err := graph.ListAlive(tx)
		return alive[s.host], err
	}, graph.BucketAlive)
}

// awaitReleased is await with the locks of keys released while it waits
// (*unlock releases them; it is replaced by a new one once they are
// taken again). A call that waits for other hosts must not hold this
// host's realizer off the objects: another host's call may be waiting
// for this host's report on them meanwhile. What the call does after it
// reads the objects again.
func (s *Service) awaitReleased(ctx context.Context, unlock *func(), keys []string, want map[awaitKey][]string, rev int64) map[awaitKey]error {
	if len(want) == 0 {
		return map[awaitKey]error{}
	}
	(*unlock)()
	fails := s.await(ctx, want, rev)
	*unlock = s.locks.lock(keys...)
	return fails
}
