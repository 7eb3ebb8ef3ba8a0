package rest

import (
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/internal/ktest"
)

// addrOf returns a container's address in a CIN (without the length),
// from GET /cin/{id}.
func addrsOf(t *testing.T, e *env, cinID string) map[string][]string {
	t.Helper()
	var v core.CINView
	e.must(200, "GET", "/cin/"+cinID, "", &v)
	out := map[string][]string{}
	for _, m := range v.Members {
		if m.IP != nil {
			a, _, _ := strings.Cut(*m.IP, "/")
			out[m.Container] = append(out[m.Container], a)
		}
	}
	return out
}

// reach checks that every container of a CIN reaches (or, want false,
// does not reach) every address in to.
func reach(t *testing.T, e *env, from map[string][]string, to map[string][]string, want bool) {
	t.Helper()
	for c := range from {
		for d, as := range to {
			if c == d {
				continue
			}
			for _, a := range as {
				if got := ktest.Ping(t, e.ns(c), a); got != want {
					t.Errorf("%s -> %s (%s): reached %v, want %v", c, a, d, got, want)
				}
			}
		}
	}
}

func TestCINReadmeExample(t *testing.T) {
	e := newEnv(t, Options{})
	tr := &transcript{e: e}
	e.must(200, "POST", "/cen/import", readmeCENFile(t), nil)
	e.must(200, "POST", "/cen/make", allCENs, nil)
	tr.do("POST", "/cin/import", `{"cin1":["cen1"],"cin2":["cen2"]}`)
	tr.do("POST", "/cin/make", `["cin1","cin2"]`)
	tr.do("GET", "/cin/cin1", "")
	tr.do("GET", "/host/host1/c2", "")

	// The address is on the interface, with a route to the CIN's prefix.
	out, err := exec.Command("ip", "-n", e.prefix+"c2", "-4", "-o", "addr", "show", "dev", "cen1").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "10.10.0.11/24") {
		t.Errorf("c2's cen1 addresses: %s %v", out, err)
	}
	out, _ = exec.Command("ip", "-n", e.prefix+"c2", "route", "show", "10.10.0.0/16").CombinedOutput()
	if !strings.Contains(string(out), "via 10.10.0.1 dev cen1") {
		t.Errorf("c2's route to 10.10.0.0/16: %q", out)
	}
	if out, _ := exec.Command("ip", "-n", e.prefix+"c2", "route", "show", "default").CombinedOutput(); len(out) != 0 {
		t.Errorf("a default route was added unasked: %q", out)
	}

	one, two := addrsOf(t, e, "cin1"), addrsOf(t, e, "cin2")
	reach(t, e, one, one, true)
	reach(t, e, two, two, true)
	reach(t, e, one, two, false)
	reach(t, e, two, one, false)

	// cen destroy of a CEN in a made CIN is refused; cin destroy removes
	// the addressing, and then the CEN can go.
	tr.do("POST", "/cen/destroy", `["cen1"]`)
	tr.do("POST", "/cin/destroy", `["cin1","cin2"]`)
	out, _ = exec.Command("ip", "-n", e.prefix+"c2", "-4", "-o", "addr", "show", "dev", "cen1").CombinedOutput()
	if len(out) != 0 {
		t.Errorf("addresses left after cin destroy: %s", out)
	}
	out, _ = exec.Command("ip", "netns", "exec", e.prefix+"fabric", "sysctl", "-n", "net.ipv4.conf.cen1.forwarding").CombinedOutput()
	if strings.TrimSpace(string(out)) != "0" {
		t.Errorf("forwarding on the bridge after cin destroy: %q", out)
	}
	tr.do("POST", "/cen/destroy", `["cen1"]`)
	tr.compare("cin_readme")
}

