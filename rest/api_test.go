package rest

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/internal/ktest"
	"github.com/leviathan-net/leviathan/netfab"
)

var allCENs = `["cen1","cen2","cen3","cen4","cen5"]`

func readmeCENFile(t *testing.T) string {
	b, err := os.ReadFile("../examples/cen.json")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAPIErrors(t *testing.T) {
	e := newEnv(t, Options{MaxBody: 1 << 10})
	tr := &transcript{e: e}
	e.must(201, "PUT", "/cen/cen1", "", nil)
	long := strings.Repeat("x", 65)
	cases := []struct {
		method, path, body string
		want               int
	}{
		{"PUT", "/cen/-bad", "", 400},
		{"PUT", "/cen/.hidden", "", 400},
		{"PUT", "/cen/" + long, "", 400},
		{"GET", "/cen/a%2Fb", "", 400},
		{"GET", "/cen/cen1/", "", 404},
		{"GET", "/cen/nosuch", "", 404},
		{"DELETE", "/cen/nosuch", "", 404},
		{"GET", "/nosuch", "", 404},
		{"PATCH", "/cen/cen1", "", 405},
		{"POST", "/cen/import", `{"cenList":[`, 400},
		{"POST", "/cen/import", `{"cens":[]}`, 400},
		{"POST", "/cen/import", `{"cenList":[{"cenID":"ok1","containerIDs":["a"]},{"cenID":"bad/1"}]}`, 400},
		{"POST", "/cen/import", `{"cenList":[{"cenID":"ok1","containerIDs":[]},{"cenID":"ok1","containerIDs":[]}]}`, 400},
		{"POST", "/cen/import", `{"cenList":[` + strings.Repeat(`{"cenID":"x"},`, 100) + `{"cenID":"y"}]}`, 413},
		{"POST", "/cen/make", `"cen1"`, 400},
		{"POST", "/cen/make", `["cen1","nosuch","other"]`, 404},
		{"POST", "/cen/destroy", `["nosuch"]`, 404},
		{"POST", "/cen/make", `["../etc"]`, 400},
		{"GET", "/host/host2/c1", "", 404},
		{"GET", "/host/host1/nosuch", "", 404},
		{"PUT", "/host/host1/c1", `{"tag":`, 400},
		{"PUT", "/host/host1/c1", `{"color":"red"}`, 400},
		{"PUT", "/host/host1/c1/nosuch", "", 404},
		{"DELETE", "/host/host1/c1/cen1", "", 404},
		{"DELETE", "/host/host1/nosuch", "", 404},
		{"GET", "/jobs/nosuch", "", 404},
		{"PUT", "/cen/lo", "", 400},
		{"PUT", "/cen/default", "", 400},
		{"POST", "/cen/make?async=true", `["cen1","nosuch"]`, 404},
		{"GET", "/host/host2", "", 404},
	}
	for _, c := range cases {
		got, body := tr.do(c.method, c.path, c.body)
		if got != c.want {
			t.Errorf("%s %s: status %d, want %d: %s", c.method, c.path, got, c.want, body)
		}
		var eb errorBody
		if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.Status != got || eb.Message == "" {
			t.Errorf("%s %s: body %q is not {status,message} with status %d", c.method, c.path, body, got)
		}
	}
	// Nothing of the failed imports and makes is left behind.
	var cens []core.CENView
	e.must(200, "GET", "/cen", "", &cens)
	if len(cens) != 1 || cens[0].ID != "cen1" || cens[0].State != graph.StatePending {
		t.Errorf("after failed requests: %+v", cens)
	}
	e.check()
	tr.compare("errors")
}

func TestOversizedChunkedBody(t *testing.T) {
	e := newEnv(t, Options{MaxBody: 1 << 10})
	for _, path := range []string{"/cen/import", "/cen/make", "/host/host1/c1"} {
		pr, pw := io.Pipe()
		go func() {
			pw.Write([]byte(`{"cenList":[` + strings.Repeat(`{"cenID":"x"},`, 200)))
			pw.Close()
		}()
		method := "POST"
		if strings.HasPrefix(path, "/host") {
			method = "PUT"
		}
		req, _ := http.NewRequest(method, e.srv.URL+path, pr) // no Content-Length: chunked
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("%s %s with a chunked oversized body: %d, want 413", method, path, resp.StatusCode)
		}
	}
}

