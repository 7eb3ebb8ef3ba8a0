package core

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/leviathan-net/leviathan/graph"
)

func members(ids ...string) []graph.Member {
	var ms []graph.Member
	for _, id := range ids {
		ms = append(ms, graph.Member{Host: "h", Container: id})
	}
	return ms
}

func TestAllocateSequentialStickyReuse(t *testing.T) {
	c := &graph.CIN{ID: "x", CENs: []string{"a", "b"}, Prefix: "10.10.0.0/16"}
	cens := map[string]*graph.CEN{
		"a": {ID: "a", Members: members("a1", "a2", "a3")},
		"b": {ID: "b", Members: members("b1")},
	}
	addr := func(cen, ctr string) string {
		return c.Addrs[graph.AddrKey(cen, graph.Member{Host: "h", Container: ctr})]
	}
	steps := []struct {
		name string
		do   func()
		want map[string]string // "cen/ctr" → address; every other is absent
	}{
		{"sequential from .10, one subnet per CEN in order", func() {},
			map[string]string{"a/a1": "10.10.0.10", "a/a2": "10.10.0.11", "a/a3": "10.10.0.12", "b/b1": "10.10.1.10"}},
		{"sticky: allocating again changes nothing", func() {},
			map[string]string{"a/a1": "10.10.0.10", "a/a2": "10.10.0.11", "a/a3": "10.10.0.12", "b/b1": "10.10.1.10"}},
		{"a leaver's address is freed, the others stay", func() { cens["a"].Members = members("a1", "a3") },
			map[string]string{"a/a1": "10.10.0.10", "a/a3": "10.10.0.12", "b/b1": "10.10.1.10"}},
		{"a joiner gets the lowest free address", func() { cens["a"].Members = members("a1", "a3", "a4") },
			map[string]string{"a/a1": "10.10.0.10", "a/a3": "10.10.0.12", "a/a4": "10.10.0.11", "b/b1": "10.10.1.10"}},
		{"a CEN leaving frees its subnet; a new CEN takes the lowest free", func() {
			c.CENs = []string{"b", "c"}
			cens["c"] = &graph.CEN{ID: "c", Members: members("c1")}
		}, map[string]string{"b/b1": "10.10.1.10", "c/c1": "10.10.0.10"}},
	}
	for _, s := range steps {
		s.do()
		if err := allocate(c, cens); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		got := map[string]string{}
		for _, id := range c.CENs {
			for _, m := range cens[id].Members {
				got[id+"/"+m.Container] = addr(id, m.Container)
			}
		}
		if d := cmp.Diff(s.want, got); d != "" || len(c.Addrs) != len(s.want) {
			t.Fatalf("%s (-want +got):\n%s\n(%d addresses held)", s.name, d, len(c.Addrs))
		}
	}
}

func TestAllocateExhaustion(t *testing.T) {
	c := &graph.CIN{ID: "x", CENs: []string{"a"}, Prefix: "192.168.16.0/20"} // /28 subnets: 5 members
	cens := map[string]*graph.CEN{"a": {ID: "a", Members: members("1", "2", "3", "4", "5")}}
	if err := allocate(c, cens); err != nil {
		t.Fatal(err)
	}
	cens["a"].Members = members("1", "2", "3", "4", "5", "6")
	if err := allocate(c, cens); err == nil {
		t.Fatal("a sixth member fit in a /28 from .10")
	}
}

