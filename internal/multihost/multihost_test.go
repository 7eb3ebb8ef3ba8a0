// The tests of several hosts (issue 12): three real daemons, each in a
// host namespace of an mhtest.Lab, sharing one real etcd, driven through
// their APIs on unix sockets, checked by pinging between the members'
// namespaces.
package multihost_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leviathan-net/leviathan/internal/ktest"
	"github.com/leviathan-net/leviathan/internal/mhtest"
)

func TestMain(m *testing.M) { os.Exit(mhtest.Run(m)) }

// hostTTL is the lab's --host-ttl (mhtest's default).
const hostTTL = 2 * time.Second

// member is a container on a host, "hA/a1" in a CEN file.
type member struct {
	host *mhtest.Host
	id   string
}

func (m member) String() string { return m.host.ID + "/" + m.id }

func members(lab *mhtest.Lab, names ...string) []member {
	var out []member
	for _, n := range names {
		h, c, ok := strings.Cut(n, "/")
		if !ok {
			panic("member without a host: " + n)
		}
		out = append(out, member{lab.Host(h), c})
	}
	return out
}

// cenFile is a CEN file (POST /cen/import) of the given CENs, each ID
// followed by its members as "host/container".
func cenFile(cens map[string][]member) string {
	type entry struct {
		ID      string   `json:"cenID"`
		Members []string `json:"containerIDs"`
	}
	var list []entry
	for id, ms := range cens {
		e := entry{ID: id, Members: []string{}}
		for _, m := range ms {
			e.Members = append(e.Members, m.String())
		}
		list = append(list, e)
	}
	slices.SortFunc(list, func(a, b entry) int { return strings.Compare(a.ID, b.ID) })
	b, _ := json.Marshal(map[string]any{"cenList": list})
	return string(b)
}

// container is GET /host/{hostId}/{containerId}.
type container struct {
	HostID      string `json:"hostID"`
	ContainerID string `json:"containerID"`
	Netns       string `json:"netns"`
	Interfaces  []struct {
		CENID     string  `json:"cenID"`
		Name      string  `json:"name"`
		IPAddress *string `json:"ipaddress"`
		CINID     *string `json:"cinID"`
	} `json:"interfaces"`
}

// look reads m through api (any host's API) and returns its interface on
// cen: its name and its address without the length ("" if none). It
// checks the namespace is the one m's own host names it.
func look(t *testing.T, api *mhtest.Host, m member, cen string) (ifname, addr string) {
	t.Helper()
	var c container
	if s, body := api.JSON("GET", "/host/"+m.host.ID+"/"+m.id, nil, &c); s != http.StatusOK {
		t.Fatalf("GET /host/%s on %s: %d %s", m, api.ID, s, body)
	}
	if c.Netns != m.host.MemberNetns(m.id) {
		t.Errorf("GET /host/%s on %s: netns %q, want %q", m, api.ID, c.Netns, m.host.MemberNetns(m.id))
	}
	for _, i := range c.Interfaces {
		if i.CENID == cen {
			if i.IPAddress != nil {
				addr, _, _ = strings.Cut(*i.IPAddress, "/")
			}
			return i.Name, addr
		}
	}
	t.Fatalf("GET /host/%s on %s: no interface on %q: %+v", m, api.ID, cen, c)
	return "", ""
}

// addresses reads, through api, each member's address on cen.
func addresses(t *testing.T, api *mhtest.Host, cen string, ms []member) map[member]string {
	t.Helper()
	out := map[member]string{}
	for _, m := range ms {
		_, addr := look(t, api, m, cen)
		if addr == "" {
			t.Fatalf("%s has no address on %s (GET on %s)", m, cen, api.ID)
		}
		out[m] = addr
	}
	return out
}