func TestListContainers(t *testing.T) {
	e := newEnv(t, Options{})
	e.must(201, "PUT", "/host/host1/b", "", nil)
	e.must(201, "PUT", "/host/host1/a", `{"tag":"t"}`, nil)
	var cs []core.ContainerView
	e.must(200, "GET", "/host/host1", "", &cs)
	if len(cs) != 2 || cs[0].ID != "a" || cs[1].ID != "b" || *cs[0].Tag != "t" {
		t.Errorf("GET /host/host1: %+v", cs)
	}
}

func TestReadmeExample(t *testing.T) {
	e := newEnv(t, Options{})
	tr := &transcript{e: e}
	tr.do("POST", "/cen/import", readmeCENFile(t))
	for _, c := range []string{"c1", "c3", "c16"} {
		if !netfab.IsNetns(e.ns(c)) {
			t.Errorf("after import, %s has no namespace", c)
		}
	}
	if s, b := tr.do("POST", "/cen/make", allCENs); s != 200 {
		t.Fatalf("make: %d %s", s, b)
	}
	for _, id := range []string{"cen1", "cen2", "cen3", "cen4", "cen5"} {
		tr.do("GET", "/cen/"+id, "")
	}
	tr.do("GET", "/host/host1/c2", "")
	tr.do("GET", "/host/host1/c11", "")
	e.check()

	// Nothing of it in the host's namespace. (Not /proc/self: the main
	// thread may have been parked in a namespace it created.)
	host, err := netfab.ListLinks("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range host {
		if strings.HasPrefix(l.Name, "lv~") || l.Group >= 0x4c560000 && l.Group < 0x4c570000 {
			t.Errorf("host namespace holds %q", l.Name)
		}
	}

	// Make again changes nothing.
	before := ktest.Links(t, e.fab.Path())
	tr.do("POST", "/cen/make", allCENs)
	after := ktest.Links(t, e.fab.Path())
	for name, l := range before {
		if after[name].Index != l.Index {
			t.Errorf("make twice recreated %q", name)
		}
	}
	e.check()

	// The wiring carries frames: give cen1 (a bridge) and cen4 (a wire)
	// test addresses and ping across.
	var cen1, cen4 core.CENView
	e.must(200, "GET", "/cen/cen1", "", &cen1)
	e.must(200, "GET", "/cen/cen4", "", &cen4)
	for n, c := range []core.CENView{cen1, cen4} {
		for i, m := range c.Members {
			ktest.IP(t, "-n", e.prefix+m, "addr", "add", ktest.Addr(n, i)+"/24", "dev", c.IfName)
		}
		for i, m := range c.Members {
			for j := range c.Members {
				if i != j && !ktest.Ping(t, e.ns(m), ktest.Addr(n, j)) {
					t.Errorf("%s: %s cannot reach %s", c.ID, m, ktest.Addr(n, j))
				}
			}
		}
	}

	tr.do("POST", "/cen/destroy", allCENs)
	tr.do("POST", "/cen/destroy", allCENs) // destroy twice: a no-op success
	tr.do("GET", "/cen", "")
	e.check()
	if fab := ktest.Links(t, e.fab.Path()); len(fab) != 1 {
		t.Errorf("fabric after destroy: %v, want only lo", fab)
	}
	tr.compare("readme")
}