func TestCINOverThreeCENs(t *testing.T) {
	e := newEnv(t, Options{})
	e.must(200, "POST", "/cen/import", `{"cenList":[
		{"cenID":"ba","containerIDs":["a1","a2","a3"]},
		{"cenID":"bb","containerIDs":["b1","b2","b3"]},
		{"cenID":"w","containerIDs":["a1","b1"]}]}`, nil)
	e.must(200, "POST", "/cen/make", `["ba","bb","w"]`, nil)
	e.must(201, "PUT", "/cin/big", `["ba","bb","w"]`, nil)
	e.must(200, "POST", "/cin/make", `["big"]`, nil)
	all := addrsOf(t, e, "big")
	// Each container's first address (its bridge's) is reachable from all.
	first := map[string][]string{}
	for c, as := range all {
		first[c] = as[:1]
	}
	reach(t, e, all, first, true)
	// The wire's two ends reach each other over it.
	var v core.CINView
	e.must(200, "GET", "/cin/big", "", &v)
	var wire []string
	for _, m := range v.Members {
		if m.CEN == "w" {
			a, _, _ := strings.Cut(*m.IP, "/")
			wire = append(wire, a)
		}
	}
	if len(wire) != 2 || !ktest.Ping(t, e.ns("a1"), wire[1]) || !ktest.Ping(t, e.ns("b1"), wire[0]) {
		t.Errorf("wire ends %v do not reach each other", wire)
	}
	// Subnets: one per CEN, in order; members from .10.
	want := map[string]string{"ba": "10.10.0.", "bb": "10.10.1.", "w": "10.10.2."}
	for _, m := range v.Members {
		if !strings.HasPrefix(*m.IP, want[m.CEN]) {
			t.Errorf("%s on %s has %s, want %s*", m.Container, m.CEN, *m.IP, want[m.CEN])
		}
	}
}

func TestCINLiveMembershipAndStickyAddresses(t *testing.T) {
	e := newEnv(t, Options{})
	e.must(200, "POST", "/cen/import", `{"cenList":[{"cenID":"net","containerIDs":["x1","x2","x3"]}]}`, nil)
	e.must(200, "POST", "/cen/make", `["net"]`, nil)
	e.must(200, "POST", "/cin/import", `{"c":["net"]}`, nil)
	e.must(200, "POST", "/cin/make", `["c"]`, nil)
	before := addrsOf(t, e, "c")

	// Join: an address at once, and it works.
	e.must(200, "PUT", "/host/host1/x4/net", "", nil)
	now := addrsOf(t, e, "c")
	if len(now["x4"]) != 1 || now["x4"][0] != "10.10.0.13" {
		t.Fatalf("x4 got %v, want 10.10.0.13", now["x4"])
	}
	reach(t, e, map[string][]string{"x4": nil}, before, true)

	// Leave: released, and reused by the next joiner.
	e.must(200, "DELETE", "/host/host1/x2/net", "", nil)
	e.must(200, "PUT", "/host/host1/x5/net", "", nil)
	now = addrsOf(t, e, "c")
	if now["x5"][0] != before["x2"][0] || len(now["x2"]) != 0 {
		t.Errorf("freed %s not reused: x5 got %v", before["x2"], now["x5"])
	}

	// Down to two members: the CEN becomes a wire, addresses follow.
	e.must(200, "DELETE", "/host/host1/x4/net", "", nil)
	e.must(200, "DELETE", "/host/host1/x5/net", "", nil)
	two := addrsOf(t, e, "c")
	reach(t, e, two, two, true)
	e.must(200, "PUT", "/host/host1/x6/net", "", nil) // and a bridge again
	three := addrsOf(t, e, "c")
	reach(t, e, three, three, true)

	// Sticky across destroy/make and a restart, with damage repaired.
	e.must(200, "POST", "/cin/destroy", `["c"]`, nil)
	e.must(200, "POST", "/cin/make", `["c"]`, nil)
	if got := addrsOf(t, e, "c"); fmt.Sprint(got) != fmt.Sprint(three) {
		t.Errorf("after destroy/make: %v, want %v", got, three)
	}
	e.stop()
	ktest.IP(t, "-n", e.prefix+"x1", "addr", "flush", "dev", "net")
	ktest.IP(t, "-n", e.prefix+"x3", "addr", "add", "10.10.0.99/24", "dev", "net") // the user's own
	e.start()
	if got := addrsOf(t, e, "c"); fmt.Sprint(got) != fmt.Sprint(three) {
		t.Errorf("after restart: %v, want %v", got, three)
	}
	reach(t, e, three, three, true)
	if out, _ := exec.Command("ip", "-n", e.prefix+"x3", "-o", "addr", "show", "dev", "net").CombinedOutput(); !strings.Contains(string(out), "10.10.0.99") {
		t.Errorf("reconcile removed a user's address: %s", out)
	}
}

