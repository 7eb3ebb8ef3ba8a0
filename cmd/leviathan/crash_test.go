package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/cpool"
	"github.com/leviathan-net/leviathan/cpool/dockerrt"
	"github.com/leviathan-net/leviathan/cpool/dockerrt/dtest"
	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/internal/ktest"
	"github.com/leviathan-net/leviathan/netfab"
)

var crashSeed = flag.Uint64("crash-seed", 0, "seed of the crash tests' kill delays and samples; 0 picks one (the test logs it)")

const (
	// crashKills is how many times TestCrashLoop kills the daemon (5 under -short).
	crashKills = 30
	// maxKillDelay bounds the time between starting an operation and the
	// kill.
	maxKillDelay = 300 * time.Millisecond
)

// crashLab is the desired state of TestCrashLoop: 5 bridge CENs of 20
// members, a wire CEN between two of their members, and two CINs over
// them, one of them with a container on two of its CENs.
type crashLab struct {
	cens    []string            // in order
	members map[string][]string // by CEN
	cins    map[string][]string // CENs by CIN
}

func newCrashLab() crashLab {
	l := crashLab{members: map[string][]string{}, cins: map[string][]string{
		"n0": {"c0", "c1", "c2"},
		"n1": {"c3", "c4", "w"},
	}}
	for k := range 5 {
		id := fmt.Sprintf("c%d", k)
		l.cens = append(l.cens, id)
		for j := range 20 {
			l.members[id] = append(l.members[id], fmt.Sprintf("k%dm%02d", k, j))
		}
	}
	l.cens = append(l.cens, "w")
	l.members["w"] = []string{"k3m00", "k4m00"}
	return l
}

func (l crashLab) cenFile() string {
	var f struct {
		List []map[string]any `json:"cenList"`
	}
	for _, id := range l.cens {
		f.List = append(f.List, map[string]any{"cenID": id, "containerIDs": l.members[id]})
	}
	b, _ := json.Marshal(f)
	return string(b)
}

func (l crashLab) cinFile() string {
	b, _ := json.Marshal(l.cins)
	return string(b)
}

func (l crashLab) cenIDs() string { b, _ := json.Marshal(l.cens); return string(b) }
func (l crashLab) cinIDs() string {
	b, _ := json.Marshal(slices.Sorted(maps.Keys(l.cins)))
	return string(b)
}

// crashRig drives the real daemon through kills and restarts.
type crashRig struct {
	t      *testing.T
	d      *proc
	fabric string // the fabric namespace's name
	lab    crashLab
}