func TestRewireWireBridge(t *testing.T) {
	e := newEnv(t, Options{})
	e.must(201, "PUT", "/cen/ring", "", nil)
	e.must(200, "POST", "/cen/make", `["ring"]`, nil)
	steps := []struct {
		method, ctr string
		wiring      string
	}{
		{"PUT", "a", ""}, {"PUT", "b", "wire"}, {"PUT", "c", "bridge"}, {"PUT", "d", "bridge"},
		{"DELETE", "a", "bridge"}, {"DELETE", "b", "wire"}, {"PUT", "a", "bridge"},
		{"DELETE", "c", "wire"}, {"DELETE", "d", ""}, {"DELETE", "a", ""},
	}
	for _, s := range steps {
		var v core.CENView
		e.must(200, s.method, "/host/host1/"+s.ctr+"/ring", "", &v)
		got := ""
		if v.Wiring != nil {
			got = *v.Wiring
		}
		if got != s.wiring {
			t.Fatalf("%s %s: wiring %q, want %q", s.method, s.ctr, got, s.wiring)
		}
		e.check()
	}
}

func TestConcurrentMembershipChanges(t *testing.T) {
	e := newEnv(t, Options{})
	var file strings.Builder
	file.WriteString(`{"cenList":[`)
	for i := range 5 {
		if i > 0 {
			file.WriteString(",")
		}
		fmt.Fprintf(&file, `{"cenID":"n%d","containerIDs":["x%d","y%d","z%d"]}`, i, i, i, i)
	}
	file.WriteString("]}")
	e.must(200, "POST", "/cen/import", file.String(), nil)
	e.must(200, "POST", "/cen/make", `["n0","n1","n2","n3","n4"]`, nil)

	var wg sync.WaitGroup
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 50 {
		method := "PUT"
		if rng.IntN(3) == 0 {
			method = "DELETE"
		}
		path := fmt.Sprintf("/host/host1/p%d/n%d", rng.IntN(8), rng.IntN(5))
		if i%10 == 0 {
			path = fmt.Sprintf("/host/host1/x%d/n%d", i/10, i/10)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, body := e.do(method, path, "")
			if status != 200 && status != 404 {
				t.Errorf("%s %s: %d %s", method, path, status, body)
			}
		}()
	}
	wg.Wait()
	e.check()
	// And after a restart the kernel still matches.
	e.restart()
	e.check()
}

func TestRestartReconciles(t *testing.T) {
	e := newEnv(t, Options{})
	e.must(200, "POST", "/cen/import", readmeCENFile(t), nil)
	e.must(200, "POST", "/cen/make", `["cen1","cen3","cen4"]`, nil)
	e.check()
	e.stop() // a crash: nothing orderly

	// While it is down: lose a bridge, cut a wire, leave leftovers of
	// leviathan's own (its group on links it no longer wants), and add
	// foreign links in the fabric and in a container.
	fab := e.fab.Path()
	ktest.IP(t, "-n", e.prefix+"fabric", "link", "del", "cen1")
	ktest.IP(t, "-n", e.prefix+"c11", "link", "del", "cen4")
	ktest.IP(t, "-n", e.prefix+"fabric", "link", "add", "stale0", "group", fmt.Sprint(0x4c560000+77), "type", "bridge")
	ktest.IP(t, "-n", e.prefix+"c2", "link", "add", "stale1", "group", fmt.Sprint(0x4c560000+1), "type", "bridge")
	ktest.IP(t, "-n", e.prefix+"fabric", "link", "add", "foreign0", "type", "bridge")
	ktest.IP(t, "-n", e.prefix+"c1", "link", "add", "foreign1", "type", "bridge")
	// A container namespace leviathan created is gone too.
	netfab.DeleteNetns(e.ns("c9"))

	e.start()
	links := ktest.Links(t, fab)
	if _, ok := links["foreign0"]; !ok {
		t.Error("reconcile removed a foreign link from the fabric")
	}
	if _, ok := ktest.Links(t, e.ns("c1"))["foreign1"]; !ok {
		t.Error("reconcile removed a foreign link from a container")
	}
	if _, ok := links["stale0"]; ok {
		t.Error("reconcile left a leftover in the fabric")
	}
	if _, ok := ktest.Links(t, e.ns("c2"))["stale1"]; ok {
		t.Error("reconcile left a leftover in a container")
	}
	ktest.IP(t, "-n", e.prefix+"fabric", "link", "del", "foreign0")
	e.check()

	// Reconciling again changes nothing.
	before := ktest.Links(t, fab)
	e.restart()
	for name, l := range ktest.Links(t, fab) {
		if before[name].Index != l.Index {
			t.Errorf("second reconcile recreated %q", name)
		}
	}
}

