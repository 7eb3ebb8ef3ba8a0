package rest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/cpool"
	"github.com/leviathan-net/leviathan/cpool/dockerrt"
	"github.com/leviathan-net/leviathan/cpool/dockerrt/dtest"
	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/internal/ktest"
)

// dockerEnv is an env with Docker as a runtime and CPools served, the
// test image, and the prefix of every Docker container the test makes
// (removed when it ends).
func dockerEnv(t *testing.T) (e *env, image, name string) {
	t.Helper()
	ktest.NeedRoot(t)
	eng := dtest.Engine(t)
	image = dtest.Image(t, eng)
	name = dtest.Name(t)
	return newEnvWith(t, Options{}, eng), image, name
}

// docker runs the Docker command line against the test's engine, as a
// user would.
func docker(t *testing.T, args ...string) string {
	t.Helper()
	bin := "/usr/bin/docker" // Debian's, of the engine's own version
	if _, err := os.Stat(bin); err != nil {
		bin = "docker"
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// eventually retries check until it returns "" or the deadline passes,
// then fails with its last word.
func eventually(t *testing.T, within time.Duration, check func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		why := check()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", within, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ifAddr is the IPv4 address with length on interface ifname in the
// namespace at ns, "" when there is none.
func ifAddr(t *testing.T, ns, ifname string) string {
	t.Helper()
	out, err := exec.Command("nsenter", "--net="+ns, "ip", "-4", "-o", "addr", "show", "dev", ifname).CombinedOutput()
	if err != nil {
		return ""
	}
	f := strings.Fields(string(out))
	for i, w := range f {
		if w == "inet" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

func (e *env) container(id string) core.ContainerView {
	e.t.Helper()
	var v core.ContainerView
	e.must(200, "GET", "/host/host1/"+id, "", &v)
	return v
}

func stripLen(a string) string { return strings.Split(a, "/")[0] }

// A Docker container is a CEN member like a namespace: wired in the
// namespace of its running process, unwired when it stops, rewired with
// the same name, MAC and address when it starts again; one that does not
// run yet fails nothing and is wired when it starts.
func TestDockerMembers(t *testing.T) {
	e, image, name := dockerEnv(t)
	eng := dtest.Engine(t)
	ctx := context.Background()
	a, b := name+"a", name+"b"
	if _, err := eng.Run(ctx, dockerrt.RunSpec{Name: a, Image: image}); err != nil {
		t.Fatal(err)
	}
	bc, err := eng.Run(ctx, dockerrt.RunSpec{Name: b, Image: image})
	if err != nil {
		t.Fatal(err)
	}
	docker(t, "stop", "-t", "0", b)

	// b by a 12-digit ID prefix, a by name.
	bRef := bc.ID[:12]
	e.must(200, "POST", "/cen/import", fmt.Sprintf(`{"cenList":[{"cenID":"dk","containerIDs":[%q,%q,"n1"]}]}`, a, bRef), nil)
	e.must(200, "POST", "/cin/import", `{"cind":["dk"]}`, nil)
	e.must(200, "POST", "/cen/make", `["dk"]`, nil)
	e.must(200, "POST", "/cin/make", `["cind"]`, nil)

	t.Run("running member wired", func(t *testing.T) {
		e := e.in(t)
		v := e.container(a)
		if v.Runtime != graph.RuntimeDocker || v.State != graph.StateRunning || !strings.HasPrefix(v.Netns, "/proc/") {
			t.Fatalf("GET %s: %+v", a, v)
		}
		if len(v.Interfaces) != 1 || v.Interfaces[0].IP == nil {
			t.Fatalf("interfaces: %+v", v.Interfaces)
		}
		if got := ifAddr(t, v.Netns, "dk"); got != *v.Interfaces[0].IP {
			t.Errorf("kernel says %q, API says %q", got, *v.Interfaces[0].IP)
		}
		if !ktest.Ping(t, e.ns("n1"), stripLen(*v.Interfaces[0].IP)) {
			t.Error("n1 does not reach the Docker member")
		}
	})
	t.Run("not running yet, then started", func(t *testing.T) {
		e := e.in(t)
		var c core.CENView
		e.must(200, "GET", "/cen/dk", "", &c)
		if c.State != graph.StateUnconfigured || c.Each[1].State != graph.StateStopped {
			t.Fatalf("CEN with a stopped member: %+v", c)
		}
		docker(t, "start", b)
		eventually(t, 10*time.Second, func() string {
			v := e.container(bRef)
			if v.State != graph.StateRunning || len(v.Interfaces) != 1 || v.Interfaces[0].IP == nil {
				return fmt.Sprintf("%s not wired: %+v", b, v)
			}
			if ifAddr(t, v.Netns, "dk") == "" {
				return "no address in its namespace yet"
			}
			return ""
		})
		v := e.container(bRef)
		if !ktest.Ping(t, e.ns("n1"), stripLen(*v.Interfaces[0].IP)) {
			t.Error("n1 does not reach the started member")
		}
	})
	t.Run("stop leaves, start rejoins the same", func(t *testing.T) {
		e := e.in(t)
		before := e.container(a)
		w := e.monitor()
		w.t = t
		w.send(`{"type":"start","sequence":"1","monitor":"CIN","parameters":{"cinID":"cind"}}`)
		if m := w.recvMsg(); len(m.Response.State) != 3 {
			t.Fatalf("monitor state: %+v", m)
		}
		docker(t, "stop", "-t", "0", a)
		if m := w.recvMsg(); m.Event != "delete" || len(m.Message) != 1 || m.Message[0].Container != a {
			t.Fatalf("after docker stop: %+v", m)
		}
		if v := e.container(a); v.State != graph.StateStopped {
			t.Errorf("stopped member: %+v", v)
		}
		e.check2(t, "dk", 2)
		docker(t, "start", a)
		if m := w.recvMsg(); m.Event != "create" || len(m.Message) != 1 || m.Message[0].Container != a || m.Message[0].IP != stripLen(*before.Interfaces[0].IP) {
			t.Fatalf("after docker start: %+v", m)
		}
		after := e.container(a)
		if after.Netns == before.Netns {
			t.Errorf("netns %s unchanged across a restart", after.Netns)
		}
		if *after.Interfaces[0].IP != *before.Interfaces[0].IP || after.Interfaces[0].MAC != before.Interfaces[0].MAC || after.Interfaces[0].Name != before.Interfaces[0].Name {
			t.Errorf("rejoined as %+v, was %+v", after.Interfaces[0], before.Interfaces[0])
		}
		if l := ktest.Links(t, after.Netns)["dk"]; l.MAC != before.Interfaces[0].MAC {
			t.Errorf("kernel MAC %s, want %s", l.MAC, before.Interfaces[0].MAC)
		}
		if !ktest.Ping(t, e.ns("n1"), stripLen(*after.Interfaces[0].IP)) {
			t.Error("n1 does not reach the restarted member")
		}
		e.check2(t, "dk", 3)
	})
}

// On a wire (two members, one veth pair), a member that stops takes the
// pair with it: the other end loses its link and address too, and both
// come back when it starts.
func TestDockerMemberOnAWire(t *testing.T) {
	e, image, name := dockerEnv(t)
	eng := dtest.Engine(t)
	a := name + "a"
	if _, err := eng.Run(context.Background(), dockerrt.RunSpec{Name: a, Image: image}); err != nil {
		t.Fatal(err)
	}
	e.must(200, "POST", "/cen/import", fmt.Sprintf(`{"cenList":[{"cenID":"dw","containerIDs":[%q,"n2"]}]}`, a), nil)
	e.must(200, "POST", "/cin/import", `{"cinw":["dw"]}`, nil)
	e.must(200, "POST", "/cen/make", `["dw"]`, nil)
	e.must(200, "POST", "/cin/make", `["cinw"]`, nil)
	before := e.container(a)
	if !ktest.Ping(t, e.ns("n2"), stripLen(*before.Interfaces[0].IP)) {
		t.Fatal("n2 does not reach a over the wire")
	}
	docker(t, "stop", "-t", "0", a)
	eventually(t, 10*time.Second, func() string {
		v := e.container(a)
		if v.State != graph.StateStopped || !strings.Contains(v.Error, "exited with code") {
			return fmt.Sprintf("stopped member: %+v", v)
		}
		return ""
	})
	if ifAddr(t, e.ns("n2"), "dw") != "" {
		t.Error("n2 still has an address on a wire whose other end is gone")
	}
	docker(t, "start", a)
	eventually(t, 10*time.Second, func() string {
		v := e.container(a)
		if v.State != graph.StateRunning || ifAddr(t, v.Netns, "dw") != *before.Interfaces[0].IP {
			return fmt.Sprintf("not back: %+v", v)
		}
		return ""
	})
	if !ktest.Ping(t, e.ns("n2"), stripLen(*before.Interfaces[0].IP)) {
		t.Error("n2 does not reach a after it started again")
	}
	e.check()
}

// check2 checks that the fabric bridge of a CEN has n ports.
func (e *env) check2(t *testing.T, cenID string, n int) {
	t.Helper()
	ports := 0
	for _, l := range ktest.Links(t, e.fab.Path()) {
		if l.Master == cenID {
			ports++
		}
	}
	if ports != n {
		t.Errorf("bridge %s has %d ports, want %d", cenID, ports, n)
	}
}

func (e *env) pool(id string) cpool.View {
	e.t.Helper()
	var v cpool.View
	e.must(200, "GET", "/cpool/"+id, "", &v)
	return v
}

// The README's CPool, as a user would run it: pools launched, wired,
// addressed with a default route, kept at size, scaled and deleted.
func TestCPool(t *testing.T) {
	e, image, name := dockerEnv(t)
	eng := dtest.Engine(t)
	ctx := context.Background()
	e.must(200, "POST", "/cen/import", `{"cenList":[{"cenID":"cen1","containerIDs":["n1","n2"]},{"cenID":"cen2","containerIDs":["n3"]}]}`, nil)
	e.must(200, "POST", "/cin/import", `{"cin1":["cen1"]}`, nil)
	e.must(200, "POST", "/cen/make", `["cen1","cen2"]`, nil)
	e.must(200, "POST", "/cin/make", `["cin1"]`, nil)
	p1 := name + "pool1"
	file := fmt.Sprintf(`{"cpoolList":[{"cpoolID":%q,"type":%q,"start_with":3,"cins":[{"cinID":"cin1","default_route":"true"},{"cinID":"cen2"}]}]}`, p1, image)
	var created struct{ CPools []cpool.View }
	e.must(201, "POST", "/cpool", file, &created)
	if len(created.CPools) != 1 || created.CPools[0].State != graph.StateConfigured || len(created.CPools[0].Members) != 3 {
		t.Fatalf("created: %+v", created)
	}

	addrOf := func(e *env, id string) (ns, ip string) {
		e.t.Helper()
		v := e.container(id)
		for _, i := range v.Interfaces {
			if i.CEN == "cen1" && i.IP != nil {
				return v.Netns, *i.IP
			}
		}
		e.t.Fatalf("%s has no address on cen1: %+v", id, v)
		return "", ""
	}
	t.Run("wired with a default route", func(t *testing.T) {
		e := e.in(t)
		for _, m := range e.pool(p1).Members {
			v := e.container(m)
			if v.Tag == nil || *v.Tag != p1 || len(v.Interfaces) != 2 {
				t.Fatalf("%s: %+v", m, v)
			}
			ns, ip := addrOf(e, m)
			if got := ifAddr(t, ns, "cen1"); got != ip {
				t.Errorf("%s: kernel %q, API %q", m, got, ip)
			}
			out, err := exec.Command("nsenter", "--net="+ns, "ip", "-4", "route", "show", "default").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "via 10.10.0.1 dev cen1") {
				t.Errorf("%s: default route %q (%v), want via the cin1 gateway", m, out, err)
			}
			if !ktest.Ping(t, ns, "10.10.0.10") || !ktest.Ping(t, e.ns("n1"), stripLen(ip)) {
				t.Errorf("%s and n1 do not reach each other", m)
			}
		}
	})
	t.Run("in the topology", func(t *testing.T) {
		e := e.in(t)
		var topo core.Topology
		e.must(200, "GET", "/topology", "", &topo)
		pools, members := 0, 0
		for _, n := range topo.Nodes {
			if n.Kind == core.NodeCPool && n.ID == core.NodeID(core.NodeCPool, p1) && n.Image == image {
				pools++
			}
			if n.Kind == core.NodeContainer && n.CPool == p1 {
				members++
			}
		}
		if pools != 1 || members != 3 {
			t.Errorf("topology: %d pool nodes, %d members, want 1 and 3", pools, members)
		}
	})
	t.Run("tag watches a pool", func(t *testing.T) {
		e := e.in(t)
		w := e.monitor()
		w.t = t
		w.send(fmt.Sprintf(`{"type":"start","sequence":"1","monitor":"CIN","parameters":{"cinID":"cin1","container_tag":%q}}`, p1))
		if m := w.recvMsg(); len(m.Response.State) != 3 {
			t.Fatalf("tagged state: %+v", m)
		}
	})
	t.Run("killed member comes back with its address", func(t *testing.T) {
		e := e.in(t)
		m := p1 + "-1"
		_, ip := addrOf(e, m)
		docker(t, "kill", m)
		eventually(t, 15*time.Second, func() string {
			v := e.container(m)
			if v.State != graph.StateRunning || ifAddr(t, v.Netns, "cen1") != ip {
				return fmt.Sprintf("%s not back: %+v", m, v)
			}
			return ""
		})
		ns, _ := addrOf(e, m)
		if !ktest.Ping(t, ns, "10.10.0.10") {
			t.Error("the restarted member does not reach n1")
		}
	})
	t.Run("removed member replaced", func(t *testing.T) {
		e := e.in(t)
		docker(t, "rm", "-f", p1+"-2")
		eventually(t, 15*time.Second, func() string {
			v := e.pool(p1)
			if v.State != graph.StateConfigured || len(v.Members) != 3 || v.Members[1] == p1+"-2" {
				return fmt.Sprintf("pool not replaced: %+v", v)
			}
			return ""
		})
		if _, err := e.svc.GetContainer(ctx, "host1", p1+"-2"); err == nil {
			t.Error("the removed container is still a leviathan member")
		}
	})
	t.Run("scale up and down", func(t *testing.T) {
		e := e.in(t)
		var v cpool.View
		e.must(200, "PUT", "/cpool/"+p1, `{"start_with":5}`, &v)
		if v.State != graph.StateConfigured || len(v.Members) != 5 {
			t.Fatalf("scaled up: %+v", v)
		}
		e.must(200, "PUT", "/cpool/"+p1, `{"start_with":1}`, &v)
		if len(v.Members) != 1 {
			t.Fatalf("scaled down: %+v", v)
		}
		cs, err := eng.List(ctx, cpool.LabelPool, p1)
		if err != nil || len(cs) != 1 {
			t.Fatalf("Docker holds %d of the pool's containers (%v), want 1", len(cs), err)
		}
		var c core.CENView
		e.must(200, "GET", "/cen/cen1", "", &c)
		if len(c.Members) != 3 {
			t.Errorf("cen1 members after scaling down: %v", c.Members)
		}
	})
	t.Run("delete", func(t *testing.T) {
		e := e.in(t)
		e.must(204, "DELETE", "/cpool/"+p1, "", nil)
		e.must(404, "GET", "/cpool/"+p1, "", nil)
		if cs, err := eng.List(ctx, cpool.LabelPool, p1); err != nil || len(cs) != 0 {
			t.Errorf("Docker still holds %d of its containers (%v)", len(cs), err)
		}
		var c core.CENView
		e.must(200, "GET", "/cen/cen1", "", &c)
		if len(c.Members) != 2 {
			t.Errorf("cen1 members after DELETE: %v", c.Members)
		}
		e.check()
	})
	t.Run("async", func(t *testing.T) {
		e := e.in(t)
		p2 := name + "pool2"
		var j core.Job
		e.must(202, "POST", "/cpool?async=true", fmt.Sprintf(`{"cpoolList":[{"cpoolID":%q,"type":%q,"start_with":2,"cins":[{"cinID":"cen1"}]}]}`, p2, image), &j)
		eventually(t, 30*time.Second, func() string {
			e.must(200, "GET", "/jobs/"+j.ID, "", &j)
			if j.State != core.JobDone || len(j.Results) != 1 || j.Results[0].CPool != p2 || j.Results[0].State != graph.StateConfigured {
				return fmt.Sprintf("job: %+v", j)
			}
			return ""
		})
		e.must(204, "DELETE", "/cpool/"+p2, "", nil)
	})
}

// Bad CPool files are refused whole, and what cannot work says why.
func TestCPoolErrors(t *testing.T) {
	e, image, name := dockerEnv(t)
	eng := dtest.Engine(t)
	e.must(200, "POST", "/cen/import", `{"cenList":[{"cenID":"cen1","containerIDs":["n1","n2"]}]}`, nil)
	p := name + "p"
	pool := func(body string) string { return `{"cpoolList":[` + body + `]}` }
	ok := fmt.Sprintf(`{"cpoolID":%q,"type":%q,"start_with":1,"cins":[{"cinID":"cen1"}]}`, p, image)
	for _, tc := range []struct {
		name, body string
		status     int
	}{
		{"not JSON", `{`, 400},
		{"no list", `{}`, 400},
		{"no cpoolID", pool(fmt.Sprintf(`{"type":%q,"start_with":1,"cins":[]}`, image)), 400},
		{"no type", pool(fmt.Sprintf(`{"cpoolID":%q,"start_with":1,"cins":[]}`, p)), 400},
		{"no start_with", pool(fmt.Sprintf(`{"cpoolID":%q,"type":%q,"cins":[]}`, p, image)), 400},
		{"negative", pool(fmt.Sprintf(`{"cpoolID":%q,"type":%q,"start_with":-1,"cins":[]}`, p, image)), 400},
		{"huge", pool(fmt.Sprintf(`{"cpoolID":%q,"type":%q,"start_with":100000,"cins":[]}`, p, image)), 400},
		{"fraction", pool(fmt.Sprintf(`{"cpoolID":%q,"type":%q,"start_with":1.5,"cins":[]}`, p, image)), 400},
		{"bad ID", pool(fmt.Sprintf(`{"cpoolID":"-x","type":%q,"start_with":1,"cins":[]}`, image)), 400},
		{"bad default_route", pool(fmt.Sprintf(`{"cpoolID":%q,"type":%q,"start_with":1,"cins":[{"cinID":"cen1","default_route":"yes"}]}`, p, image)), 400},
		{"twice", pool(ok + "," + ok), 400},
		{"unknown CIN or CEN", pool(fmt.Sprintf(`{"cpoolID":%q,"type":%q,"start_with":1,"cins":[{"cinID":"nope"}]}`, p, image)), 404},
		{"no such image", pool(fmt.Sprintf(`{"cpoolID":%q,"type":"leviathan-test/absent:1","start_with":1,"cins":[]}`, p)), 409},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := e.in(t)
			status, body := e.do("POST", "/cpool", tc.body)
			if status != tc.status || !strings.Contains(body, `"message"`) {
				t.Errorf("%d %s, want %d with a message", status, body, tc.status)
			}
		})
	}
	var pools []cpool.View
	e.must(200, "GET", "/cpool", "", &pools)
	if len(pools) != 0 {
		t.Errorf("bad files created pools: %+v", pools)
	}
	if cs, _ := eng.ListNamed(context.Background(), name); len(cs) != 0 {
		t.Errorf("bad files launched containers: %d", len(cs))
	}
	e.must(201, "POST", "/cpool", pool(ok), nil)
	e.must(409, "POST", "/cpool", pool(ok), nil) // exists
	e.must(400, "PUT", "/cpool/"+p, `{"start_with":-3}`, nil)
	e.must(404, "PUT", "/cpool/"+name+"none", `{"start_with":1}`, nil)
	e.must(204, "DELETE", "/cpool/"+p, "", nil)

	t.Run("container that exits at once", func(t *testing.T) {
		e := e.in(t)
		img := name + "crash:1"
		rootfs, err := dtest.BusyboxRootfs()
		if err != nil {
			t.Fatal(err)
		}
		if err := eng.ImportImage(context.Background(), img, strings.NewReader(string(rootfs)), `CMD ["/bin/sh","-c","echo boom >&2; exit 3"]`); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { docker(t, "rmi", "-f", img) })
		crash := name + "crash"
		status, body := e.do("POST", "/cpool", pool(fmt.Sprintf(`{"cpoolID":%q,"type":%q,"start_with":2,"cins":[{"cinID":"cen1"}]}`, crash, img)))
		if status/100 == 2 || !strings.Contains(body, "code 3") || !strings.Contains(body, "boom") {
			t.Fatalf("POST: %d %s; want an error with the exit code and the last lines", status, body)
		}
		v := e.pool(crash)
		if v.State != graph.StateFailed || !strings.Contains(v.Error, "code 3") {
			t.Fatalf("pool: %+v", v)
		}
		// Tried again with backoff (1 s, 2 s, ...), not in a storm.
		time.Sleep(3500 * time.Millisecond)
		v = e.pool(crash)
		var n int
		i := strings.Index(v.Error, "(failure ")
		if i < 0 {
			t.Fatalf("pool error %q counts no failure", v.Error)
		}
		if _, err := fmt.Sscanf(v.Error[i:], "(failure %d;", &n); err != nil || n < 2 || n > 4 {
			t.Errorf("after 3.5 s: %q; want failure 2 to 4", v.Error)
		}
		e.must(204, "DELETE", "/cpool/"+crash, "", nil)
	})
}

// After a restart, even after kill -9, pools and Docker members are found
// again by their labels: nothing is launched twice, and a container that
// restarted while leviathan was down is wired in its new namespace.
func TestCPoolRestart(t *testing.T) {
	e, image, name := dockerEnv(t)
	eng := dtest.Engine(t)
	e.must(200, "POST", "/cen/import", `{"cenList":[{"cenID":"cen1","containerIDs":["n1","n2"]}]}`, nil)
	e.must(200, "POST", "/cin/import", `{"cin1":["cen1"]}`, nil)
	e.must(200, "POST", "/cen/make", `["cen1"]`, nil)
	e.must(200, "POST", "/cin/make", `["cin1"]`, nil)
	p := name + "p"
	e.must(201, "POST", "/cpool", fmt.Sprintf(`{"cpoolList":[{"cpoolID":%q,"type":%q,"start_with":2,"cins":[{"cinID":"cin1"}]}]}`, p, image), nil)
	before := e.container(p + "-1")

	e.stop() // a crash
	docker(t, "restart", "-t", "0", p+"-1")
	e.start()

	eventually(t, 10*time.Second, func() string {
		v := e.container(p + "-1")
		if v.State != graph.StateRunning || v.Netns == before.Netns || ifAddr(t, v.Netns, "cen1") != *before.Interfaces[0].IP {
			return fmt.Sprintf("not rewired: %+v", v)
		}
		return ""
	})
	cs, err := eng.List(context.Background(), cpool.LabelPool, p)
	if err != nil || len(cs) != 2 {
		t.Fatalf("after the restart Docker holds %d of the pool's containers (%v), want 2", len(cs), err)
	}
	eventually(t, 10*time.Second, func() string {
		if v := e.pool(p); v.State != graph.StateConfigured || len(v.Members) != 2 {
			return fmt.Sprintf("pool after restart: %+v", v)
		}
		return ""
	})
	if !ktest.Ping(t, e.ns("n1"), stripLen(*before.Interfaces[0].IP)) {
		t.Error("n1 does not reach the rewired member")
	}
}

// Without a Docker engine, pools answer 503 and say why; everything else
// works.
func TestCPoolWithoutDocker(t *testing.T) {
	e := newEnv(t, Options{})
	status, body := e.do("POST", "/cpool", `{"cpoolList":[{"cpoolID":"p","type":"busybox","start_with":1,"cins":[]}]}`)
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "Docker") {
		t.Errorf("POST /cpool: %d %s, want 503 naming Docker", status, body)
	}
	e.must(503, "GET", "/cpool", "", nil)

	// An engine that does not answer is found out fast.
	t.Setenv("DOCKER_HOST", "unix://"+t.TempDir()+"/none.sock")
	start := time.Now()
	_, err := dockerrt.Open(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "unavailable") || time.Since(start) > 5*time.Second {
		t.Errorf("Open against no engine: %v after %s", err, time.Since(start))
	}
}