// try sends a request and reports a transport error instead of failing:
// the daemon may be killed under it.
func (r *crashRig) try(method, path, body string) (int, []byte, error) {
	req, err := http.NewRequest(method, "http://leviathan"+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	resp, err := r.d.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// must sends a request that must answer one of the statuses in want
// (200 when empty), and decodes the body into out when out is not nil.
func (r *crashRig) must(method, path, body string, out any, want ...int) {
	r.t.Helper()
	if len(want) == 0 {
		want = []int{200}
	}
	s, b, err := r.try(method, path, body)
	if err != nil {
		r.t.Fatalf("%s %s: %v", method, path, err)
	}
	if !slices.Contains(want, s) {
		r.t.Fatalf("%s %s: %d, want %v: %s\ndaemon log:\n%s", method, path, s, want, b, r.d.log)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			r.t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
}

// kill sends SIGKILL to the daemon and reaps it.
func (r *crashRig) kill() {
	r.d.cmd.Process.Signal(syscall.SIGKILL)
	r.d.cmd.Wait()
	r.d.client.Transport.(*http.Transport).CloseIdleConnections()
}

// crashOp is one operation the daemon is killed in.
type crashOp struct {
	name string
	// prepare brings the state the operation starts from.
	prepare func(r *crashRig)
	// run starts the operation; it stops at the first transport error.
	run []func(r *crashRig) error
	// finish does the operation again, to the end, after the restart, and
	// checks its outcome.
	finish func(r *crashRig)
}

// send is a request of an operation, its body made from the lab.
func send(method, path string, body func(crashLab) string) func(r *crashRig) error {
	return func(r *crashRig) error {
		_, _, err := r.try(method, path, body(r.lab))
		return err
	}
}

func crashOps() []crashOp {
	cens := crashLab.cenIDs
	cins := crashLab.cinIDs
	return []crashOp{
		{
			name: "CEN make",
			prepare: func(r *crashRig) {
				r.must("POST", "/cin/destroy", r.lab.cinIDs(), nil)
				r.must("POST", "/cen/destroy", r.lab.cenIDs(), nil)
			},
			run: []func(*crashRig) error{send("POST", "/cen/make?async=true", cens)},
		},
		{
			name:    "CEN destroy",
			prepare: func(r *crashRig) { r.must("POST", "/cin/destroy", r.lab.cinIDs(), nil) },
			run:     []func(*crashRig) error{send("POST", "/cen/destroy?async=true", cens)},
			finish: func(r *crashRig) {
				r.must("POST", "/cen/destroy", r.lab.cenIDs(), nil)
				r.checkDestroyed(true)
			},
		},
		{
			name:    "CIN make",
			prepare: func(r *crashRig) { r.must("POST", "/cin/destroy", r.lab.cinIDs(), nil) },
			run:     []func(*crashRig) error{send("POST", "/cin/make?async=true", cins)},
		},
		{
			name: "CIN destroy",
			run:  []func(*crashRig) error{send("POST", "/cin/destroy?async=true", cins)},
			finish: func(r *crashRig) {
				r.must("POST", "/cin/destroy", r.lab.cinIDs(), nil)
				r.checkDestroyed(false)
			},
		},
		{
			name:    "import and make",
			prepare: (*crashRig).teardown,
			run: []func(*crashRig) error{
				send("POST", "/cen/import", crashLab.cenFile),
				send("POST", "/cin/import", crashLab.cinFile),
				send("POST", "/cen/make?async=true", cens),
			},
			finish: func(r *crashRig) {
				r.must("POST", "/cen/import", r.lab.cenFile(), nil)
				r.must("POST", "/cin/import", r.lab.cinFile(), nil)
			},
		},
		{
			name: "teardown",
			run:  teardownReqs(newCrashLab()),
			finish: func(r *crashRig) {
				r.teardown()
				r.checkNothingLeft()
				r.must("POST", "/cen/import", r.lab.cenFile(), nil)
				r.must("POST", "/cin/import", r.lab.cinFile(), nil)
			},
		},
	}
}

// teardownReqs removes everything as the manual's "Removing everything"
// does: destroy, then delete the containers, the CINs and the CENs.
func teardownReqs(l crashLab) []func(*crashRig) error {
	reqs := []func(*crashRig) error{
		send("POST", "/cin/destroy", crashLab.cinIDs),
		send("POST", "/cen/destroy", crashLab.cenIDs),
	}
	seen := map[string]bool{}
	for _, id := range l.cens {
		for _, m := range l.members[id] {
			if !seen[m] {
				seen[m] = true
				reqs = append(reqs, send("DELETE", "/host/host1/"+m, func(crashLab) string { return "" }))
			}
		}
	}
	for cin := range l.cins {
		reqs = append(reqs, send("DELETE", "/cin/"+cin, func(crashLab) string { return "" }))
	}
	for _, id := range l.cens {
		reqs = append(reqs, send("DELETE", "/cen/"+id, func(crashLab) string { return "" }))
	}
	return reqs
}

// teardown removes whatever the store still holds, every request
// succeeding.
func (r *crashRig) teardown() {
	r.t.Helper()
	var cins []core.CINView
	r.must("GET", "/cin", "", &cins)
	var cens []core.CENView
	r.must("GET", "/cen", "", &cens)
	var ctrs []core.ContainerView
	r.must("GET", "/host/host1", "", &ctrs)
	ids := func(n int, id func(int) string) string {
		var out []string
		for i := range n {
			out = append(out, id(i))
		}
		b, _ := json.Marshal(out)
		return string(b)
	}
	r.must("POST", "/cin/destroy", ids(len(cins), func(i int) string { return cins[i].ID }), nil)
	r.must("POST", "/cen/destroy", ids(len(cens), func(i int) string { return cens[i].ID }), nil)
	for _, c := range ctrs {
		r.must("DELETE", "/host/host1/"+c.ID, "", nil, 204)
	}
	for _, c := range cins {
		r.must("DELETE", "/cin/"+c.ID, "", nil, 204)
	}
	for _, c := range cens {
		r.must("DELETE", "/cen/"+c.ID, "", nil, 204)
	}
}

// TestCrashLoop kills the daemon with SIGKILL at a random point of a
// large CEN make, a CEN destroy, a CIN make, a CIN destroy and a
// teardown, again and again. After each restart, finishing the operation
// must leave exactly what it promises, making everything must rebuild
// exactly what a clean make built, and a teardown must leave nothing of
// leviathan's: no link, address, route, rule, namespace or process.
func TestCrashLoop(t *testing.T) {
	kills := crashKills
	if testing.Short() {
		kills = 5
	}
	seed := seedFor(t)
	d := newDaemon(t, "--listen", "127.0.0.1:0")
	r := &crashRig{t: t, d: d, fabric: d.prefix + "fabric", lab: newCrashLab()}
	start := time.Now()
	took := r.measure()
	r.converge()
	golden := r.snapshot()
	r.checkMade(golden, rand.New(rand.NewPCG(seed, 1<<32)))
	t.Logf("clean runs and check: %s; each operation alone: %v", time.Since(start).Round(time.Millisecond), took)

	ops := crashOps()
	for i := range kills {
		op := ops[i%len(ops)]
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		began := time.Now()
		if op.prepare != nil {
			op.prepare(r)
		}
		// The kill lands anywhere in the operation, or just after it.
		delay := time.Duration(rng.Int64N(int64(min(maxKillDelay, took[op.name]*5/4)) + 1))
		done := make(chan struct{})
		go func() {
			defer close(done)
			for _, req := range op.run {
				if req(r) != nil {
					return
				}
			}
		}()
		time.Sleep(delay)
		r.kill()
		<-done
		killed := time.Now()
		r.d.start()
		restarted := time.Since(killed)
		found := r.census()
		if op.finish != nil {
			op.finish(r)
		}
		r.converge()
		r.checkMade(golden, rng)
		t.Logf("kill %d/%d (seed %d): %s, killed after %s, restart %s, found %s, iteration %s",
			i+1, kills, seed, op.name, delay.Round(time.Millisecond), restarted.Round(time.Millisecond), found, time.Since(began).Round(time.Millisecond))
		if t.Failed() {
			t.Fatalf("daemon log:\n%s", r.d.log)
		}
	}
	r.teardown()
	r.checkNothingLeft()
	t.Logf("%d kills in %s", kills, time.Since(start).Round(time.Millisecond))
}

// measure defines the lab and times each operation, run alone to the
// end, to know when a kill lands in it.
func (r *crashRig) measure() map[string]time.Duration {
	r.t.Helper()
	took := map[string]time.Duration{}
	timed := func(name string, f func()) {
		s := time.Now()
		f()
		took[name] = time.Since(s).Round(time.Millisecond)
	}
	define := func() {
		r.must("POST", "/cen/import", r.lab.cenFile(), nil)
		r.must("POST", "/cin/import", r.lab.cinFile(), nil)
	}
	define()
	timed("CEN make", func() { r.must("POST", "/cen/make", r.lab.cenIDs(), nil) })
	timed("CIN make", func() { r.must("POST", "/cin/make", r.lab.cinIDs(), nil) })
	timed("CIN destroy", func() { r.must("POST", "/cin/destroy", r.lab.cinIDs(), nil) })
	timed("CEN destroy", func() { r.must("POST", "/cen/destroy", r.lab.cenIDs(), nil) })
	r.converge()
	timed("teardown", r.teardown)
	timed("import and make", func() {
		define()
		r.must("POST", "/cen/make", r.lab.cenIDs(), nil)
	})
	return took
}

// census says how far the killed operation got: what the restarted
// daemon found made.
func (r *crashRig) census() string {
	r.t.Helper()
	var cens []core.CENView
	r.must("GET", "/cen", "", &cens)
	var cins []core.CINView
	r.must("GET", "/cin", "", &cins)
	var ctrs []core.ContainerView
	r.must("GET", "/host/host1", "", &ctrs)
	made := func(states []graph.State) int {
		n := 0
		for _, s := range states {
			if s == graph.StateConfigured {
				n++
			}
		}
		return n
	}
	var cs, ns []graph.State
	for _, c := range cens {
		cs = append(cs, c.State)
	}
	for _, c := range cins {
		ns = append(ns, c.State)
	}
	removed := regexp.MustCompile(`msg="reconciled (CENs|CINs)".* leftovers_removed=(\d+)`).FindAllStringSubmatch(r.d.log.String(), -1)
	var left []string
	for _, m := range removed {
		left = append(left, m[2]+" "+m[1])
	}
	return fmt.Sprintf("%d/%d CENs and %d/%d CINs made, %d containers; leftovers removed: %s",
		made(cs), len(cens), made(ns), len(cins), len(ctrs), strings.Join(left, ", "))
}

// seedFor returns -crash-seed, or a fresh seed, and logs it.
func seedFor(t *testing.T) uint64 {
	seed := *crashSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (rerun with -crash-seed %d)", seed, seed)
	return seed
}

// converge makes every CEN, then every CIN.
func (r *crashRig) converge() {
	r.t.Helper()
	r.must("POST", "/cen/make", r.lab.cenIDs(), nil)
	r.must("POST", "/cin/make", r.lab.cinIDs(), nil)
}

// checkMade checks that the kernel holds exactly the desired state, all
// made: what CheckKernel checks of the CENs; every CIN member with
// exactly its API-reported address on its CEN's interface and no other;
// each bridge with exactly its gateway; a few pings inside each CIN; and
// the whole of it (links, addresses, marked routes, rules) equal to what
// the clean make built.
func (r *crashRig) checkMade(golden map[string]nsState, rng *rand.Rand) {
	t := r.t
	t.Helper()
	var cens []core.CENView
	r.must("GET", "/cen", "", &cens)
	var want []ktest.CEN
	bridge := map[string]bool{}
	for _, c := range cens {
		if c.State != graph.StateConfigured {
			t.Errorf("CEN %s: %s %s, want made", c.ID, c.State, c.Error)
		}
		k := ktest.CEN{IfName: c.IfName, Made: true}
		for _, m := range c.Members {
			k.Members = append(k.Members, netfab.NetnsPath(r.d.prefix+m))
		}
		bridge[c.ID] = len(c.Members) >= 3
		want = append(want, k)
	}
	ktest.CheckKernel(t, netfab.NetnsPath(r.fabric), want)

	var cins []core.CINView
	r.must("GET", "/cin", "", &cins)
	now := r.snapshot()
	wantInet := map[string]map[string][]string{} // namespace → link → addresses
	for ns := range now {
		wantInet[ns] = map[string][]string{}
	}
	for _, c := range cins {
		if c.State != graph.StateConfigured {
			t.Errorf("CIN %s: %s %s, want made", c.ID, c.State, c.Error)
		}
		for _, m := range c.Members {
			if m.IP == nil {
				t.Errorf("CIN %s: %s on %s has no address", c.ID, m.Container, m.CEN)
				continue
			}
			ns := r.d.prefix + m.Container
			if wantInet[ns] == nil {
				wantInet[ns] = map[string][]string{}
			}
			wantInet[ns][m.Interface] = append(wantInet[ns][m.Interface], *m.IP)
			if bridge[m.CEN] {
				p := netip.MustParsePrefix(*m.IP)
				gw := netip.PrefixFrom(p.Masked().Addr().Next(), p.Bits()).String()
				if !slices.Contains(wantInet[r.fabric][m.Interface], gw) {
					wantInet[r.fabric][m.Interface] = append(wantInet[r.fabric][m.Interface], gw)
				}
			}
		}
	}
	for ns, st := range now {
		got := map[string][]string{}
		for name, l := range st.Links {
			if name != "lo" && len(l.Inet) > 0 {
				got[name] = l.Inet
			}
		}
		for _, as := range wantInet[ns] {
			sort.Strings(as)
		}
		if diff := cmp.Diff(wantInet[ns], got); diff != "" {
			t.Errorf("%s: IPv4 addresses (-API +kernel):\n%s", ns, diff)
		}
	}
	for _, c := range cins {
		r.pings(c, rng)
	}
	if diff := cmp.Diff(golden, now); diff != "" {
		t.Errorf("kernel differs from what a clean make built (-clean +now):\n%s", diff)
	}
}

// pings pings, inside CIN c, from a few members to others, on bridge
// CENs (a wire CEN is reached only by its other end).
func (r *crashRig) pings(c core.CINView, rng *rand.Rand) {
	t := r.t
	t.Helper()
	var dsts []core.CINMemberView
	for _, m := range c.Members {
		if m.IP != nil && len(r.lab.members[m.CEN]) >= 3 {
			dsts = append(dsts, m)
		}
	}
	if len(dsts) < 2 {
		return
	}
	for range 3 {
		src, dst := dsts[rng.IntN(len(dsts))], dsts[rng.IntN(len(dsts))]
		if src.Container == dst.Container {
			continue
		}
		ip := strings.Split(*dst.IP, "/")[0]
		if !ktest.Ping(t, netfab.NetnsPath(r.d.prefix+src.Container), ip) {
			t.Errorf("CIN %s: %s (%s) does not reach %s (%s, %s)", c.ID, src.Container, src.CEN, dst.Container, dst.CEN, ip)
		}
	}
}

// checkDestroyed checks, after a CIN destroy (and a CEN destroy when
// cens), that nothing of the destroyed objects is left: no address,
// route or rule of leviathan's anywhere, and no CEN link either when
// cens.
func (r *crashRig) checkDestroyed(cens bool) {
	t := r.t
	t.Helper()
	var cins []core.CINView
	r.must("GET", "/cin", "", &cins)
	for _, c := range cins {
		if c.State != graph.StatePending {
			t.Errorf("CIN %s: %s %s after destroy", c.ID, c.State, c.Error)
		}
	}
	var cv []core.CENView
	r.must("GET", "/cen", "", &cv)
	var want []ktest.CEN
	for _, c := range cv {
		if made := c.State == graph.StateConfigured; made == cens {
			t.Errorf("CEN %s: %s %s", c.ID, c.State, c.Error)
		}
		k := ktest.CEN{IfName: c.IfName, Made: !cens}
		for _, m := range c.Members {
			k.Members = append(k.Members, netfab.NetnsPath(r.d.prefix+m))
		}
		want = append(want, k)
	}
	ktest.CheckKernel(t, netfab.NetnsPath(r.fabric), want)
	for ns, st := range r.snapshot() {
		st.checkUnmarked(t, ns)
	}
}

// checkNothingLeft checks that nothing of leviathan's is left after a
// teardown: the store empty; of the test's namespaces only the fabric,
// holding only lo, no address but lo's, no route or rule of leviathan's;
// and no process of the binary but the daemon.
func (r *crashRig) checkNothingLeft() {
	t := r.t
	t.Helper()
	for _, path := range []string{"/cen", "/cin", "/host/host1"} {
		var list []json.RawMessage
		r.must("GET", path, "", &list)
		if len(list) != 0 {
			t.Errorf("GET %s after teardown: %d objects", path, len(list))
		}
	}
	snap := r.snapshot()
	if len(snap) != 1 || snap[r.fabric].Links == nil {
		t.Errorf("namespaces after teardown: %v, want only %s", slices.Sorted(maps.Keys(snap)), r.fabric)
	}
	for ns, st := range snap {
		st.checkUnmarked(t, ns)
		for name, l := range st.Links {
			if name != "lo" {
				t.Errorf("%s: link %q left: %+v", ns, name, l)
			} else if len(l.Inet) > 1 || len(l.Inet) == 1 && l.Inet[0] != "127.0.0.1/8" {
				t.Errorf("%s: addresses on lo: %v", ns, l.Inet)
			}
		}
	}
	r.checkProcesses()
}

// checkProcesses fails unless the only process running the binary under
// test is the daemon: every daemon killed before is gone, and none left
// a child behind.
func (r *crashRig) checkProcesses() {
	t := r.t
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == r.d.cmd.Process.Pid {
			continue
		}
		if exe, _ := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); exe == r.d.bin {
			t.Errorf("process %d runs %s, and is not the daemon (%d)", pid, exe, r.d.cmd.Process.Pid)
		}
	}
}

// nsState is what a namespace holds, as far as leviathan is concerned,
// without what changes when an object is made again (ifindexes).
type nsState struct {
	Links  map[string]kLink
	Routes []string // proto 76, every table
	Rules  []string // every rule
}

// kLink is a link with its IPv4 addresses.
type kLink struct {
	Kind, Group, MAC, Master string
	Peer                     string // a veth's other end, when in the same namespace
	Up                       bool
	Inet                     []string // sorted
}

// snapshot reads every namespace of the test's prefix.
func (r *crashRig) snapshot() map[string]nsState {
	r.t.Helper()
	ents, err := os.ReadDir(netfab.NetnsDir)
	if err != nil {
		r.t.Fatal(err)
	}
	out := map[string]nsState{}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), r.d.prefix) {
			out[e.Name()] = readNS(r.t, netfab.NetnsPath(e.Name()))
		}
	}
	return out
}