func TestFailedMakeRollsBack(t *testing.T) {
	e := newEnv(t, Options{})
	e.must(200, "POST", "/cen/import", `{"cenList":[{"cenID":"good","containerIDs":["a","b","c"]},{"cenID":"bad","containerIDs":["a","b","c","d"]}]}`, nil)
	e.must(200, "PUT", "/host/host1/d", "", nil) // known from the import: 200
	// d already has an interface named "bad" that is not leviathan's.
	ktest.IP(t, "-n", e.prefix+"d", "link", "add", "bad", "type", "bridge")

	status, body := e.do("POST", "/cen/make", `["good","bad"]`)
	if status != http.StatusConflict || !strings.Contains(body, "member d") {
		t.Fatalf("make: %d %s; want 409 naming member d", status, body)
	}
	var bad, good core.CENView
	e.must(200, "GET", "/cen/bad", "", &bad)
	e.must(200, "GET", "/cen/good", "", &good)
	if bad.State != graph.StateFailed || !strings.Contains(bad.Error, "member d") {
		t.Errorf("bad: %+v, want failed naming member d", bad)
	}
	if good.State != graph.StateConfigured {
		t.Errorf("good: %+v, want made", good)
	}
	e.check() // nothing of "bad" in the kernel; the foreign "bad" is untouched
	if l := ktest.Links(t, e.ns("d"))["bad"]; l.Kind != "bridge" {
		t.Errorf("foreign interface changed: %+v", l)
	}

	// Membership: adding d to made "good" fails the same way, nothing half-applied.
	ktest.IP(t, "-n", e.prefix+"d", "link", "add", "good", "type", "bridge")
	if s, b := e.do("PUT", "/host/host1/d/good", ""); s != http.StatusConflict {
		t.Fatalf("PUT member: %d %s, want 409", s, b)
	}
	e.must(200, "GET", "/cen/good", "", &good)
	if len(good.Members) != 3 {
		t.Errorf("good members after failed add: %v", good.Members)
	}
	e.check()
}

