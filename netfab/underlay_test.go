package netfab_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/leviathan-net/leviathan/internal/ktest"
	"github.com/leviathan-net/leviathan/netfab"
)

// udpBound reports whether a UDP socket of the namespace at nsPath is
// bound to port (IPv4).
func udpBound(t *testing.T, nsPath string, port uint16) bool {
	t.Helper()
	out, err := exec.Command("nsenter", "--net="+nsPath, "cat", "/proc/net/udp").Output()
	if err != nil {
		t.Fatalf("read /proc/net/udp in %s: %v", nsPath, err)
	}
	suffix := fmt.Sprintf(":%04X", port)
	for _, line := range strings.Split(string(out), "\n")[1:] {
		if f := strings.Fields(line); len(f) > 1 && strings.HasSuffix(f[1], suffix) {
			return true
		}
	}
	return false
}

// kernelCEN is what ktest.CheckKernel expects of host h's part of c.
func kernelCEN(h *vxHost, c *netfab.CEN) ktest.CEN {
	k := ktest.CEN{IfName: c.Name, Made: true, VXLAN: c.VXLAN != nil}
	for _, p := range c.Ports {
		k.Members = append(k.Members, p.Netns)
	}
	return k
}

// TestVXLANUnderlayNamespace runs hosts whose underlay address is on an
// interface of a host namespace that is not the fabric, as the daemon's
// host's own interface is: the fabric is told that namespace carries its
// underlay, and nothing of that namespace is changed.
func TestVXLANUnderlayNamespace(t *testing.T) {
	lab := newVXLabOf(t, 3, true)
	ctx := context.Background()
	h := lab.hosts
	specs := make([]*netfab.CEN, len(h))
	for i := range h {
		specs[i] = lab.spec(i, lab.others(i)...)
		if err := h[i].f.Apply(ctx, nil, specs[i]); err != nil {
			t.Fatalf("%s: %v", h[i].name, err)
		}
		ktest.IP(t, "-n", nsName(h[i].member), "addr", "add", h[i].addr+"/24", "dev", specs[i].Name)
	}
	vx := netfab.VXLANName(vxCEN)
	reach := func(t *testing.T, from int, addr string) bool {
		t.Helper()
		return ktest.Ping(t, h[from].member, addr)
	}
	matrix := func(t *testing.T, is ...int) {
		t.Helper()
		for _, i := range is {
			for _, j := range is {
				if i != j && !reach(t, i, h[j].addr) {
					t.Errorf("%s's member does not reach %s's", h[i].name, h[j].name)
				}
			}
		}
	}
	all := []int{0, 1, 2}
	// The host namespaces are the daemon's own: leviathan leaves them
	// as they were.
	hostUntouched := func(t *testing.T) {
		t.Helper()
		for i := range h {
			ls := ktest.Links(t, h[i].underNS)
			if len(ls) != 2 || ls["lo"].Kind == "" || ls[h[i].underIf].Kind != "veth" {
				t.Errorf("%s: host namespace holds %v, want lo and %s alone", h[i].name, slices.Sorted(maps.Keys(ls)), h[i].underIf)
			}
		}
	}

	t.Run("the device is in the fabric, its socket in the underlay", func(t *testing.T) {
		for i := range h {
			ktest.CheckKernel(t, h[i].f.Path(), []ktest.CEN{kernelCEN(h[i], specs[i])})
			l := ktest.Links(t, h[i].f.Path())[vx]
			if l.Kind != "vxlan" || l.Master != specs[i].Name || l.Group != lab.group {
				t.Errorf("%s: VXLAN device: %+v", h[i].name, l)
			}
			if !udpBound(t, h[i].underNS, 4789) {
				t.Errorf("%s: no UDP socket on port 4789 in the host namespace", h[i].name)
			}
			if udpBound(t, h[i].f.Path(), 4789) {
				t.Errorf("%s: a UDP socket on port 4789 in the fabric", h[i].name)
			}
		}
		hostUntouched(t)
	})

	t.Run("full matrix", func(t *testing.T) { matrix(t, all...) })

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
		if !pingSize(h[0].member, h[1].addr, cenMTU-28) {
			t.Errorf("a %d-byte packet does not cross the underlay", cenMTU)
		}
	})

	t.Run("the underlay's checks look in the host namespace", func(t *testing.T) {
		tests := []struct {
			name   string
			change func(*netfab.VXLANSpec)
			check  func(error) bool
		}{
			{"an MTU over the host interface's", func(v *netfab.VXLANSpec) { v.MTU = cenMTU + 1 }, func(err error) bool {
				var me *netfab.MTUError
				return errors.As(err, &me) && me.Underlay == underMTU && me.Dev == h[0].underIf
			}},
			{"a local address not in the host namespace", func(v *netfab.VXLANSpec) { v.Local = netip.MustParseAddr("192.0.2.77") }, func(err error) bool {
				return err != nil && strings.Contains(err.Error(), "underlay namespace "+h[0].underNS)
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := indexes(t, h[0], specs[0])
				next := lab.spec(0, lab.others(0)...)
				tt.change(next.VXLAN)
				err := h[0].f.Apply(ctx, specs[0], next)
				if !tt.check(err) {
					t.Fatalf("got %v", err)
				}
				t.Log(err)
				if after := indexes(t, h[0], specs[0]); !maps.Equal(before, after) {
					t.Errorf("a refused change touched links: %v -> %v", before, after)
				}
			})
		}
	})

	t.Run("re-applying and reconciling change nothing", func(t *testing.T) {
		for i := range h {
			lab.reapply(t, i, specs[i])
			before := indexes(t, h[i], specs[i])
			rep, err := h[i].f.Reconcile(ctx, []*netfab.CEN{specs[i]}, []string{h[i].member})
			if err != nil || len(rep.Failed) > 0 || rep.Removed != 0 {
				t.Fatalf("reconcile: %v %+v", err, rep)
			}
			if after := indexes(t, h[i], specs[i]); !maps.Equal(before, after) {
				t.Errorf("%s: reconcile flapped links: %v -> %v", h[i].name, before, after)
			}
		}
		matrix(t, all...)
	})

	t.Run("a device with its socket in the fabric is made anew", func(t *testing.T) {
		// As an older leviathan, one not told of the underlay, made it:
		// the same settings, but sending from the fabric, where the
		// underlay address is not.
		before := indexes(t, h[1], specs[1])
		fab := nsName(h[1].f.Path())
		ktest.IP(t, "-n", fab, "link", "del", vx)
		ktest.IP(t, "-n", fab, "link", "add", vx, "group", fmt.Sprint(lab.group), "type", "vxlan",
			"id", "4242", "local", h[1].under.String(), "dstport", "4789", "nolearning")
		ktest.IP(t, "-n", fab, "link", "set", vx, "master", specs[1].Name, "up")
		stale := ktest.Links(t, h[1].f.Path())[vx].Index
		if err := h[1].f.Apply(ctx, nil, specs[1]); err != nil {
			t.Fatal(err)
		}
		after := indexes(t, h[1], specs[1])
		if after[vx] == stale {
			t.Error("the device sending from the fabric was kept")
		}
		delete(before, vx)
		delete(after, vx)
		if !maps.Equal(before, after) {
			t.Errorf("making the device anew flapped other links: %v -> %v", before, after)
		}
		if udpBound(t, h[1].f.Path(), 4789) {
			t.Error("a UDP socket on port 4789 is left in the fabric")
		}
		matrix(t, all...)
	})

	t.Run("the bridge's MAC changes in place", func(t *testing.T) {
		before := indexes(t, h[0], specs[0])
		mac := net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x00, 0x42}
		next := lab.spec(0, lab.others(0)...)
		next.BridgeMAC = mac
		if err := h[0].f.Apply(ctx, specs[0], next); err != nil {
			t.Fatal(err)
		}
		if got := ktest.Links(t, h[0].f.Path())[next.Name].MAC; got != mac.String() {
			t.Errorf("bridge MAC %s, want %s", got, mac)
		}
		if after := indexes(t, h[0], next); !maps.Equal(before, after) {
			t.Errorf("changing the bridge's MAC flapped links: %v -> %v", before, after)
		}
		matrix(t, all...)
		// Adoption puts the spec's MAC back.
		if err := h[0].f.Apply(ctx, nil, specs[0]); err != nil {
			t.Fatal(err)
		}
		if got, want := ktest.Links(t, h[0].f.Path())[specs[0].Name].MAC, specs[0].BridgeMAC.String(); got != want {
			t.Errorf("bridge MAC %s after adoption, want %s", got, want)
		}
		if after := indexes(t, h[0], specs[0]); !maps.Equal(before, after) {
			t.Errorf("adopting a bridge of another MAC flapped links: %v -> %v", before, after)
		}
	})

	t.Run("a bridge with no member here", func(t *testing.T) {
		c := h[2]
		bare := lab.spec(2, lab.others(2)...)
		bare.Ports = nil
		// Every host's bridge has the CEN's MAC: a frame to it stops at
		// the sender's own bridge. The host that carries an address for
		// the others has a MAC of its own.
		bare.BridgeMAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x00, 0x03}
		before := indexes(t, c, specs[2])
		if err := c.f.Apply(ctx, specs[2], bare); err != nil {
			t.Fatal(err)
		}
		ktest.CheckKernel(t, c.f.Path(), []ktest.CEN{kernelCEN(c, bare)})
		if _, ok := ktest.Links(t, c.member)[bare.Name]; ok {
			t.Error("the member that left still has its interface")
		}
		kept := func(t *testing.T, what string) {
			t.Helper()
			now := ktest.Links(t, c.f.Path())
			for _, name := range []string{bare.Name, vx} {
				if now[name].Index != before[name] {
					t.Errorf("%s: %s's ifindex %d, was %d", what, name, now[name].Index, before[name])
				}
			}
		}
		kept(t, "leaving")
		fab := mtus(t, c.f.Path())
		for _, name := range []string{bare.Name, vx} {
			if fab[name] != cenMTU {
				t.Errorf("%s has MTU %d, want %d", name, fab[name], cenMTU)
			}
		}
		// The bridge carries an address for the other hosts (a CIN's
		// gateway): it is reached over VXLAN, and they still reach each
		// other.
		gw := "10.77.0.254"
		ktest.IP(t, "-n", nsName(c.f.Path()), "addr", "add", gw+"/24", "dev", bare.Name)
		for _, i := range []int{0, 1} {
			if !reach(t, i, gw) {
				t.Errorf("%s's member does not reach the member-less bridge on %s", h[i].name, c.name)
			}
		}
		matrix(t, 0, 1)

		rep, err := c.f.Reconcile(ctx, []*netfab.CEN{bare}, []string{c.member})
		if err != nil || len(rep.Failed) > 0 || rep.Removed != 0 {
			t.Fatalf("reconcile: %v %+v", err, rep)
		}
		kept(t, "reconcile")

		// A member comes back, and leaves again through adoption.
		if err := c.f.Apply(ctx, bare, specs[2]); err != nil {
			t.Fatal(err)
		}
		kept(t, "a member joining")
		ktest.CheckKernel(t, c.f.Path(), []ktest.CEN{kernelCEN(c, specs[2])})
		ktest.IP(t, "-n", nsName(c.member), "addr", "add", c.addr+"/24", "dev", specs[2].Name)
		matrix(t, all...)
		if err := c.f.Apply(ctx, nil, bare); err != nil {
			t.Fatal(err)
		}
		kept(t, "the member leaving again")
		ktest.CheckKernel(t, c.f.Path(), []ktest.CEN{kernelCEN(c, bare)})
		if !reach(t, 0, gw) {
			t.Error("the member-less bridge is no longer reached")
		}

		if err := c.f.Destroy(ctx, bare); err != nil {
			t.Fatal(err)
		}
		ktest.CheckKernel(t, c.f.Path(), []ktest.CEN{{IfName: bare.Name, VXLAN: true}})
		if reach(t, 0, gw) {
			t.Error("the destroyed bridge is still reached")
		}
		matrix(t, 0, 1)
	})

	t.Run("destroy leaves nothing of the CEN, and the host as it was", func(t *testing.T) {
		for i := range h[:2] {
			if err := h[i].f.Destroy(ctx, specs[i]); err != nil {
				t.Fatal(err)
			}
			ktest.CheckKernel(t, h[i].f.Path(), []ktest.CEN{{IfName: specs[i].Name, VXLAN: true, Members: []string{h[i].member}}})
		}
		hostUntouched(t)
	})
}

func TestSetUnderlay(t *testing.T) {
	lab := newVXLab(t, 2)
	ctx := context.Background()
	h := lab.hosts[0]
	notNetns := filepath.Join(t.TempDir(), "netns")
	if err := os.WriteFile(notNetns, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := h.f.SetUnderlay(notNetns); err == nil {
		t.Error("a file that is not a network namespace was taken as the underlay")
	}
	// The fabric's own namespace is no underlay apart: the device is
	// made, and adopted, as without one.
	if err := h.f.SetUnderlay(h.f.Path()); err != nil {
		t.Fatal(err)
	}
	c := lab.spec(0, 1)
	if err := h.f.Apply(ctx, nil, c); err != nil {
		t.Fatal(err)
	}
	before := indexes(t, h, c)
	if err := h.f.SetUnderlay(""); err != nil {
		t.Fatal(err)
	}
	if err := h.f.Apply(ctx, nil, c); err != nil {
		t.Fatal(err)
	}
	if after := indexes(t, h, c); !maps.Equal(before, after) {
		t.Errorf("links flapped: %v -> %v", before, after)
	}
	if !udpBound(t, h.f.Path(), 4789) {
		t.Error("no UDP socket on port 4789 in the fabric")
	}
}
