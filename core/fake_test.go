package core

import (
	"context"
	"errors"
	"path"
	"slices"
	"sync"
	"testing"

	"github.com/leviathan-net/leviathan/cen"
	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/netfab"
)

// fakeKernel stands in for netfab behind core's seams (Fabric and
// Namespaces), so core's decisions can be checked without root: which
// ports it asks for, and what it removes after a failure. It records; it
// realizes nothing. Kernel behaviour itself is tested for real in netfab
// and rest.
type fakeKernel struct {
	mu      sync.Mutex
	ns      map[string]bool        // existing namespaces
	applied map[string]*netfab.CEN // last spec applied per CEN
	removed []string               // CENs destroyed
	failOn  string                 // a member whose port fails to be made
}

func newFakeKernel() *fakeKernel {
	return &fakeKernel{ns: map[string]bool{}, applied: map[string]*netfab.CEN{}}
}

func (k *fakeKernel) NetnsPath(name string) string { return path.Join("/fake/netns", name) }
func (k *fakeKernel) IsNetns(p string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.ns[p]
}
func (k *fakeKernel) CreateNetns(ctx context.Context, paths []string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, p := range paths {
		k.ns[p] = true
	}
	return nil
}
func (k *fakeKernel) DeleteNetns(p string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.ns, p)
	return nil
}

var errFakePort = errors.New("fake: cannot make this port")

func (k *fakeKernel) Apply(ctx context.Context, prev, next *netfab.CEN) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, p := range next.Ports {
		if p.Member == k.failOn {
			return &netfab.MemberError{Member: p.Member, Err: errFakePort}
		}
	}
	k.applied[next.ID] = next
	return nil
}
func (k *fakeKernel) Destroy(ctx context.Context, c *netfab.CEN) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.removed = append(k.removed, c.ID)
	delete(k.applied, c.ID)
	return nil
}
func (k *fakeKernel) DestroyMany(ctx context.Context, cs []*netfab.CEN) error {
	for _, c := range cs {
		k.Destroy(ctx, c)
	}
	return nil
}
func (k *fakeKernel) Reconcile(ctx context.Context, desired []*netfab.CEN, namespaces []string) (netfab.ReconcileReport, error) {
	return netfab.ReconcileReport{}, nil
}
func (k *fakeKernel) ApplyCIN(ctx context.Context, prev, next *netfab.CIN, dirty func(netfab.Address) bool) error {
	return nil
}
func (k *fakeKernel) ReconcileCINs(ctx context.Context, desired []*netfab.CIN, namespaces []string) (netfab.ReconcileReport, error) {
	return netfab.ReconcileReport{}, nil
}

func fakeService(t *testing.T) (*Service, *fakeKernel) {
	t.Helper()
	store, err := graph.OpenBolt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	k := newFakeKernel()
	s, err := New(Options{HostID: "h", Store: store, Fabric: k, Runtimes: []Runtime{&NetnsRuntime{NS: k}}})
	if err != nil {
		t.Fatal(err)
	}
	return s, k
}

func portsOf(c *netfab.CEN) []string {
	var out []string
	for _, p := range c.Ports {
		out = append(out, p.Member)
	}
	return out
}

// What core asks of the kernel when members do not run, and when a make
// fails.
func TestMakeAsksForRunningMembersOnly(t *testing.T) {
	ctx := context.Background()
	s, k := fakeService(t)
	k.CreateNetns(ctx, []string{k.NetnsPath("named")}) // exists before: runtime "named"
	if _, err := s.ImportCENs(ctx, []cen.Spec{{ID: "c", Containers: []string{"a", "b", "named"}}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		before    func()
		wantPorts []string
		wantState graph.State
	}{
		{"all run", func() {}, []string{"a", "b", "named"}, graph.StateConfigured},
		{"named gone", func() { k.DeleteNetns(k.NetnsPath("named")) }, []string{"a", "b"}, graph.StateConfigured},
		{"owned gone is made again", func() { k.DeleteNetns(k.NetnsPath("a")) }, []string{"a", "b"}, graph.StateConfigured},
		{"a port fails: the CEN is removed whole", func() { k.failOn = "b" }, nil, graph.StateFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.before()
			res, err := s.MakeCENs(ctx, []string{"c"})
			if (err != nil) != (tc.wantState == graph.StateFailed) || res[0].State != tc.wantState {
				t.Fatalf("make: %+v, %v", res, err)
			}
			got := k.applied["c"]
			if tc.wantPorts == nil {
				if got != nil || !slices.Contains(k.removed, "c") {
					t.Fatalf("after a failed make the fake holds %+v, removed %v", got, k.removed)
				}
				return
			}
			if got == nil || !slices.Equal(portsOf(got), tc.wantPorts) || got.Wiring() != graph.WiringBridge {
				t.Fatalf("applied %+v, want ports %v on a bridge", got, tc.wantPorts)
			}
			v, err := s.GetCEN(ctx, "c")
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range v.Each {
				want := graph.StateRunning
				if !slices.Contains(tc.wantPorts, m.Container) {
					want = graph.StateStopped
				}
				if m.State != want {
					t.Errorf("member %s: %s, want %s", m.Container, m.State, want)
				}
			}
		})
	}
}