func TestContainerLifecycle(t *testing.T) {
	e := newEnv(t, Options{})
	var v core.ContainerView
	e.must(201, "PUT", "/host/host1/solo", `{"tag":"web"}`, &v)
	if !netfab.IsNetns(v.Netns) || v.Netns != e.ns("solo") || v.Tag == nil || *v.Tag != "web" || v.Runtime != graph.RuntimeNetns {
		t.Fatalf("registered: %+v", v)
	}
	e.must(200, "PUT", "/host/host1/solo", "", &v) // again: 200, tag kept
	if v.Tag == nil || *v.Tag != "web" {
		t.Errorf("tag lost on re-register: %+v", v)
	}
	// An existing named namespace is used, not created, and not deleted.
	ktest.IP(t, "netns", "add", e.prefix+"named")
	e.must(201, "PUT", "/host/host1/named", "", &v)
	if v.Runtime != graph.RuntimeNamed {
		t.Errorf("named: %+v", v)
	}
	e.must(201, "PUT", "/cen/cen1x", "", nil)
	e.must(201, "PUT", "/cen/cen2x", "", nil)
	for _, c := range []string{"solo", "named", "third"} {
		e.must(200, "PUT", "/host/host1/"+c+"/cen1x", "", nil)
		e.must(200, "PUT", "/host/host1/"+c+"/cen2x", "", nil)
	}
	e.must(200, "POST", "/cen/make", `["cen1x","cen2x"]`, nil)
	e.must(200, "GET", "/host/host1/solo", "", &v)
	if len(v.Interfaces) != 2 || v.Interfaces[0].Name != "cen1x" || v.Interfaces[1].Name != "cen2x" {
		t.Errorf("interfaces: %+v", v.Interfaces)
	}
	for _, i := range v.Interfaces {
		if l := ktest.Links(t, v.Netns)[i.Name]; l.MAC != i.MAC {
			t.Errorf("%s: kernel MAC %s, API says %s", i.Name, l.MAC, i.MAC)
		}
	}
	e.check()
	e.must(204, "DELETE", "/host/host1/solo", "", nil)
	e.must(204, "DELETE", "/host/host1/named", "", nil)
	if netfab.IsNetns(e.ns("solo")) {
		t.Error("namespace leviathan created survived DELETE")
	}
	if !netfab.IsNetns(e.ns("named")) {
		t.Error("a namespace leviathan did not create was deleted")
	}
	var c core.CENView
	e.must(200, "GET", "/cen/cen1x", "", &c)
	if len(c.Members) != 1 || c.Members[0] != "third" {
		t.Errorf("cen1x members after deletes: %v", c.Members)
	}
	e.check()
	e.must(204, "DELETE", "/cen/cen1x", "", nil)
	e.must(404, "GET", "/cen/cen1x", "", nil)
	e.check()
}

func TestLongCENName(t *testing.T) {
	e := newEnv(t, Options{})
	id := "a-very-long-cen-name-for-testing"
	e.must(200, "POST", "/cen/import", `{"cenList":[{"cenID":"`+id+`","containerIDs":["l1","l2","l3"]}]}`, nil)
	e.must(200, "POST", "/cen/make", `["`+id+`"]`, nil)
	var v core.CENView
	e.must(200, "GET", "/cen/"+id, "", &v)
	if len(v.IfName) > 15 || v.IfName == id {
		t.Fatalf("ifname %q", v.IfName)
	}
	if _, ok := ktest.Links(t, e.ns("l1"))[v.IfName]; !ok {
		t.Errorf("l1 has no %q", v.IfName)
	}
	e.check()
}

func TestAsyncMake(t *testing.T) {
	e := newEnv(t, Options{})
	e.must(200, "POST", "/cen/import", readmeCENFile(t), nil)
	var j core.Job
	e.must(202, "POST", "/cen/make?async=true", allCENs, &j)
	deadline := time.Now().Add(30 * time.Second)
	for j.State == core.JobRunning && time.Now().Before(deadline) {
		if j.Done > j.Total || j.Total != 0 && j.Total != 5 {
			t.Errorf("progress %d/%d", j.Done, j.Total)
		}
		time.Sleep(20 * time.Millisecond)
		e.must(200, "GET", "/jobs/"+j.ID, "", &j)
	}
	if j.State != core.JobDone || len(j.Results) != 5 || j.Done != 5 || j.Total != 5 {
		t.Fatalf("job: %+v", j)
	}
	e.check()
}

func TestBasicAuth(t *testing.T) {
	e := newEnv(t, Options{Auth: "admin:s3cret"})
	req, _ := http.NewRequest("GET", e.srv.URL+"/v2/version", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
		t.Fatalf("no credentials: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	req.SetBasicAuth("admin", "wrong")
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("wrong password: %d", resp.StatusCode)
	}
	req.SetBasicAuth("admin", "s3cret")
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("right password: %d", resp.StatusCode)
	}
}

