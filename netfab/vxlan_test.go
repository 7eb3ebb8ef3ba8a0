package netfab_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/leviathan-net/leviathan/cen"
	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/internal/ktest"
	"github.com/leviathan-net/leviathan/netfab"
)

// vxHost is one simulated host: a fabric namespace, the namespace with
// its underlay address (the fabric, or a host namespace of its own), and
// one member namespace on the CEN.
type vxHost struct {
	name    string
	f       *netfab.Fabric
	under   netip.Addr
	underNS string // the path of the namespace with the underlay address
	underIf string // the interface there with that address
	member  string // the member's namespace path
	addr    string // the member's address on the CEN
}

// vxLab is several hosts joined by an underlay: a bridge in a namespace
// of its own with a veth to each host, where it carries the host's
// underlay address and has underMTU. The host end of that veth is in the
// host's fabric ("under"), or with hostNS in a host namespace apart from
// the fabric ("eth0"), as a daemon's host's own interface is.
type vxLab struct {
	hosts []*vxHost
	group uint32
}

const (
	vxCEN    = "vxcen"
	underMTU = 1400
	cenMTU   = underMTU - 50
)

func newVXLab(t *testing.T, n int) *vxLab {
	t.Helper()
	return newVXLabOf(t, n, false)
}

func newVXLabOf(t *testing.T, n int, hostNS bool) *vxLab {
	t.Helper()
	ktest.NeedRoot(t)
	ctx := context.Background()
	p := ktest.Prefix(t)
	ul := p + "ul"
	if err := netfab.CreateNetns(ctx, []string{netfab.NetnsPath(ul)}, 1); err != nil {
		t.Fatal(err)
	}
	ktest.IP(t, "-n", ul, "link", "add", "ul0", "up", "type", "bridge")
	lab := &vxLab{group: cen.GroupBase + 42}
	for i := range n {
		h := &vxHost{
			name:   fmt.Sprintf("h%d", i+1),
			under:  netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}),
			member: netfab.NetnsPath(fmt.Sprintf("%sh%d-m", p, i+1)),
			addr:   fmt.Sprintf("10.77.0.%d", i+1),
		}
		f, err := netfab.OpenFabric(ctx, p+h.name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(f.Close)
		h.f = f
		uns, uif := p+h.name, "under"
		if hostNS {
			uns, uif = p+h.name+"-host", "eth0"
			if err := netfab.CreateNetns(ctx, []string{netfab.NetnsPath(uns)}, 1); err != nil {
				t.Fatal(err)
			}
			if err := f.SetUnderlay(netfab.NetnsPath(uns)); err != nil {
				t.Fatal(err)
			}
		}
		h.underNS, h.underIf = netfab.NetnsPath(uns), uif
		ktest.IP(t, "-n", ul, "link", "add", "u-"+h.name, "type", "veth", "peer", "name", uif, "netns", uns)
		ktest.IP(t, "-n", ul, "link", "set", "u-"+h.name, "master", "ul0", "up")
		ktest.IP(t, "-n", uns, "link", "set", uif, "mtu", fmt.Sprint(underMTU), "up")
		ktest.IP(t, "-n", uns, "addr", "add", h.under.String()+"/24", "dev", uif)
		if err := netfab.CreateNetns(ctx, []string{h.member}, 1); err != nil {
			t.Fatal(err)
		}
		lab.hosts = append(lab.hosts, h)
	}
	return lab
}

// spec is host i's part of the CEN, with the other hosts given as peers.
func (l *vxLab) spec(i int, peers ...int) *netfab.CEN {
	h := l.hosts[i]
	m := graph.Member{Host: h.name, Container: "m"}
	c := &netfab.CEN{
		ID: vxCEN, Name: cen.IfName(vxCEN), Group: l.group, BridgeMAC: cen.BridgeMAC(vxCEN),
		Ports: []netfab.Port{{Member: h.name + "/m", Netns: h.member, HostIf: cen.HostIfName(vxCEN, m), MAC: cen.MAC(vxCEN, m)}},
		VXLAN: &netfab.VXLANSpec{VNI: 4242, Port: 4789, Local: h.under, MTU: cenMTU},
	}
	for _, p := range peers {
		c.VXLAN.Peers = append(c.VXLAN.Peers, l.hosts[p].under)
	}
	return c
}

