package core

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/leviathan-net/leviathan/cen"
	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/netfab"
)

// fakeHost is one host of several sharing a store: a Service on a
// recording kernel, its realizer and its lease running.
type fakeHost struct {
	s    *Service
	k    *fakeKernel
	stop context.CancelFunc
	done chan struct{}
}

func startFakeHost(t *testing.T, store graph.Store, id, underlay string) *fakeHost {
	t.Helper()
	k := newFakeKernel()
	s, err := New(Options{HostID: id, Store: store, Fabric: k, Runtimes: []Runtime{&NetnsRuntime{Prefix: id + "-", NS: k}},
		Hosts: HostConfig{Underlay: netip.MustParseAddr(underlay), MTU: 1450, Timeout: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Register(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	rev, err := store.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	h := &fakeHost{s: s, k: k, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		go graph.AnnounceHost(ctx, store, id, time.Second)
		s.Realize(ctx, rev)
	}()
	if err := s.AwaitAlive(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.close)
	return h
}

func (h *fakeHost) close() {
	h.stop()
	<-h.done
}

// applied is the spec the host's kernel last got for a CEN.
func (h *fakeHost) applied(id string) *netfab.CEN {
	h.k.mu.Lock()
	defer h.k.mu.Unlock()
	return h.k.applied[id]
}

// eventually polls cond for a few seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("after 5s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Two hosts on one store: a CEN made through one host's API is realized
// by each host for its own members, joined by VXLAN to the other; when a
// host goes, the other stops flooding to it.
func TestRealizeAcrossHosts(t *testing.T) {
	ctx := context.Background()
	store, err := graph.OpenBolt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	a := startFakeHost(t, store, "hA", "192.0.2.1")
	b := startFakeHost(t, store, "hB", "192.0.2.2")
	eventually(t, "hA sees hB running", func() bool { _, alive := a.s.peers.get("hB"); return alive })

	if _, err := a.s.ImportCENs(ctx, []cen.Spec{{ID: "w", Containers: []string{"a1", "a2", "hB/b1"}}}); err != nil {
		t.Fatal(err)
	}
	// hB finds its container: a namespace of its own runtime's.
	eventually(t, "hB made b1's namespace", func() bool { return b.k.IsNetns(b.k.NetnsPath("hB-b1")) })
	if a.k.IsNetns(a.k.NetnsPath("hB-b1")) {
		t.Error("hA made a namespace for hB's container")
	}
	res, err := a.s.MakeCENs(ctx, []string{"w"})
	if err != nil || res[0].State != graph.StateConfigured {
		t.Fatalf("make: %+v, %v", res, err)
	}
	// The call returned once hB realized its part.
	for _, tc := range []struct {
		h     *fakeHost
		ports []string
		peer  string
	}{{a, []string{"a1", "a2"}, "192.0.2.2"}, {b, []string{"b1"}, "192.0.2.1"}} {
		sp := tc.h.applied("w")
		if sp == nil {
			t.Fatalf("%s: nothing applied for w", tc.h.s.host)
		}
		if got := portsOf(sp); !slices.Equal(got, tc.ports) {
			t.Errorf("%s: ports %v, want %v", tc.h.s.host, got, tc.ports)
		}
		if sp.VXLAN == nil || sp.VXLAN.VNI == 0 || len(sp.VXLAN.Peers) != 1 || sp.VXLAN.Peers[0].String() != tc.peer || sp.VXLAN.MTU != 1450 {
			t.Errorf("%s: VXLAN %+v, want VNI, the peer %s, MTU 1450", tc.h.s.host, sp.VXLAN, tc.peer)
		}
		if slices.Equal(sp.BridgeMAC, cen.BridgeMAC("w")) {
			t.Errorf("%s: bridge MAC is the gateway's, and no CIN is routed here", tc.h.s.host)
		}
	}
	if va, vb := a.applied("w").VXLAN.VNI, b.applied("w").VXLAN.VNI; va != vb {
		t.Errorf("VNI %d on hA, %d on hB", va, vb)
	}

	// Reports of a CEN go with it.
	if _, err := a.s.ImportCENs(ctx, []cen.Spec{{ID: "gone", Containers: []string{"a9", "hB/b9"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.s.MakeCENs(ctx, []string{"gone"}); err != nil {
		t.Fatal(err)
	}
	reports := func() int {
		var n int
		store.View(func(tx graph.Tx) error {
			rs, err := graph.ListRealized(tx, graph.RealizedCEN, "gone")
			n = len(rs)
			return err
		})
		return n
	}
	if reports() == 0 {
		t.Fatal("hB wrote no report on the CEN it realized")
	}
	if _, err := a.s.DestroyCENs(ctx, []string{"gone"}); err != nil {
		t.Fatal(err)
	}
	if err := a.s.DeleteCEN(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if n := reports(); n != 0 {
		t.Errorf("%d reports on a deleted CEN left in the store", n)
	}

	// hB goes: its lease ends, hA floods to nobody.
	b.close()
	eventually(t, "hA stops flooding to hB", func() bool {
		sp := a.applied("w")
		return sp != nil && sp.VXLAN != nil && len(sp.VXLAN.Peers) == 0
	})
	hosts, err := a.s.ListHosts(ctx)
	if err != nil || len(hosts) != 2 || hosts[1].ID != "hB" || hosts[1].State != string(graph.StateUnknown) {
		t.Errorf("hosts after hB stopped: %+v, %v", hosts, err)
	}
}

// A pass looks at the objects its commits name even when the read it
// chooses from is older than they are.
func TestPassObjectsNewOnes(t *testing.T) {
	s := &Service{host: "hA"}
	old := &world{cens: map[string]*graph.CEN{"x": {ID: "x", Members: []graph.Member{{Host: "hA", Container: "c"}}}}}
	sc := newScope()
	sc.cens["new"], sc.cins["newnet"] = true, true
	sc.ctrs["hA/c"] = true
	cens, cins := s.passObjects(old, sc, false)
	if !slices.Equal(cens, []string{"new", "x"}) || !slices.Equal(cins, []string{"newnet"}) {
		t.Errorf("passObjects = %v, %v; want [new x] (named, and x through its member), [newnet]", cens, cins)
	}
}