// A member whose namespace vanishes (a named namespace deleted, as a
// Docker container's goes when it stops) leaves its CEN working: it is
// shown stopped and wired again when it is back. A make that fails
// leaves the kernel exactly as the graph says: nothing of the CEN.
func TestVanishedMemberAndFailedRemake(t *testing.T) {
	e := newEnv(t, Options{})
	ktest.IP(t, "netns", "add", e.prefix+"gone")
	e.must(200, "POST", "/cen/import", `{"cenList":[{"cenID":"trio","containerIDs":["a","b","gone"]}]}`, nil)
	e.must(200, "POST", "/cen/make", `["trio"]`, nil)
	e.check()

	stateOf := func(e *env, cenID, member string) graph.State {
		e.t.Helper()
		var c core.CENView
		e.must(200, "GET", "/cen/"+cenID, "", &c)
		for _, m := range c.Each {
			if m.Container == member {
				return m.State
			}
		}
		e.t.Fatalf("%s is not a member of %s: %+v", member, cenID, c)
		return ""
	}
	t.Run("vanished member", func(t *testing.T) {
		e := e.in(t)
		ktest.IP(t, "netns", "del", e.prefix+"gone")
		var res struct{ Results []core.Result }
		e.must(200, "POST", "/cen/make", `["trio"]`, &res)
		if res.Results[0].State != graph.StateConfigured {
			t.Fatalf("make with a vanished member: %+v", res)
		}
		if s := stateOf(e, "trio", "gone"); s != graph.StateStopped {
			t.Errorf("vanished member state %q, want stopped", s)
		}
		if s := stateOf(e, "trio", "a"); s != graph.StateRunning {
			t.Errorf("member a state %q, want running", s)
		}
		e.check() // a bridge with the two ports that run
		var v core.ContainerView
		e.must(200, "GET", "/host/host1/a", "", &v)
		if len(v.Interfaces) != 1 || v.Interfaces[0].CEN != "trio" {
			t.Errorf("a's interfaces: %+v", v.Interfaces)
		}
	})
	t.Run("back again", func(t *testing.T) {
		e := e.in(t)
		ktest.IP(t, "netns", "add", e.prefix+"gone")
		e.must(200, "POST", "/cen/make", `["trio"]`, nil)
		if s := stateOf(e, "trio", "gone"); s != graph.StateRunning {
			t.Errorf("returned member state %q, want running", s)
		}
		e.check()
	})
	t.Run("failed remake", func(t *testing.T) {
		e := e.in(t)
		// b's end replaced by a foreign interface of the same name: the
		// make fails, and then nothing of trio is left anywhere.
		ktest.IP(t, "-n", e.prefix+"b", "link", "del", "trio")
		ktest.IP(t, "-n", e.prefix+"b", "link", "add", "trio", "type", "bridge")
		if s, b := e.do("POST", "/cen/make", `["trio"]`); s != http.StatusConflict || !strings.Contains(b, "member b") {
			t.Fatalf("make: %d %s; want 409 naming member b", s, b)
		}
		var c core.CENView
		e.must(200, "GET", "/cen/trio", "", &c)
		if c.State != graph.StateFailed {
			t.Fatalf("state %q, want failed", c.State)
		}
		e.check() // no bridge, no port, no end in a or gone
		if l := ktest.Links(t, e.ns("b"))["trio"]; l.Kind != "bridge" {
			t.Errorf("foreign interface changed: %+v", l)
		}
	})
	t.Run("made as a wire after", func(t *testing.T) {
		e := e.in(t)
		e.must(200, "DELETE", "/host/host1/b/trio", "", nil)
		e.must(200, "POST", "/cen/make", `["trio"]`, nil)
		var c core.CENView
		e.must(200, "GET", "/cen/trio", "", &c)
		if c.Wiring == nil || *c.Wiring != "wire" {
			t.Fatalf("wiring %v, want wire", c.Wiring)
		}
		e.check() // no bridge left in the fabric
	})
}