// pingPairs pings, in parallel, from the namespace of each pair's first
// member the address of its second, and returns the pairs whose
// outcome is not want, as "hA/a1 -> hB/b1".
func pingPairs(t *testing.T, pairs [][2]member, addrs map[member]string, want bool) []string {
	t.Helper()
	var (
		mu  sync.Mutex
		bad []string
		wg  sync.WaitGroup
		sem = make(chan struct{}, 8)
	)
	for _, p := range pairs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if ktest.Ping(t, p[0].host.MemberNetns(p[0].id), addrs[p[1]]) != want {
				mu.Lock()
				bad = append(bad, fmt.Sprintf("%s -> %s (%s)", p[0], p[1], addrs[p[1]]))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	slices.Sort(bad)
	return bad
}

// matrix is every ordered pair of distinct members.
func matrix(ms []member) [][2]member {
	var out [][2]member
	for _, a := range ms {
		for _, b := range ms {
			if a != b {
				out = append(out, [2]member{a, b})
			}
		}
	}
	return out
}

// checkMatrix fails the test unless every member pings every other.
func checkMatrix(t *testing.T, what string, ms []member, addrs map[member]string) {
	t.Helper()
	if bad := pingPairs(t, matrix(ms), addrs, true); len(bad) > 0 {
		t.Errorf("%s: %d of %d pairs do not ping:\n  %s", what, len(bad), len(ms)*(len(ms)-1), strings.Join(bad, "\n  "))
	}
}

// awaitMatrix polls until every member pings every other, failing the
// test with the pairs that still do not after within.
func awaitMatrix(t *testing.T, what string, ms []member, addrs map[member]string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		bad := pingPairs(t, matrix(ms), addrs, true)
		if len(bad) == 0 {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: after %s, %d pairs still do not ping:\n  %s", what, within, len(bad), strings.Join(bad, "\n  "))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// wide sets up, through hA's API, the CEN "wide" of two members on each
// host, made, with the CIN "net" over it, made, and returns its members
// and their addresses as hB's API reports them.
func wide(t *testing.T, lab *mhtest.Lab) ([]member, map[member]string) {
	t.Helper()
	hA, hB := lab.Host("hA"), lab.Host("hB")
	ms := members(lab, "hA/a1", "hA/a2", "hB/b1", "hB/b2", "hC/c1", "hC/c2")
	hA.Must("POST", "/cen/import", cenFile(map[string][]member{"wide": ms}))
	hA.Must("POST", "/cen/make", []string{"wide"})
	hA.Must("POST", "/cin/import", map[string][]string{"net": {"wide"}})
	hA.Must("POST", "/cin/make", []string{"net"})
	return ms, addresses(t, hB, "wide", ms)
}

// TestCENAcrossHosts makes one CEN (and a CIN over it) with members on
// three hosts through one host's API, reads it through another's, and
// pings every member from every other.
func TestCENAcrossHosts(t *testing.T) {
	lab := mhtest.New(t, 3)

	t.Run("GET /host", func(t *testing.T) {
		for _, api := range lab.Hosts {
			hosts, err := api.HostList()
			if err != nil {
				t.Fatal(err)
			}
			if len(hosts) != len(lab.Hosts) {
				t.Errorf("GET /host on %s: %d hosts, want %d: %+v", api.ID, len(hosts), len(lab.Hosts), hosts)
			}
			for _, h := range lab.Hosts {
				got := hosts[h.ID]
				if got.State != "running" || got.Underlay != h.Underlay || got.Error != "" {
					t.Errorf("GET /host on %s: %s is %+v, want running on %s without error", api.ID, h.ID, got, h.Underlay)
				}
			}
		}
	})

	ms, addrs := wide(t, lab)
	t.Run("every API sees the same", func(t *testing.T) {
		for _, api := range lab.Hosts {
			for _, m := range ms {
				if _, addr := look(t, api, m, "wide"); addr != addrs[m] {
					t.Errorf("%s on %s's API: address %q, on hB's %q", m, api.ID, addr, addrs[m])
				}
			}
		}
	})
	t.Run("ping matrix", func(t *testing.T) { checkMatrix(t, "wide", ms, addrs) })
}

// TestCINOverCENsOnSeveralHosts routes, within one CIN, between two CENs
// that span different hosts, and keeps another CIN apart.
func TestCINOverCENsOnSeveralHosts(t *testing.T) {
	lab := mhtest.New(t, 3)
	hA, hC := lab.Host("hA"), lab.Host("hC")
	x := members(lab, "hA/x1", "hB/x2")
	y := members(lab, "hB/y1", "hC/y2")
	z := members(lab, "hA/z1", "hC/z2")
	hA.Must("POST", "/cen/import", cenFile(map[string][]member{"x": x, "y": y, "z": z}))
	hA.Must("POST", "/cen/make", []string{"x", "y", "z"})
	hA.Must("POST", "/cin/import", map[string][]string{"routed": {"x", "y"}, "other": {"z"}})
	hA.Must("POST", "/cin/make", []string{"routed", "other"})

	addrs := addresses(t, hC, "x", x)
	for m, a := range addresses(t, hC, "y", y) {
		addrs[m] = a
	}
	for m, a := range addresses(t, hC, "z", z) {
		addrs[m] = a
	}
	x1, x2, y1, y2, z1, z2 := x[0], x[1], y[0], y[1], z[0], z[1]

	t.Run("within each CEN", func(t *testing.T) {
		if bad := pingPairs(t, [][2]member{{x1, x2}, {x2, x1}, {y1, y2}, {y2, y1}, {z1, z2}, {z2, z1}}, addrs, true); len(bad) > 0 {
			t.Errorf("do not ping: %s", strings.Join(bad, ", "))
		}
	})
	t.Run("routed between the CENs of a CIN", func(t *testing.T) {
		if bad := pingPairs(t, [][2]member{{x1, y2}, {y2, x1}, {x2, y2}, {x1, y1}}, addrs, true); len(bad) > 0 {
			t.Errorf("do not ping: %s", strings.Join(bad, ", "))
		}
	})
	t.Run("CINs apart", func(t *testing.T) {
		if bad := pingPairs(t, [][2]member{{z1, x1}, {z1, y2}, {z2, x2}, {x1, z2}, {y2, z1}}, addrs, false); len(bad) > 0 {
			t.Errorf("reach another CIN: %s", strings.Join(bad, ", "))
		}
	})
}

// TestAgentKilledAndRestarted kills one host's daemon: the others see it
// unknown, the kernel it made keeps forwarding, and once it is back it
// is running again and has changed nothing that worked.
func TestAgentKilledAndRestarted(t *testing.T) {
	lab := mhtest.New(t, 3)
	hA, hB := lab.Host("hA"), lab.Host("hB")
	ms, addrs := wide(t, lab)
	checkMatrix(t, "before", ms, addrs)

	// The ifindex of each of hB's members' interfaces on the CEN.
	ifindexes := func() map[member]int {
		out := map[member]int{}
		for _, m := range ms {
			if m.host != hB {
				continue
			}
			name, _ := look(t, hA, m, "wide")
			l, ok := ktest.Links(t, m.host.MemberNetns(m.id))[name]
			if !ok {
				t.Fatalf("%s has no %q in its namespace", m, name)
			}
			out[m] = l.Index
		}
		return out
	}
	before := ifindexes()

	hB.Kill()
	took := hA.WaitHostState("hB", "unknown", hostTTL+3*time.Second)
	t.Logf("hB unknown on hA's API %s after the kill", took.Round(10*time.Millisecond))
	// Every kernel is kept as it was: members on one side still ping
	// each other (hB's among themselves too). hB's lease is gone, so the
	// others no longer flood to it.
	var others, withB [][2]member
	for _, p := range matrix(ms) {
		if (p[0].host == hB) != (p[1].host == hB) {
			withB = append(withB, p)
		} else {
			others = append(others, p)
		}
	}
	if bad := pingPairs(t, others, addrs, true); len(bad) > 0 {
		t.Errorf("while hB's daemon is dead: %d pairs on one side do not ping:\n  %s", len(bad), strings.Join(bad, "\n  "))
	}
	if bad := pingPairs(t, withB, addrs, false); len(bad) > 0 {
		t.Errorf("while hB is unknown, its peers still carry its traffic: %d pairs ping:\n  %s", len(bad), strings.Join(bad, "\n  "))
	}

	hB.Start()
	took = hA.WaitHostState("hB", "running", 10*time.Second)
	t.Logf("hB running on hA's API %s after it answered again", took.Round(10*time.Millisecond))
	hB.WaitHostState("hB", "running", 10*time.Second)
	checkMatrix(t, "after hB's restart", ms, addrs)
	if after := ifindexes(); !maps.Equal(before, after) {
		t.Errorf("hB's members' interfaces were made again: ifindexes %v before the kill, %v after the restart", before, after)
	}
}

// errorMessage is the message of an error answer's JSON body, or the
// body as it is.
func errorMessage(body []byte) string {
	var e struct{ Message string }
	if json.Unmarshal(body, &e) == nil && e.Message != "" {
		return e.Message
	}
	return string(body)
}

// TestPartitionHeals cuts one host off the underlay (and so off etcd),
// changes a CEN it is in meanwhile, and checks that, once healed, it is
// running again and the change has reached it.
func TestPartitionHeals(t *testing.T) {
	// A synchronous call waits --host-timeout for a host that does
	// not answer: shorter than the default, to keep the test short.
	lab := mhtest.New(t, 3, mhtest.Flags("--host-timeout", "5s"))
	hA, hB, hC := lab.Host("hA"), lab.Host("hB"), lab.Host("hC")
	ms, addrs := wide(t, lab)
	checkMatrix(t, "before", ms, addrs)

	hC.Partition()
	t.Cleanup(hC.Heal) // also when the test fails before it heals
	took := hA.WaitHostState("hC", "unknown", hostTTL+3*time.Second)
	t.Logf("hC unknown on hA's API %s after the partition", took.Round(10*time.Millisecond))

	a3 := member{hA, "a3"}
	for _, path := range []string{"/host/hA/a3", "/host/hA/a3/wide"} {
		start := time.Now()
		status, body, err := hA.Request("PUT", path, nil)
		switch {
		case err != nil:
			t.Fatalf("during the partition: %v", err)
		case status/100 != 2 && !strings.Contains(errorMessage(body), `host "hC"`):
			t.Fatalf("PUT %s on hA during the partition: %d %s; want success, or an error naming host \"hC\"", path, status, body)
		}
		t.Logf("PUT %s on hA during the partition: %d in %s: %s", path, status, time.Since(start).Round(time.Millisecond), body)
	}

	hC.Heal()
	took = hA.WaitHostState("hC", "running", 20*time.Second)
	t.Logf("hC running on hA's API %s after the heal", took.Round(10*time.Millisecond))
	ms = append(ms, a3)
	_, addrs[a3] = look(t, hB, a3, "wide")
	if addrs[a3] == "" {
		t.Fatalf("%s has no address on wide", a3)
	}
	took = awaitMatrix(t, "after the heal, with hA/a3", ms, addrs, 20*time.Second)
	t.Logf("every pair pings %s after hC was running again", took.Round(10*time.Millisecond))
}

// TestConcurrentWriters has two hosts' APIs create 50 CENs each at once,
// and every host then lists the 100.
func TestConcurrentWriters(t *testing.T) {
	lab := mhtest.New(t, 3)
	const n = 50
	writers := []*mhtest.Host{lab.Host("hA"), lab.Host("hB")}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []string
		want []string
	)
	for _, h := range writers {
		for i := range n {
			id := fmt.Sprintf("%s-%02d", strings.ToLower(h.ID), i)
			want = append(want, id)
			wg.Add(1)
			go func() {
				defer wg.Done()
				status, body, err := h.Request("PUT", "/cen/"+id, nil)
				if err == nil && status != http.StatusCreated {
					err = fmt.Errorf("PUT /cen/%s on %s: %d %s", id, h.ID, status, body)
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err.Error())
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		slices.Sort(errs)
		t.Errorf("%d of %d writes failed:\n  %s", len(errs), len(want), strings.Join(errs, "\n  "))
	}
	slices.Sort(want)
	for _, api := range lab.Hosts {
		var cens []struct {
			ID string `json:"cenID"`
		}
		if s, body := api.JSON("GET", "/cen", nil, &cens); s != http.StatusOK {
			t.Fatalf("GET /cen on %s: %d %s", api.ID, s, body)
		}
		var got []string
		for _, c := range cens {
			got = append(got, c.ID)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("GET /cen on %s: %d CENs, want the %d written; missing %v, extra %v", api.ID, len(got), len(want), minus(want, got), minus(got, want))
		}
	}
}

// minus is what of a is not in b.
func minus(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}