// others are the indexes of every host but i.
func (l *vxLab) others(i int) []int {
	var out []int
	for j := range l.hosts {
		if j != i {
			out = append(out, j)
		}
	}
	return out
}

func (l *vxLab) underlays(is ...int) []netip.Addr {
	var out []netip.Addr
	for _, i := range is {
		out = append(out, l.hosts[i].under)
	}
	return out
}

func peersOf(t *testing.T, h *vxHost, c *netfab.CEN) []netip.Addr {
	t.Helper()
	ps, err := h.f.VXLANPeers(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// indexes are the ifindexes of a host's links of the CEN: fabric links
// by name, and the member's interface as "member".
func indexes(t *testing.T, h *vxHost, c *netfab.CEN) map[string]int {
	t.Helper()
	out := map[string]int{}
	for name, l := range ktest.Links(t, h.f.Path()) {
		if l.Group == c.Group {
			out[name] = l.Index
		}
	}
	out["member"] = ktest.Links(t, h.member)[c.Name].Index
	return out
}

// mtus reads the MTU of every link in a namespace, by name.
func mtus(t *testing.T, nsPath string) map[string]int {
	t.Helper()
	out, err := exec.Command("nsenter", "--net="+nsPath, "ip", "-j", "link", "show").Output()
	if err != nil {
		t.Fatalf("ip link show in %s: %v", nsPath, err)
	}
	var ls []struct {
		Name string `json:"ifname"`
		MTU  int    `json:"mtu"`
	}
	if err := json.Unmarshal(out, &ls); err != nil {
		t.Fatal(err)
	}
	m := map[string]int{}
	for _, l := range ls {
		m[l.Name] = l.MTU
	}
	return m
}

// pingSize reports whether nsPath reaches addr with an ICMP payload of
// size bytes, not fragmented.
func pingSize(nsPath, addr string, size int) bool {
	return exec.Command("nsenter", "--net="+nsPath, "ping", "-c", "1", "-W", "1", "-M", "do", "-s", fmt.Sprint(size), addr).Run() == nil
}

// fdb lists a device's FDB entries as "bridge fdb show" prints them.
func fdb(t *testing.T, h *vxHost, dev string) []string {
	t.Helper()
	out, err := exec.Command("bridge", "-n", nsName(h.f.Path()), "fdb", "show", "dev", dev).CombinedOutput()
	if err != nil {
		t.Fatalf("bridge fdb show: %v: %s", err, out)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

func bridgeCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("bridge", args...).CombinedOutput(); err != nil {
		t.Fatalf("bridge %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func hasLine(lines []string, prefix string) bool {
	return slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, prefix) })
}

func TestVXLANAcrossHosts(t *testing.T) {
	lab := newVXLab(t, 3)
	ctx := context.Background()
	h := lab.hosts
	specs := make([]*netfab.CEN, len(h))
	for i := range h {
		specs[i] = lab.spec(i, lab.others(i)...)
		if w := specs[i].Wiring(); w != graph.WiringBridge {
			t.Fatalf("a multi-host CEN with one local member is wired %q, want a bridge", w)
		}
		if err := h[i].f.Apply(ctx, nil, specs[i]); err != nil {
			t.Fatalf("%s: %v", h[i].name, err)
		}
		ktest.IP(t, "-n", nsName(h[i].member), "addr", "add", h[i].addr+"/24", "dev", specs[i].Name)
	}
	vx := netfab.VXLANName(vxCEN)
	reach := func(t *testing.T, from, to int) bool {
		t.Helper()
		return ktest.Ping(t, h[from].member, h[to].addr)
	}
	matrix := func(t *testing.T) {
		t.Helper()
		for i := range h {
			for _, j := range lab.others(i) {
				if !reach(t, i, j) {
					t.Errorf("%s's member does not reach %s's", h[i].name, h[j].name)
				}
			}
		}
	}

	t.Run("full matrix", matrix)

	t.Run("the FDB floods to the peers", func(t *testing.T) {
		for i := range h {
			if got, want := peersOf(t, h[i], specs[i]), lab.underlays(lab.others(i)...); !slices.Equal(got, want) {
				t.Errorf("%s floods to %v, want %v", h[i].name, got, want)
			}
			l := ktest.Links(t, h[i].f.Path())[vx]
			if l.Kind != "vxlan" || !l.Up || l.Master != specs[i].Name || l.Group != lab.group {
				t.Errorf("%s: VXLAN device: %+v", h[i].name, l)
			}
		}
	})

	t.Run("MTU", func(t *testing.T) {
		for i := range h {
			fab := mtus(t, h[i].f.Path())
			for _, name := range []string{specs[i].Name, vx, specs[i].Ports[0].HostIf} {
				if fab[name] != cenMTU {
					t.Errorf("%s: %s has MTU %d, want %d", h[i].name, name, fab[name], cenMTU)
				}
			}
			if got := mtus(t, h[i].member)[specs[i].Name]; got != cenMTU {
				t.Errorf("%s: member's interface has MTU %d, want %d", h[i].name, got, cenMTU)
			}
		}
		// The largest packet that fits crosses hosts whole.
		if !pingSize(h[0].member, h[1].addr, cenMTU-28) {
			t.Errorf("a %d-byte packet does not cross the underlay", cenMTU)
		}
		if pingSize(h[0].member, h[1].addr, cenMTU-27) {
			t.Errorf("a %d-byte packet left a member whose MTU is %d", cenMTU+1, cenMTU)
		}
	})

	t.Run("an MTU the underlay cannot carry is refused", func(t *testing.T) {
		before := indexes(t, h[0], specs[0])
		next := lab.spec(0, lab.others(0)...)
		next.VXLAN.MTU = cenMTU + 1
		err := h[0].f.Apply(ctx, specs[0], next)
		var me *netfab.MTUError
		if !errors.As(err, &me) || me.MTU != cenMTU+1 || me.Underlay != underMTU || me.Dev != "under" {
			t.Fatalf("got %v, want an MTUError naming %d and the underlay's %d", err, cenMTU+1, underMTU)
		}
		t.Log(err)
		if got := mtus(t, h[0].f.Path())[vx]; got != cenMTU {
			t.Errorf("the refused MTU changed the device's to %d", got)
		}
		if after := indexes(t, h[0], specs[0]); !maps.Equal(before, after) {
			t.Errorf("a refused change touched links: %v -> %v", before, after)
		}
	})

	t.Run("a lower MTU lowers every link", func(t *testing.T) {
		before := indexes(t, h[0], specs[0])
		next := lab.spec(0, lab.others(0)...)
		next.VXLAN.MTU = 1300
		if err := h[0].f.Apply(ctx, specs[0], next); err != nil {
			t.Fatal(err)
		}
		for name, mtu := range mtus(t, h[0].f.Path()) {
			if _, ours := before[name]; ours && mtu != 1300 {
				t.Errorf("%s has MTU %d, want 1300", name, mtu)
			}
		}
		if got := mtus(t, h[0].member)[next.Name]; got != 1300 {
			t.Errorf("member's interface has MTU %d, want 1300", got)
		}
		if after := indexes(t, h[0], next); !maps.Equal(before, after) {
			t.Errorf("changing the MTU recreated links: %v -> %v", before, after)
		}
		if err := h[0].f.Apply(ctx, next, specs[0]); err != nil {
			t.Fatal(err)
		}
		if got := mtus(t, h[0].member)[next.Name]; got != cenMTU {
			t.Errorf("member's interface has MTU %d after raising it back, want %d", got, cenMTU)
		}
	})

	t.Run("re-applying changes nothing", func(t *testing.T) {
		for i := range h {
			lab.reapply(t, i, specs[i])
		}
		matrix(t)
	})

	// A per-MAC entry someone else put on the device.
	foreign := "02:00:00:00:00:99 dst 192.0.2.99"
	bridgeCmd(t, "-n", nsName(h[0].f.Path()), "fdb", "append", "02:00:00:00:00:99", "dev", vx, "dst", "192.0.2.99", "self", "permanent")

	t.Run("a peer removed is no longer reached", func(t *testing.T) {
		before := indexes(t, h[0], specs[0])
		next := lab.spec(0, 1) // host 3 left
		if err := h[0].f.Apply(ctx, specs[0], next); err != nil {
			t.Fatal(err)
		}
		if got, want := peersOf(t, h[0], next), lab.underlays(1); !slices.Equal(got, want) {
			t.Errorf("floods to %v, want %v", got, want)
		}
		if after := indexes(t, h[0], next); !maps.Equal(before, after) {
			t.Errorf("a peers change touched links: %v -> %v", before, after)
		}
		if reach(t, 0, 2) || reach(t, 2, 0) {
			t.Error("host 1 and host 3 still reach each other")
		}
		if !reach(t, 0, 1) {
			t.Error("host 1 no longer reaches host 2")
		}
		if !hasLine(fdb(t, h[0], vx), foreign) {
			t.Errorf("the foreign entry %q is gone: %v", foreign, fdb(t, h[0], vx))
		}
		// Re-added, it is reached again.
		if err := h[0].f.Apply(ctx, next, specs[0]); err != nil {
			t.Fatal(err)
		}
		if got, want := peersOf(t, h[0], specs[0]), lab.underlays(1, 2); !slices.Equal(got, want) {
			t.Errorf("floods to %v, want %v", got, want)
		}
		matrix(t)
	})

	t.Run("only the flood list is leviathan's", func(t *testing.T) {
		// An all-zeros entry toward a host that is not a peer would carry
		// the CEN's floods there: the device is leviathan's, so is its
		// flood list, and a full apply puts it back as the spec says.
		bridgeCmd(t, "-n", nsName(h[0].f.Path()), "fdb", "append", "00:00:00:00:00:00", "dev", vx, "dst", "192.0.2.98", "self", "permanent")
		if err := h[0].f.Apply(ctx, nil, specs[0]); err != nil {
			t.Fatal(err)
		}
		if got, want := peersOf(t, h[0], specs[0]), lab.underlays(1, 2); !slices.Equal(got, want) {
			t.Errorf("floods to %v, want %v", got, want)
		}
		if !hasLine(fdb(t, h[0], vx), foreign) {
			t.Errorf("the foreign entry %q is gone: %v", foreign, fdb(t, h[0], vx))
		}
	})

	t.Run("reconcile adopts, and recreates a changed device", func(t *testing.T) {
		before := indexes(t, h[1], specs[1])
		rep, err := h[1].f.Reconcile(ctx, []*netfab.CEN{specs[1]}, []string{h[1].member})
		if err != nil || len(rep.Failed) > 0 || rep.Removed != 0 {
			t.Fatalf("reconcile: %v %+v", err, rep)
		}
		if after := indexes(t, h[1], specs[1]); !maps.Equal(before, after) {
			t.Errorf("reconcile flapped links: %v -> %v", before, after)
		}
		// A VNI changed while the host was down: the device is made anew,
		// the rest stays.
		for i := range h {
			specs[i].VXLAN.VNI = 4343
		}
		for _, i := range []int{0, 2} {
			if err := h[i].f.Apply(ctx, nil, specs[i]); err != nil {
				t.Fatal(err)
			}
		}
		if rep, err := h[1].f.Reconcile(ctx, []*netfab.CEN{specs[1]}, []string{h[1].member}); err != nil || len(rep.Failed) > 0 {
			t.Fatalf("reconcile: %v %+v", err, rep)
		}
		after := indexes(t, h[1], specs[1])
		if after[vx] == before[vx] {
			t.Error("the device with the old VNI was kept")
		}
		delete(before, vx)
		delete(after, vx)
		if !maps.Equal(before, after) {
			t.Errorf("recreating the device flapped other links: %v -> %v", before, after)
		}
		if got, want := peersOf(t, h[1], specs[1]), lab.underlays(0, 2); !slices.Equal(got, want) {
			t.Errorf("the new device floods to %v, want %v", got, want)
		}
		matrix(t)
	})

	t.Run("destroy leaves nothing of the CEN", func(t *testing.T) {
		if err := h[2].f.Destroy(ctx, specs[2]); err != nil {
			t.Fatal(err)
		}
		for name, l := range ktest.Links(t, h[2].f.Path()) {
			if name != "lo" && name != "under" {
				t.Errorf("fabric still holds %q: %+v", name, l)
			}
		}
		if reach(t, 0, 2) {
			t.Error("host 3's member is still reached")
		}
		if !reach(t, 0, 1) || !reach(t, 1, 0) {
			t.Error("hosts 1 and 2 no longer reach each other")
		}
	})

	t.Run("a CEN that no longer spans hosts loses its device alone", func(t *testing.T) {
		before := indexes(t, h[0], specs[0])
		next := lab.spec(0)
		next.VXLAN = nil
		next.Plan = graph.WiringBridge // stopped members here keep it a bridge
		if err := h[0].f.Apply(ctx, specs[0], next); err != nil {
			t.Fatal(err)
		}
		after := indexes(t, h[0], next)
		if _, ok := after[vx]; ok {
			t.Error("the VXLAN device is still there")
		}
		delete(before, vx)
		if !maps.Equal(before, after) {
			t.Errorf("removing the device touched other links: %v -> %v", before, after)
		}
		if err := h[0].f.Apply(ctx, next, specs[0]); err != nil {
			t.Fatal(err)
		}
		if !reach(t, 0, 1) {
			t.Error("with its device back, host 1 does not reach host 2")
		}
	})

	t.Run("reconcile removes a CEN no longer wanted", func(t *testing.T) {
		rep, err := h[1].f.Reconcile(ctx, nil, []string{h[1].member})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Removed < 3 {
			t.Errorf("removed %d links, want at least the bridge, the device and the veth", rep.Removed)
		}
		for name := range ktest.Links(t, h[1].f.Path()) {
			if name != "lo" && name != "under" {
				t.Errorf("fabric still holds %q", name)
			}
		}
		if l, ok := ktest.Links(t, h[1].member)[specs[1].Name]; ok {
			t.Errorf("member still holds %+v", l)
		}
	})
}

func TestVXLANUnderlayChecks(t *testing.T) {
	lab := newVXLab(t, 2)
	ctx := context.Background()
	h := lab.hosts[0]
	tests := []struct {
		name   string
		change func(*netfab.VXLANSpec)
		want   string
	}{
		{"local address not in the fabric", func(v *netfab.VXLANSpec) { v.Local = netip.MustParseAddr("192.0.2.77") }, "192.0.2.77"},
		{"peer of another family", func(v *netfab.VXLANSpec) { v.Peers = []netip.Addr{netip.MustParseAddr("2001:db8::1")} }, "2001:db8::1"},
		{"VNI over 24 bits", func(v *netfab.VXLANSpec) { v.VNI = 1 << 24 }, "24-bit"},
		{"MTU over the underlay's", func(v *netfab.VXLANSpec) { v.MTU = underMTU }, fmt.Sprintf("MTU %d", underMTU)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := lab.spec(0, 1)
			tt.change(c.VXLAN)
			err := h.f.Apply(ctx, nil, c)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error naming %q", err, tt.want)
			}
			for name := range ktest.Links(t, h.f.Path()) {
				if name != "lo" && name != "under" {
					t.Errorf("a refused CEN left %q", name)
				}
			}
		})
	}
}