// Every list takes IM's filter: a regular expression over the IDs.
func TestListFilter(t *testing.T) {
	e := newEnv(t, Options{})
	e.must(200, "POST", "/cen/import", `{"cenList":[{"cenID":"lab-a","containerIDs":["web1","web2"]},{"cenID":"lab-b","containerIDs":["db1"]},{"cenID":"core","containerIDs":[]}]}`, nil)
	e.must(200, "POST", "/cin/import", `{"cin-lab":["lab-a"],"other":["lab-b"]}`, nil)
	ids := func(e *env, path string) []string {
		var vs []map[string]any
		e.must(200, "GET", path, "", &vs)
		var out []string
		for _, v := range vs {
			for _, k := range []string{"cenID", "cinID", "containerID"} {
				if id, ok := v[k].(string); ok {
					out = append(out, id)
					break
				}
			}
		}
		return out
	}
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"/cen?filter=^lab-", []string{"lab-a", "lab-b"}},
		{"/cen?filter=b$", []string{"lab-b"}},
		{"/cen?filter=", []string{"core", "lab-a", "lab-b"}},
		{"/cen?filter=nomatch", nil},
		{"/cin?filter=lab", []string{"cin-lab"}},
		{"/host/host1?filter=^web[0-9]$", []string{"web1", "web2"}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			if got := ids(e.in(t), tc.path); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	if s, b := e.do("GET", "/cen?filter=(", ""); s != 400 || !strings.Contains(b, "filter") {
		t.Errorf("bad filter: %d %s", s, b)
	}
}

// A fabric handed over: export, wipe the state, import, make: the same
// interface names, MACs and addresses.
func TestExportImportRoundTrip(t *testing.T) {
	e := newEnv(t, Options{})
	ktest.IP(t, "netns", "add", e.prefix+"named1")
	e.must(200, "POST", "/cen/import", `{"cenList":[{"cenID":"cen1","containerIDs":["c1","c2","named1"]},{"cenID":"cen2","containerIDs":["c3","c4"]},{"cenID":"a-rather-long-cen-name","containerIDs":["c1","c4","c5"]}]}`, nil)
	e.must(200, "PUT", "/host/host1/c5", `{"tag":"web"}`, nil)
	e.must(200, "POST", "/cin/import", `{"cin1":["cen1","a-rather-long-cen-name"],"cin2":["cen2"]}`, nil)
	e.must(200, "POST", "/cen/make", `["cen1","cen2","a-rather-long-cen-name"]`, nil)
	e.must(200, "POST", "/cin/make", `["cin1","cin2"]`, nil)
	e.must(200, "PUT", "/host/host1/c2/cen1/link", `{"delay_ms":5}`, nil)
	// An address freed and given again: not the lowest-free plan any more.
	e.must(200, "DELETE", "/host/host1/c1/cen1", "", nil)
	e.must(200, "PUT", "/host/host1/c1/cen1", "", nil)
	views := func() map[string]core.ContainerView {
		var vs []core.ContainerView
		e.must(200, "GET", "/host/host1", "", &vs)
		out := map[string]core.ContainerView{}
		for _, v := range vs {
			out[v.ID] = v
		}
		return out
	}
	before := views()
	_, doc := e.do("GET", "/export", "")
	var x core.Export
	if err := json.Unmarshal([]byte(doc), &x); err != nil || len(x.CENs) != 3 || len(x.CINs) != 2 || len(x.Containers) != 6 {
		t.Fatalf("export: %v %s", err, doc)
	}
	e.must(409, "POST", "/import", doc, nil) // not empty

	// Wipe: the kernel emptied, then the state dir.
	e.must(200, "POST", "/cin/destroy", `["cin1","cin2"]`, nil)
	e.must(200, "POST", "/cen/destroy", `["cen1","cen2","a-rather-long-cen-name"]`, nil)
	for _, c := range []string{"c1", "c2", "c3", "c4", "c5", "named1"} {
		e.must(204, "DELETE", "/host/host1/"+c, "", nil)
	}
	e.stop()
	e.wipeStore()
	e.start()

	var res core.ImportResult
	e.must(201, "POST", "/import", doc, &res)
	if res.CENs != 3 || res.CINs != 2 || res.Containers != 6 {
		t.Fatalf("import: %+v", res)
	}
	e.must(200, "POST", "/cen/make", `["cen1","cen2","a-rather-long-cen-name"]`, nil)
	e.must(200, "POST", "/cin/make", `["cin1","cin2"]`, nil)
	after := views()
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("containers after the round trip (-before +after):\n%s", diff)
	}
	for _, v := range after {
		for _, i := range v.Interfaces {
			if l := ktest.Links(t, v.Netns)[i.Name]; l.MAC != i.MAC {
				t.Errorf("%s %s: kernel MAC %s, API %s", v.ID, i.Name, l.MAC, i.MAC)
			}
			if i.IP != nil && ifAddr(t, v.Netns, i.Name) != *i.IP {
				t.Errorf("%s %s: kernel address %q, API %s", v.ID, i.Name, ifAddr(t, v.Netns, i.Name), *i.IP)
			}
		}
	}
	var l core.LinkView
	e.must(200, "GET", "/host/host1/c2/cen1/link", "", &l)
	if l.DelayMs != 5 || !l.Relayed {
		t.Errorf("link settings after the round trip: %+v", l)
	}
	e.check()

	for _, bad := range []string{
		`{}`,
		`{"format":"leviathan-export","version":9}`,
		strings.Replace(doc, `"containerID"`, `"x"`, 1),
		strings.Replace(doc, `"cen2"`, `"-bad"`, 1),
	} {
		if s, b := e.do("POST", "/import", bad); s != 400 && s != 409 {
			t.Errorf("import of a bad document: %d %s", s, b)
		}
	}
}