// The planner for multi-CEN CINs: gateways on made bridge CENs only, and
// one route per container, through its first bridge CEN.
func TestCINSpecPlan(t *testing.T) {
	made := func(id string, ms ...string) *graph.CEN {
		return &graph.CEN{ID: id, IfName: id, Members: members(ms...), State: graph.StateConfigured}
	}
	w := &cinWorld{
		cin: &graph.CIN{ID: "x", CENs: []string{"w", "ba", "bb", "one"}, Prefix: "10.10.0.0/16", State: graph.StateConfigured, Table: 7},
		cens: map[string]*graph.CEN{
			"w":   made("w", "a1", "b1"),        // a wire, listed first
			"ba":  made("ba", "a1", "a2", "a3"), // bridges
			"bb":  made("bb", "b1", "b2", "b3"),
			"one": made("one", "z"), // one member: no interface
		},
		ctrs: map[graph.Member]*graph.Container{},
	}
	for _, n := range w.cens {
		for _, m := range n.Members {
			w.ctrs[m] = &graph.Container{Host: m.Host, ID: m.Container, Netns: "/ns/" + m.Container, State: graph.StateRunning}
		}
	}
	if err := allocate(w.cin, w.cens); err != nil {
		t.Fatal(err)
	}
	svc := &Service{host: "h"}
	s := svc.cinSpec(w)
	if len(s.Gateways) != 2 || s.Gateways[0].Addr.String() != "10.10.1.1/24" || s.Gateways[1].Addr.String() != "10.10.2.1/24" {
		t.Errorf("gateways: %+v", s.Gateways)
	}
	routes := map[string]string{}
	for _, a := range s.Addresses {
		if a.Netns == "/ns/z" {
			t.Error("a one-member CEN's member got an address in the kernel plan")
		}
		if a.Route {
			if _, dup := routes[a.Netns]; dup {
				t.Errorf("%s has two routes to the prefix", a.Netns)
			}
			routes[a.Netns] = a.IfName + " via " + a.Via.String()
		}
	}
	want := map[string]string{
		"/ns/a1": "ba via 10.10.1.1", "/ns/a2": "ba via 10.10.1.1", "/ns/a3": "ba via 10.10.1.1",
		"/ns/b1": "bb via 10.10.2.1", "/ns/b2": "bb via 10.10.2.1", "/ns/b3": "bb via 10.10.2.1",
	}
	if d := cmp.Diff(want, routes); d != "" {
		t.Errorf("routes (-want +got):\n%s", d)
	}
	// A container on no bridge of the CIN routes on-link through its first CEN.
	w.cens["ba"].State, w.cens["bb"].State = graph.StatePending, graph.StatePending
	s = svc.cinSpec(w)
	for _, a := range s.Addresses {
		if a.Route && (a.Via != netip.Addr{} || a.IfName != "w") {
			t.Errorf("wire-only member: %+v", a)
		}
	}
}

// On several hosts each host addresses its own members, and only the
// CIN's router holds the gateways.
func TestCINSpecPerHost(t *testing.T) {
	c := &graph.CEN{ID: "x", IfName: "x", State: graph.StateConfigured, Members: []graph.Member{{Host: "h1", Container: "a"}, {Host: "h2", Container: "b"}, {Host: "h2", Container: "c"}}}
	w := &cinWorld{
		cin:  &graph.CIN{ID: "n", CENs: []string{"x"}, Prefix: "10.10.0.0/16", State: graph.StateConfigured, Router: "h1"},
		cens: map[string]*graph.CEN{"x": c},
		ctrs: map[graph.Member]*graph.Container{},
	}
	for _, m := range c.Members {
		w.ctrs[m] = &graph.Container{Host: m.Host, ID: m.Container, Netns: "/ns/" + m.Container, State: graph.StateRunning}
	}
	if err := allocate(w.cin, w.cens); err != nil {
		t.Fatal(err)
	}
	h1 := (&Service{host: "h1"}).cinSpec(w)
	h2 := (&Service{host: "h2"}).cinSpec(w)
	if len(h1.Gateways) != 1 || len(h2.Gateways) != 0 {
		t.Errorf("gateways: router %+v, other %+v", h1.Gateways, h2.Gateways)
	}
	if len(h1.Addresses) != 1 || h1.Addresses[0].Member != "a" || len(h2.Addresses) != 2 {
		t.Errorf("addresses: h1 %+v, h2 %+v", h1.Addresses, h2.Addresses)
	}
	for _, a := range h2.Addresses {
		if len(h1.Gateways) == 1 && a.Via != h1.Gateways[0].Addr.Addr() {
			t.Errorf("h2's member %s routes via %v, want the router's gateway %v", a.Member, a.Via, h1.Gateways[0].Addr)
		}
	}
}