func TestVXLANWiring(t *testing.T) {
	v := &netfab.VXLANSpec{VNI: 1, Port: 4789}
	ports := func(n int) []netfab.Port { return make([]netfab.Port, n) }
	tests := []struct {
		name string
		c    netfab.CEN
		want graph.Wiring
	}{
		{"one member", netfab.CEN{Ports: ports(1), VXLAN: v}, graph.WiringBridge},
		{"two members, planned as a wire", netfab.CEN{Ports: ports(2), Plan: graph.WiringWire, VXLAN: v}, graph.WiringBridge},
		{"no member here", netfab.CEN{VXLAN: v}, graph.WiringBridge},
		{"no member that runs, stopped ones here", netfab.CEN{Plan: graph.WiringBridge, VXLAN: v}, graph.WiringBridge},
		{"one host: two members", netfab.CEN{Ports: ports(2)}, graph.WiringWire},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.Wiring(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// reapply applies host i's spec again, from the spec itself (the cheap
// path) and from nothing (adoption), and fails the test if a link of it
// was made anew.
func (l *vxLab) reapply(t *testing.T, i int, sp *netfab.CEN) {
	t.Helper()
	h := l.hosts[i]
	before := indexes(t, h, sp)
	for _, prev := range []*netfab.CEN{sp, nil} {
		if err := h.f.Apply(context.Background(), prev, l.spec(i, l.others(i)...)); err != nil {
			t.Fatal(err)
		}
		if after := indexes(t, h, sp); !maps.Equal(before, after) {
			t.Errorf("%s: apply flapped links: %v -> %v", h.name, before, after)
		}
	}
}