// Every object has an operation log: what was done, when, and what
// failed; it is kept in the store.
func TestOperationLog(t *testing.T) {
	e := newEnv(t, Options{})
	e.must(200, "POST", "/cen/import", `{"cenList":[{"cenID":"lg","containerIDs":["a","b","c"]}]}`, nil)
	e.must(200, "PUT", "/host/host1/c", "", nil)
	ktest.IP(t, "-n", e.prefix+"c", "link", "add", "lg", "type", "bridge") // a foreign interface: the make fails
	e.do("POST", "/cen/make", `["lg"]`)
	ktest.IP(t, "-n", e.prefix+"c", "link", "del", "lg")
	e.must(200, "POST", "/cen/make", `["lg"]`, nil)
	e.must(200, "PUT", "/host/host1/d/lg", "", nil)
	logOf := func(path string) []core.LogEntry {
		var l []core.LogEntry
		e.must(200, "GET", path, "", &l)
		return l
	}
	actions := func(l []core.LogEntry) []string {
		var out []string
		for _, x := range l {
			out = append(out, x.Action)
		}
		return out
	}
	check := func(t *testing.T) {
		l := logOf("/cen/lg/log")
		if got := actions(l); !slices.Equal(got, []string{"cen.failed", "cen.made", "container.joined"}) {
			t.Errorf("CEN log actions %v", got)
		}
		if len(l) > 0 && (l[0].State != "failed" || !strings.Contains(l[0].Error, "member c")) {
			t.Errorf("the failure's entry: %+v", l[0])
		}
		if got := actions(logOf("/host/host1/d/log")); !slices.Equal(got, []string{"container.joined"}) {
			t.Errorf("container log actions %v", got)
		}
	}
	t.Run("as it happens", check)
	time.Sleep(time.Second) // past the flush
	e.restart()
	t.Run("after a restart", check)
	if l := logOf("/cen/nosuch/log"); len(l) != 0 {
		t.Errorf("log of an unknown CEN: %+v", l)
	}
	e.must(400, "GET", "/cen/-bad/log", "", nil)
}
