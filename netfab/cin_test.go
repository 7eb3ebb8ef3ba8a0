package netfab

import (
	"context"
	"net/netip"
	"os/exec"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/leviathan-net/leviathan/cen"
)

func ping(t *testing.T, ns string, addr netip.Addr) bool {
	t.Helper()
	if _, err := exec.LookPath("ping"); err != nil {
		t.Fatal("ping is not installed (apt-get install -y iputils-ping)")
	}
	return exec.Command("nsenter", "--net="+ns, "ping", "-c", "1", "-W", "1", addr.String()).Run() == nil
}

// testCIN lays a CIN over made CENs the way core plans it: subnet k of
// prefix for the k-th CEN, gateway .1 on bridges, members from .10; each
// member's route to the prefix goes through its first bridge CEN.
func testCIN(id string, table int, prefix string, cens ...*CEN) *CIN {
	p := netip.MustParsePrefix(prefix)
	c := &CIN{ID: id, Table: table, Prefix: p}
	routed := map[string]bool{}
	for k, n := range cens {
		base := p.Addr().As4()
		base[2] = byte(k)
		subnet := netip.PrefixFrom(netip.AddrFrom4(base), 24)
		gw := netip.AddrFrom4([4]byte{base[0], base[1], base[2], 1})
		bridge := n.Wiring() == "bridge"
		if bridge {
			c.Gateways = append(c.Gateways, Gateway{Bridge: n.Name, Addr: netip.PrefixFrom(gw, 24)})
		}
		for i, port := range n.Ports {
			a := Address{Member: port.Member, Netns: port.Netns, IfName: n.Name,
				Addr: netip.PrefixFrom(netip.AddrFrom4([4]byte{base[0], base[1], base[2], byte(10 + i)}), subnet.Bits())}
			if bridge && !routed[port.Netns] {
				a.Route, a.Via, routed[port.Netns] = true, gw, true
			}
			c.Addresses = append(c.Addresses, a)
		}
	}
	return c
}

func TestCINRoutingAndIsolation(t *testing.T) {
	f := testFabric(t)
	ns := testNamespaces(t, 9)
	ctx := context.Background()
	a := testCEN("cinA", cen.GroupBase+1, ns[0:3])
	b := testCEN("cinB", cen.GroupBase+2, ns[3:6])
	w := testCEN("cinW", cen.GroupBase+3, []string{ns[0], ns[3]}) // a wire between a member of each
	c := testCEN("cinC", cen.GroupBase+4, ns[6:9])
	for _, n := range []*CEN{a, b, w, c} {
		if err := f.Apply(ctx, nil, n); err != nil {
			t.Fatal(err)
		}
	}
	one := testCIN("one", 0x4c560001, "10.10.0.0/16", a, b, w)
	two := testCIN("two", 0x4c560002, "10.11.0.0/16", c)
	for _, x := range []*CIN{one, two} {
		if err := f.ApplyCIN(ctx, nil, x, nil); err != nil {
			t.Fatal(err)
		}
		if err := f.ApplyCIN(ctx, x, x, nil); err != nil { // idempotent
			t.Fatal(err)
		}
	}
	// A user's own address on a CEN interface, which leviathan must keep.
	if err := withConn(ns[1], func(c *conn) error {
		l, _ := c.linkByName("cinA")
		return c.h.AddrAdd(l, mustAddr("192.0.2.7/24"))
	}); err != nil {
		t.Fatal(err)
	}

	// Every member of "one" reaches every address of "one"...
	for _, from := range one.Addresses {
		for _, to := range one.Addresses {
			if from.Netns == to.Netns || (from.IfName == "cinW") != (to.IfName == "cinW") {
				continue // a wire's addresses are for its two ends
			}
			if !ping(t, from.Netns, to.Addr.Addr()) {
				t.Errorf("%s cannot reach %s (%s)", from.Member, to.Addr.Addr(), to.Member)
			}
		}
		if !ping(t, from.Netns, netip.MustParseAddr("10.10.0.1")) && from.IfName != "cinW" {
			t.Errorf("%s cannot reach its gateway", from.Member)
		}
	}
	// ...and nothing of "two", not even its gateway; nor the other way.
	for _, x := range []struct{ from, to *CIN }{{one, two}, {two, one}} {
		for _, to := range append(x.to.Addresses, Address{Addr: x.to.Gateways[0].Addr}) {
			if ping(t, x.from.Addresses[0].Netns, to.Addr.Addr()) {
				t.Errorf("CIN %s reaches %s of CIN %s", x.from.ID, to.Addr.Addr(), x.to.ID)
			}
		}
	}

	// Destroy removes exactly what was added.
	if err := f.ApplyCIN(ctx, one, nil, nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range ns[:6] {
		err := withConn(p, func(c *conn) error {
			own, err := c.ownAddrs(ctx)
			if len(own) > 0 {
				t.Errorf("%s keeps leviathan's addresses %v", p, own)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	err := withConn(ns[1], func(c *conn) error {
		l, _ := c.linkByName("cinA")
		as, err := c.h.AddrList(l, netlink.FAMILY_V4)
		if len(as) != 1 || as[0].IPNet.String() != "192.0.2.7/24" {
			t.Errorf("user address not kept: %v", as)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !ping(t, two.Addresses[0].Netns, two.Addresses[2].Addr.Addr()) {
		t.Error("destroying one CIN broke another")
	}
}

func mustAddr(s string) *netlink.Addr {
	a, err := netlink.ParseAddr(s)
	if err != nil {
		panic(err)
	}
	return a
}
