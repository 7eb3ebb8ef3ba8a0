// Package ktest holds helpers for tests that run against the real kernel:
// throwaway namespaces named with a random per-test prefix (so a test can
// only ever remove its own), checks of what the kernel holds, and ping
// between namespaces. Only tests import it.
package ktest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leviathan-net/leviathan/cen"
	"github.com/leviathan-net/leviathan/netfab"
)

// NeedRoot skips the test unless it runs as root.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("kernel test: needs root (run as root, as CI does) to create network namespaces")
	}
}

// Prefix returns a fresh namespace-name prefix like "lvt-1a2b3c4d-" and
// removes, when the test ends, every namespace whose name starts with it.
func Prefix(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	p := "lvt-" + hex.EncodeToString(b) + "-"
	t.Cleanup(func() { RemoveNamespaces(t, p) })
	return p
}

// RemoveNamespaces deletes the named namespaces starting with prefix.
func RemoveNamespaces(t testing.TB, prefix string) {
	if len(prefix) < 8 {
		panic("ktest: refusing a short prefix")
	}
	ents, _ := os.ReadDir(netfab.NetnsDir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			if err := netfab.DeleteNetns(filepath.Join(netfab.NetnsDir, e.Name())); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	}
}

// Links returns the links of the namespace at path by name.
func Links(t testing.TB, path string) map[string]netfab.LinkInfo {
	t.Helper()
	ls, err := netfab.ListLinks(path)
	if err != nil {
		t.Fatalf("list links of %s: %v", path, err)
	}
	out := map[string]netfab.LinkInfo{}
	for _, l := range ls {
		out[l.Name] = l
	}
	return out
}

// CEN is what a check expects of one CEN.
type CEN struct {
	IfName  string
	Made    bool
	Members []string // namespace paths of the members that run
	// Stopped counts members that do not run: they count for the wiring
	// (a bridge from 3 members on) and have no port.
	Stopped int
	// VXLAN says the CEN spans hosts: made, it is a bridge here whatever
	// its members (none included), with its VXLAN device (lx~) as a port.
	VXLAN bool
}

// CheckKernel fails the test unless the kernel holds exactly the given
// CENs: in the fabric, lo plus a bridge per made CEN of 3+ members (or
// spanning hosts) with one up veth port per member, and an up VXLAN port
// when it spans hosts, nothing else; in each member, an up veth named
// after the CEN (both ends of a 2-member CEN being each other's peers) and
// no interface of leviathan's (by link group) for an unmade or 0-1 member
// CEN.
func CheckKernel(t testing.TB, fabric string, cens []CEN) {
	t.Helper()
	fab := Links(t, fabric)
	expectFabric := map[string]bool{"lo": true}
	for _, c := range cens {
		n := len(c.Members)
		all := n + c.Stopped
		bridge := all >= 3 || c.VXLAN
		if !c.Made || !bridge {
			if _, ok := fab[c.IfName]; ok {
				t.Errorf("fabric has a %q, want none (made=%v, %d members)", c.IfName, c.Made, n)
			}
		} else {
			expectFabric[c.IfName] = true
			if br := fab[c.IfName]; br.Kind != "bridge" || !br.Up {
				t.Errorf("fabric: bridge %q: got %+v", c.IfName, br)
			}
			ports, vxlans := 0, 0
			for name, l := range fab {
				if l.Master != c.IfName {
					continue
				}
				expectFabric[name] = true
				if strings.HasPrefix(name, "lx~") {
					// The CEN's VXLAN device, not a member's port.
					vxlans++
					if l.Kind != "vxlan" || !l.Up || !c.VXLAN {
						t.Errorf("fabric: VXLAN port %q of %q (spanning hosts: %v): %+v", name, c.IfName, c.VXLAN, l)
					}
					continue
				}
				ports++
				if hostIf, ok := strings.CutPrefix(name, "lr~"); ok && l.Kind == "tuntap" {
					// An impaired member's relay: its veth end is off
					// the bridge, the relay's TAP on it.
					expectFabric["lv~"+hostIf] = true
					if h, ok := fab["lv~"+hostIf]; !ok || h.Kind != "veth" || h.Master != "" {
						t.Errorf("fabric: relay TAP %q of %q without its veth end off the bridge: %+v", name, c.IfName, h)
					}
					continue
				}
				if l.Kind != "veth" || !l.Up {
					t.Errorf("fabric: port %q of %q: %+v", name, c.IfName, l)
				}
			}
			if ports != n {
				t.Errorf("bridge %q has %d ports, want %d", c.IfName, ports, n)
			}
			if c.VXLAN && vxlans != 1 {
				t.Errorf("bridge %q has %d VXLAN ports, want 1", c.IfName, vxlans)
			}
		}
		var ends []netfab.LinkInfo
		for _, ns := range c.Members {
			expect := c.Made && (bridge || all == 2 && n == 2)
			if !expect && !netfab.IsNetns(ns) {
				continue // never needed, never created
			}
			l, ok := Links(t, ns)[c.IfName]
			if !expect {
				if ok && cen.IsOwnGroup(l.Group) {
					t.Errorf("%s has %q, want none (made=%v, %d members)", ns, c.IfName, c.Made, n)
				}
				continue
			}
			if !ok || l.Kind != "veth" || !l.Up {
				t.Errorf("%s: interface %q: got %+v (present %v)", ns, c.IfName, l, ok)
			}
			ends = append(ends, l)
		}
		if c.Made && !bridge && all == 2 && len(ends) == 2 && (ends[0].Peer != ends[1].Index || ends[1].Peer != ends[0].Index) {
			t.Errorf("%q: the two ends are not each other's peers: %+v", c.IfName, ends)
		}
	}
	for name := range fab {
		if !expectFabric[name] {
			t.Errorf("fabric holds unexpected %q: %+v", name, fab[name])
		}
	}
}

// IP runs "ip ARGS..." and fails the test on error.
func IP(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// Ping reports whether the namespace at nsPath reaches addr.
func Ping(t testing.TB, nsPath, addr string) bool {
	t.Helper()
	if _, err := exec.LookPath("ping"); err != nil {
		t.Fatal("ping is not installed (apt-get install -y iputils-ping)")
	}
	cmd := exec.Command("nsenter", "--net="+nsPath, "ping", "-c", "1", "-W", "1", addr)
	out, err := cmd.CombinedOutput()
	if err != nil && testing.Verbose() {
		t.Logf("ping %s from %s: %v: %s", addr, nsPath, err, out)
	}
	return err == nil
}

// Addr returns a test address for member i (from 0) of subnet n.
func Addr(n, i int) string { return fmt.Sprintf("10.%d.%d.%d", 200+n/256, n%256, i+1) }
