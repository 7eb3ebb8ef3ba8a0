package netfab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"testing"

	"github.com/leviathan-net/leviathan/cen"
	"github.com/leviathan-net/leviathan/graph"
)

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("kernel test: needs root (run as root, as CI does) to create network namespaces")
	}
}

func randName(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func testFabric(t testing.TB) *Fabric {
	t.Helper()
	needRoot(t)
	f, err := OpenFabric(context.Background(), randName("lvt-fab-"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Remove() })
	return f
}

// testNamespaces creates n throwaway member namespaces.
func testNamespaces(t testing.TB, n int) []string {
	t.Helper()
	base := randName("lvt-")
	var paths []string
	for i := range n {
		paths = append(paths, NetnsPath(fmt.Sprintf("%s-c%d", base, i)))
	}
	err := CreateNetns(context.Background(), paths, 2)
	t.Cleanup(func() {
		for _, p := range paths {
			DeleteNetns(p)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return paths
}

func testCEN(id string, group uint32, paths []string) *CEN {
	c := &CEN{ID: id, Name: cen.IfName(id), Group: group, BridgeMAC: cen.BridgeMAC(id)}
	for _, p := range paths {
		m := graph.Member{Host: "h", Container: p}
		c.Ports = append(c.Ports, Port{Member: p, Netns: p, HostIf: cen.HostIfName(id, m), MAC: cen.MAC(id, m)})
	}
	return c
}

func links(t testing.TB, path string) map[string]LinkInfo {
	t.Helper()
	ls, err := ListLinks(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]LinkInfo{}
	for _, l := range ls {
		out[l.Name] = l
	}
	return out
}

// checkCEN verifies that the kernel holds exactly c in the fabric and in
// the member namespaces.
func checkCEN(t *testing.T, f *Fabric, c *CEN) {
	t.Helper()
	fab := links(t, f.Path())
	own := 0
	for _, l := range fab {
		if l.Group == c.Group {
			own++
		}
	}
	switch c.Wiring() {
	case graph.WiringBridge:
		br, ok := fab[c.Name]
		if !ok || br.Kind != "bridge" || !br.Up || br.Group != c.Group {
			t.Fatalf("bridge %q: got %+v", c.Name, br)
		}
		if own != len(c.Ports)+1 {
			t.Errorf("fabric holds %d links of group %#x, want %d", own, c.Group, len(c.Ports)+1)
		}
		for _, p := range c.Ports {
			h := fab[p.HostIf]
			if h.Kind != "veth" || h.Master != c.Name || !h.Up {
				t.Errorf("host end %q: got %+v", p.HostIf, h)
			}
		}
	case graph.WiringWire, graph.WiringNone:
		if own != 0 {
			t.Errorf("fabric holds %d links of group %#x, want none", own, c.Group)
		}
	}
	for _, p := range c.Ports {
		l, ok := links(t, p.Netns)[c.Name]
		if c.Wiring() == graph.WiringNone {
			if ok {
				t.Errorf("%s has %q, want nothing", p.Member, c.Name)
			}
			continue
		}
		if !ok || l.Kind != "veth" || !l.Up || l.Group != c.Group || l.MAC != p.MAC.String() {
			t.Errorf("%s: interface %q: got %+v (want MAC %s)", p.Member, c.Name, l, p.MAC)
		}
	}
}

func TestApplyBridgeWireTransitions(t *testing.T) {
	f := testFabric(t)
	ns := testNamespaces(t, 4)
	ctx := context.Background()
	steps := [][]string{
		{ns[0]},                      // none
		{ns[0], ns[1]},               // wire
		{ns[0], ns[1], ns[2]},        // bridge
		{ns[0], ns[1], ns[2], ns[3]}, // bridge, one more port
		{ns[1], ns[3]},               // back to a wire between others
		{ns[1], ns[3], ns[0]},        // bridge again
		{ns[2]},                      // one member
		{},                           // empty
		{ns[0], ns[1], ns[2], ns[3]}, // straight to a bridge
		{ns[0], ns[1], ns[2], ns[3]}, // again: idempotent
	}
	var prev *CEN
	for i, s := range steps {
		next := testCEN("cenX", cen.GroupBase+7, s)
		if err := f.Apply(ctx, prev, next); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		checkCEN(t, f, next)
		for _, p := range ns {
			in := false
			for _, q := range s {
				in = in || p == q
			}
			if _, has := links(t, p)[next.Name]; has && (!in || next.Wiring() == graph.WiringNone) {
				t.Errorf("step %d: %s still has %q", i, p, next.Name)
			}
		}
		prev = next
	}
	if err := f.Destroy(ctx, prev); err != nil {
		t.Fatal(err)
	}
	for name := range links(t, f.Path()) {
		if name != "lo" {
			t.Errorf("fabric still holds %q after destroy", name)
		}
	}
	// Destroying again is a no-op.
	if err := f.Destroy(ctx, prev); err != nil {
		t.Fatal(err)
	}
}

func TestApplyForeignInterfaceRollsBack(t *testing.T) {
	f := testFabric(t)
	ns := testNamespaces(t, 4)
	ctx := context.Background()
	// ns[2] already has a foreign interface named like the CEN.
	foreign := &CEN{ID: "foreign", Name: "dummyx", Group: 0}
	_ = foreign
	if err := withConn(ns[2], func(c *conn) error {
		return c.addBridge(end{Name: "cenY", NsFd: -1})
	}); err != nil {
		t.Fatal(err)
	}
	c := testCEN("cenY", cen.GroupBase+9, ns)
	err := f.Apply(ctx, nil, c)
	if err == nil {
		t.Fatal("Apply succeeded over a foreign interface")
	}
	t.Log(err)
	for name := range links(t, f.Path()) {
		if name != "lo" {
			t.Errorf("fabric still holds %q after the failed apply", name)
		}
	}
	for _, p := range []string{ns[0], ns[1], ns[3]} {
		if _, ok := links(t, p)["cenY"]; ok {
			t.Errorf("%s still has cenY after rollback", p)
		}
	}
	if l := links(t, ns[2])["cenY"]; l.Kind != "bridge" {
		t.Errorf("the foreign interface was touched: %+v", l)
	}
}

func TestReconcileRemovesLeftoversKeepsForeign(t *testing.T) {
	f := testFabric(t)
	ns := testNamespaces(t, 5)
	ctx := context.Background()
	keep := testCEN("keep", cen.GroupBase+1, ns[:3])
	gone := testCEN("gone", cen.GroupBase+2, ns[2:])
	wire := testCEN("wire", cen.GroupBase+3, ns[3:5])
	for _, c := range []*CEN{keep, gone, wire} {
		if err := f.Apply(ctx, nil, c); err != nil {
			t.Fatal(err)
		}
	}
	// A foreign link in the fabric and one in a member.
	if err := f.c.addBridge(end{Name: "foreign0", NsFd: -1}); err != nil {
		t.Fatal(err)
	}
	// Damage: remove one of keep's host ends.
	if err := f.c.delLink(keep.Ports[1].HostIf); err != nil {
		t.Fatal(err)
	}
	rep, err := f.Reconcile(ctx, []*CEN{keep}, ns)
	if err != nil || len(rep.Failed) > 0 {
		t.Fatal(err, rep.Failed)
	}
	if rep.Removed < 4+1 {
		t.Errorf("removed %d leftovers, want at least 5", rep.Removed)
	}
	checkCEN(t, f, keep)
	if _, ok := links(t, f.Path())["foreign0"]; !ok {
		t.Error("reconcile removed a foreign link")
	}
	for _, p := range ns[3:] {
		for name, l := range links(t, p) {
			if cen.IsOwnGroup(l.Group) {
				t.Errorf("%s still has leftover %q", p, name)
			}
		}
	}
}

func TestDestroyManyInOneBatch(t *testing.T) {
	f := testFabric(t)
	ns := testNamespaces(t, 9)
	ctx := context.Background()
	cs := []*CEN{
		testCEN("m1", cen.GroupBase+1, ns[0:3]),
		testCEN("m2", cen.GroupBase+2, ns[3:6]),
		testCEN("m3", cen.GroupBase+3, ns[6:9]),
		testCEN("mw", cen.GroupBase+4, ns[0:2]),
	}
	keep := testCEN("keep", cen.GroupBase+5, ns[2:5])
	for _, c := range append(cs, keep) {
		if err := f.Apply(ctx, nil, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.c.addBridge(end{Name: "foreign0", NsFd: -1}); err != nil {
		t.Fatal(err)
	}
	if err := f.DestroyMany(ctx, cs); err != nil {
		t.Fatal(err)
	}
	for name := range links(t, f.Path()) {
		if name != "lo" && name != "foreign0" && name != keep.Name && links(t, f.Path())[name].Master != keep.Name {
			t.Errorf("fabric still holds %q", name)
		}
	}
	checkCEN(t, f, keep)
	for _, p := range ns {
		for name, l := range links(t, p) {
			if l.Group != keep.Group && cen.IsOwnGroup(l.Group) {
				t.Errorf("%s still holds %q", p, name)
			}
		}
	}
	if err := f.DestroyMany(ctx, cs); err != nil { // again: nothing to do
		t.Fatal(err)
	}
}