func TestCINErrorsAndOptions(t *testing.T) {
	e := newEnv(t, Options{})
	tr := &transcript{e: e}
	e.must(200, "POST", "/cen/import", `{"cenList":[
		{"cenID":"p","containerIDs":["p1","p2","p3","p4","p5","p6"]},
		{"cenID":"q","containerIDs":["q1","q2","q3"]},
		{"cenID":"r","containerIDs":["r1","r2","r3"]}]}`, nil)
	e.must(200, "POST", "/cen/make", `["q","r"]`, nil)
	cases := []struct {
		method, path, body string
		want               int
	}{
		{"POST", "/cin/import", `{"a":["nosuch"]}`, 404},
		{"POST", "/cin/import", `{"a":["q"],"b":["q"]}`, 409},
		{"POST", "/cin/import", `{"a":{"cens":["q"],"prefix":"192.168.0.0/16"},"b":{"cens":["r"],"prefix":"192.168.128.0/17"}}`, 409},
		{"POST", "/cin/import", `{"a":{"cens":["q"],"prefix":"192.168.0.0/24"}}`, 400},
		{"POST", "/cin/import", `{"a":["q"]} x`, 400},
		{"PUT", "/cin/small", `{"cens":["p"],"prefix":"192.168.16.0/20"}`, 201},
		{"POST", "/cin/make", `["small"]`, 409}, // p is not made
		{"POST", "/cen/make", `["p"]`, 200},
		{"POST", "/cin/make", `["small"]`, 409}, // 6 members, /28 subnets hold 5
		{"POST", "/cin/make", `["nosuch"]`, 404},
		{"GET", "/cin/nosuch", "", 404},
		{"DELETE", "/cin/nosuch", "", 404},
		{"DELETE", "/cen/p", "", 409}, // in a CIN
		{"PUT", "/cin/dr", `{"cens":["q"],"default_route":true}`, 201},
		{"POST", "/cin/make", `["dr"]`, 200},
	}
	for _, c := range cases {
		if got, body := tr.do(c.method, c.path, c.body); got != c.want {
			t.Errorf("%s %s %s: %d, want %d: %s", c.method, c.path, c.body, got, c.want, body)
		}
	}
	var small core.CINView
	e.must(200, "GET", "/cin/small", "", &small)
	if small.State != graph.StateFailed || !strings.Contains(small.Error, "full") {
		t.Errorf("small: %+v", small)
	}
	if out, _ := exec.Command("ip", "-n", e.prefix+"p1", "-4", "-o", "addr").CombinedOutput(); strings.Contains(string(out), "192.168.") {
		t.Errorf("failed make left addresses: %s", out)
	}
	// default_route: added via the gateway; a container's own default
	// route is never replaced.
	out, _ := exec.Command("ip", "-n", e.prefix+"q1", "route", "show", "default").CombinedOutput()
	if !strings.Contains(string(out), "via 10.10.0.1 dev q") {
		t.Errorf("q1 default route: %q", out)
	}
	e.must(200, "POST", "/cin/destroy", `["dr"]`, nil)
	if out, _ := exec.Command("ip", "-n", e.prefix+"q1", "route", "show", "default").CombinedOutput(); len(out) != 0 {
		t.Errorf("default route left after destroy: %q", out)
	}
	for i, c := range []string{"q2", "q3"} {
		ktest.IP(t, "-n", e.prefix+c, "addr", "add", fmt.Sprintf("192.0.2.%d/24", i+2), "dev", "q")
		ktest.IP(t, "-n", e.prefix+c, "route", "add", "default", "via", "192.0.2.1", "metric", fmt.Sprint(i*100))
	}
	e.must(200, "POST", "/cin/make", `["dr"]`, nil)
	for _, c := range []string{"q2", "q3"} {
		if out, _ := exec.Command("ip", "-n", e.prefix+c, "route", "show", "default").CombinedOutput(); !strings.Contains(string(out), "via 192.0.2.1") || strings.Contains(string(out), "10.10.0.1") {
			t.Errorf("%s's own default route replaced or outranked: %q", c, out)
		}
	}
	var dr core.CINView
	e.must(200, "GET", "/cin/dr", "", &dr)
	if p, _ := netip.ParsePrefix(dr.Prefix); p.String() != "10.10.0.0/16" {
		t.Errorf("dr prefix %s", dr.Prefix)
	}
	tr.compare("cin_errors")
}