// readNS reads the links, IPv4 addresses, marked routes and rules of the
// namespace at path in one run of ip.
func readNS(t *testing.T, name string) nsState {
	t.Helper()
	cmd := exec.Command("nsenter", "--net="+name, "ip", "-d", "-j", "-batch", "-")
	cmd.Stdin = strings.NewReader("addr show\nroute show table all proto " + strconv.Itoa(netfab.Proto) + "\nrule show\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ip in %s: %v", name, err)
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	var links []struct {
		IfName   string          `json:"ifname"`
		Link     string          `json:"link"`
		Flags    []string        `json:"flags"`
		Group    json.RawMessage `json:"group"`
		MAC      string          `json:"address"`
		Master   string          `json:"master"`
		LinkInfo struct {
			Kind string `json:"info_kind"`
		} `json:"linkinfo"`
		AddrInfo []struct {
			Family    string `json:"family"`
			Local     string `json:"local"`
			Prefixlen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	var routes, rules []map[string]any
	for _, v := range []any{&links, &routes, &rules} {
		if err := dec.Decode(v); err != nil {
			t.Fatalf("ip in %s: %v\n%s", name, err, out)
		}
	}
	st := nsState{Links: map[string]kLink{}}
	for _, l := range links {
		k := kLink{
			Kind:   l.LinkInfo.Kind,
			Group:  strings.Trim(string(l.Group), `"`),
			MAC:    l.MAC,
			Master: l.Master,
			Peer:   l.Link,
		}
		if strings.HasPrefix(l.IfName, "lv~") {
			k.MAC = "" // a bridge port's MAC is the kernel's choice, not leviathan's
		}
		k.Up = slices.Contains(l.Flags, "UP")
		for _, a := range l.AddrInfo {
			if a.Family == "inet" {
				k.Inet = append(k.Inet, fmt.Sprintf("%s/%d", a.Local, a.Prefixlen))
			}
		}
		sort.Strings(k.Inet)
		st.Links[l.IfName] = k
	}
	for _, rt := range routes {
		delete(rt, "flags") // linkdown comes and goes with the carrier
		b, _ := json.Marshal(rt)
		st.Routes = append(st.Routes, string(b))
	}
	sort.Strings(st.Routes)
	for _, ru := range rules {
		b, _ := json.Marshal(ru)
		st.Rules = append(st.Rules, string(b))
	}
	return st
}

// checkUnmarked fails if the namespace holds an address, route or rule
// of leviathan's: routes and rules by their mark, addresses by where they
// are (iproute2 does not show IFA_PROTO): on no link but lo, since the
// links that carry CIN addresses are leviathan's.
func (st nsState) checkUnmarked(t *testing.T, ns string) {
	t.Helper()
	for _, rt := range st.Routes {
		t.Errorf("%s: route of leviathan's left: %s", ns, rt)
	}
	for _, ru := range st.Rules {
		if strings.Contains(ru, `"protocol":"`+strconv.Itoa(netfab.Proto)+`"`) {
			t.Errorf("%s: rule of leviathan's left: %s", ns, ru)
		}
	}
	for name, l := range st.Links {
		if name != "lo" && len(l.Inet) > 0 {
			t.Errorf("%s: %s still has %v", ns, name, l.Inet)
		}
	}
}

// crashPoolKills is how many times TestCrashPool kills the daemon: half
// in a launch, half in a delete.
const crashPoolKills = 10

// TestCrashPool kills the daemon with SIGKILL during a pool launch and
// during a pool delete, with a real Docker engine. After each restart the
// pool is brought to its size, or deleted, again: a launch must end with
// exactly its size of containers (none launched twice), each wired with
// its API-reported address, and a delete with no container of the pool
// and nothing of it in the kernel.
func TestCrashPool(t *testing.T) {
	ktest.NeedRoot(t)
	eng := dtest.Engine(t)
	image := dtest.Image(t, eng)
	pool := dtest.Name(t) + "pool" // its containers are pool-1, pool-2...
	seed := seedFor(t)
	d := newDaemon(t, "--listen", "127.0.0.1:0", "--docker=true")
	r := &crashRig{t: t, d: d, fabric: d.prefix + "fabric", lab: crashLab{
		cens:    []string{"pc"},
		members: map[string][]string{"pc": {"px", "py"}}, // not hex: no Docker ID prefix
		cins:    map[string][]string{"pn": {"pc"}},
	}}
	const size = 4
	create := fmt.Sprintf(`{"cpoolList":[{"cpoolID":%q,"type":%q,"start_with":%d,"cins":[{"cinID":"pn"}]}]}`, pool, image, size)
	r.must("POST", "/cen/import", r.lab.cenFile(), nil)
	r.must("POST", "/cin/import", r.lab.cinFile(), nil)
	r.converge()

	start := time.Now()
	took := map[string]time.Duration{}
	s := time.Now()
	r.must("POST", "/cpool", create, nil, 201)
	took["pool launch"] = time.Since(s)
	r.checkPool(eng, pool, size)
	s = time.Now()
	r.must("DELETE", "/cpool/"+pool, "", nil, 204)
	took["pool delete"] = time.Since(s)
	r.checkPool(eng, pool, 0)
	t.Logf("clean launch and delete of %d containers: %v", size, took)

	for i := range crashPoolKills {
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		op, path, method, body := "pool launch", "/cpool?async=true", "POST", create
		if i%2 == 1 {
			op, path, method, body = "pool delete", "/cpool/"+pool, "DELETE", ""
		}
		began := time.Now()
		// A launch takes seconds: the kill lands anywhere in it.
		delay := time.Duration(rng.Int64N(int64(took[op]*5/4) + 1))
		done := make(chan struct{})
		go func() {
			defer close(done)
			r.try(method, path, body)
		}()
		time.Sleep(delay)
		r.kill()
		<-done
		r.d.start()
		found := r.poolCensus(eng, pool)
		if op == "pool launch" {
			// Converge: to its size, whether or not the kill came
			// before the pool was recorded.
			if st, _, _ := r.try("GET", "/cpool/"+pool, ""); st == 404 {
				r.must("POST", "/cpool", create, nil, 201)
			} else {
				r.must("PUT", "/cpool/"+pool, fmt.Sprintf(`{"start_with":%d}`, size), nil)
			}
			r.checkPool(eng, pool, size)
		} else {
			r.must("DELETE", "/cpool/"+pool, "", nil, 204, 404)
			r.checkPool(eng, pool, 0)
		}
		t.Logf("kill %d/%d (seed %d): %s, killed after %s, found %s, iteration %s",
			i+1, crashPoolKills, seed, op, delay.Round(time.Millisecond), found, time.Since(began).Round(time.Millisecond))
		if t.Failed() {
			t.Fatalf("daemon log:\n%s", r.d.log)
		}
	}
	r.teardown()
	r.checkNothingLeft()
	if cs, err := eng.List(t.Context(), cpool.LabelPool, pool); err != nil || len(cs) != 0 {
		t.Errorf("containers of the pool after teardown: %v %v", cs, err)
	}
	t.Logf("%d kills in %s", crashPoolKills, time.Since(start).Round(time.Millisecond))
}

// poolCensus says how far a killed pool operation got: the pool's state
// and its containers in the store and in Docker after the restart.
func (r *crashRig) poolCensus(eng *dockerrt.Engine, pool string) string {
	var v cpool.View
	st, b, err := r.try("GET", "/cpool/"+pool, "")
	if err == nil && st == 200 {
		json.Unmarshal(b, &v)
	}
	cs, err := eng.List(r.t.Context(), cpool.LabelPool, pool)
	if err != nil {
		r.t.Fatal(err)
	}
	return fmt.Sprintf("pool %d (%s, %d members), %d in Docker", st, v.State, len(v.Members), len(cs))
}

// checkPool checks that the pool holds exactly size running containers,
// in Docker and in the API (none when size is 0, and no pool), each
// wired into pc with its API-reported address and reached from px; and
// that the kernel holds exactly CEN pc of px, py and them.
func (r *crashRig) checkPool(eng *dockerrt.Engine, pool string, size int) {
	t := r.t
	t.Helper()
	cs, err := eng.List(t.Context(), cpool.LabelPool, pool)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
		if !c.Running {
			t.Errorf("pool container %s does not run", c.Name)
		}
	}
	sort.Strings(names)
	var members []string
	if size == 0 {
		r.must("GET", "/cpool/"+pool, "", nil, 404)
	} else {
		var v cpool.View
		r.must("GET", "/cpool/"+pool, "", &v)
		if v.State != graph.StateConfigured {
			t.Errorf("pool %s: %s %s, want ready", pool, v.State, v.Error)
		}
		members = slices.Sorted(slices.Values(v.Members))
	}
	if len(names) != size || !slices.Equal(names, members) {
		t.Errorf("pool %s: Docker has %v, the API %v, want %d", pool, names, members, size)
	}

	var c core.CENView
	r.must("GET", "/cen/pc", "", &c)
	k := ktest.CEN{IfName: c.IfName, Made: c.State == graph.StateConfigured}
	var addrs []string
	for _, m := range c.Members {
		var v core.ContainerView
		r.must("GET", "/host/host1/"+m, "", &v)
		if v.State != graph.StateRunning || len(v.Interfaces) != 1 || v.Interfaces[0].IP == nil {
			t.Errorf("member %s: %+v", m, v)
			continue
		}
		k.Members = append(k.Members, v.Netns)
		if l := readNS(t, v.Netns).Links[c.IfName]; !slices.Equal(l.Inet, []string{*v.Interfaces[0].IP}) {
			t.Errorf("member %s: kernel has %v on %s, the API %s", m, l.Inet, c.IfName, *v.Interfaces[0].IP)
		}
		if m != "px" {
			addrs = append(addrs, strings.Split(*v.Interfaces[0].IP, "/")[0])
		}
	}
	if want := append([]string{"px", "py"}, members...); !slices.Equal(slices.Sorted(slices.Values(c.Members)), slices.Sorted(slices.Values(want))) {
		t.Errorf("CEN pc: members %v, want %v", c.Members, want)
	}
	ktest.CheckKernel(t, netfab.NetnsPath(r.fabric), []ktest.CEN{k})
	for _, a := range addrs {
		if !ktest.Ping(t, netfab.NetnsPath(r.d.prefix+"px"), a) {
			t.Errorf("px does not reach %s", a)
		}
	}
}
