package multihost_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leviathan-net/leviathan/internal/mhtest"
	"github.com/leviathan-net/leviathan/internal/proctest"
)

// answer is one API call's outcome, headers included.
type answer struct {
	status int
	header http.Header
	body   []byte
	took   time.Duration
}

// call calls h's API, bounded by within, and keeps the answer's headers
// (which mhtest's Do does not give).
func call(t *testing.T, h *mhtest.Host, method, path, body string, within time.Duration) answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://leviathan"+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if r != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := h.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s on %s: no answer within %s: %v", method, path, h.ID, within, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s on %s: read the answer: %v", method, path, h.ID, err)
	}
	return answer{resp.StatusCode, resp.Header, b, time.Since(start)}
}

// unavailable matches a message that says the store does not answer.
var unavailable = regexp.MustCompile(`(?i)(etcd|store).*(unavailable|not answer|unreachable|cannot be reached|down)`)

// leasesExpired is etcd's count of leases it let expire.
func leasesExpired(t *testing.T, lab *mhtest.Lab) int64 {
	t.Helper()
	m, err := lab.EtcdGet("/metrics")
	if err != nil {
		t.Fatalf("etcd's metrics: %v", err)
	}
	for _, line := range strings.Split(m, "\n") {
		name, v, ok := strings.Cut(line, " ")
		if ok && strings.HasSuffix(name, "_lease_expired_total") {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("etcd's metric %q: %v", line, err)
			}
			return int64(n)
		}
	}
	t.Fatal("etcd's metrics have no *_lease_expired_total")
	return 0
}

// TestEtcdOutage stops etcd (SIGSTOP: its connections stay open and
// nothing answers on them, as with a cluster that hangs or is cut off)
// for longer than the hosts' lease TTL. Meanwhile reads are served from
// the last copy, marked stale; writes answer 503 saying why; the kernels
// are kept as they are. Once etcd answers again, writes work, reads are
// fresh, and every host is running again.
func TestEtcdOutage(t *testing.T) {
	lab := mhtest.New(t, 3)
	hA := lab.Host("hA")
	ms, addrs := wide(t, lab)
	// Pairs across all three hosts, both ways.
	a1, b1, c1 := ms[0], ms[2], ms[4]
	across := [][2]member{{a1, b1}, {b1, c1}, {c1, a1}, {b1, a1}}
	if bad := pingPairs(t, across, addrs, true); len(bad) > 0 {
		t.Fatalf("before the outage, do not ping: %s", strings.Join(bad, ", "))
	}

	reads := []string{"/cen/wide", "/host/hB/b1"}
	before := map[string][]byte{}
	for _, path := range reads {
		a := call(t, hA, "GET", path, "", 10*time.Second)
		if a.status != http.StatusOK || a.header.Get("Warning") != "" {
			t.Fatalf("GET %s on hA before the outage: %d, Warning %q: %s", path, a.status, a.header.Get("Warning"), a.body)
		}
		before[path] = a.body
	}

	expiredBefore := leasesExpired(t, lab)
	pid := lab.EtcdPID()
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := proctest.Continue(pid); err != nil {
				t.Errorf("etcd: %v", err)
			}
		}
	}
	t.Cleanup(resume) // also when the test fails while etcd is stopped
	if err := proctest.Stop(pid); err != nil {
		t.Fatalf("etcd: %v", err)
	}
	stopped := time.Now()

	t.Run("reads stale", func(t *testing.T) {
		// The first read waits for the store's request timeout (5s).
		for _, path := range reads {
			a := call(t, hA, "GET", path, "", 10*time.Second)
			t.Logf("GET %s on hA with etcd stopped: %d in %s, Warning: %s", path, a.status, a.took.Round(time.Millisecond), a.header.Get("Warning"))
			if a.status != http.StatusOK {
				t.Errorf("GET %s on hA with etcd stopped: %d %s, want 200 from the last copy", path, a.status, a.body)
				continue
			}
			if !bytes.Equal(a.body, before[path]) {
				t.Errorf("GET %s on hA with etcd stopped:\n  %s\nbefore the stop:\n  %s", path, a.body, before[path])
			}
			if w := a.header.Get("Warning"); !strings.Contains(w, "Stale") {
				t.Errorf("GET %s on hA with etcd stopped: Warning header %q, want one saying the answer is stale", path, w)
			}
		}
	})

	t.Run("writes refused", func(t *testing.T) {
		a := call(t, hA, "PUT", "/cen/newone", "", 10*time.Second)
		t.Logf("PUT /cen/newone on hA with etcd stopped: %d in %s: %s", a.status, a.took.Round(time.Millisecond), a.body)
		if a.status != http.StatusServiceUnavailable {
			t.Errorf("PUT /cen/newone on hA with etcd stopped: %d %s, want 503", a.status, a.body)
		}
		if msg := errorMessage(a.body); !unavailable.MatchString(msg) {
			t.Errorf("PUT /cen/newone on hA with etcd stopped: message %q does not say that the store is unavailable", msg)
		}
	})

	t.Run("kernels kept", func(t *testing.T) {
		if bad := pingPairs(t, across, addrs, true); len(bad) > 0 {
			t.Errorf("with etcd stopped, do not ping: %s", strings.Join(bad, ", "))
		}
	})

	// Past the lease TTL, so that the hosts' leases lapse.
	if d := hostTTL + time.Second - time.Since(stopped); d > 0 {
		time.Sleep(d)
	}
	resume()
	t.Logf("etcd stopped for %s", time.Since(stopped).Round(time.Millisecond))
	back := time.Now()
	const recovery = 20 * time.Second

	t.Run("writes again", func(t *testing.T) {
		for {
			a := call(t, hA, "PUT", "/cen/newone", "", recovery)
			if a.status/100 == 2 {
				t.Logf("PUT /cen/newone on hA: %d %s after etcd went on", a.status, time.Since(back).Round(time.Millisecond))
				return
			}
			if time.Since(back) > recovery {
				t.Fatalf("PUT /cen/newone on hA %s after etcd went on: %d %s", recovery, a.status, a.body)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})

	t.Run("reads fresh", func(t *testing.T) {
		for _, path := range reads {
			for {
				a := call(t, hA, "GET", path, "", recovery)
				w := a.header.Get("Warning")
				if a.status == http.StatusOK && w == "" {
					if !bytes.Equal(a.body, before[path]) {
						t.Errorf("GET %s on hA after the outage:\n  %s\nbefore it:\n  %s", path, a.body, before[path])
					}
					break
				}
				if time.Since(back) > recovery {
					t.Fatalf("GET %s on hA %s after etcd went on: %d, Warning %q: %s", path, recovery, a.status, w, a.body)
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
	})

	t.Run("hosts running", func(t *testing.T) {
		// Leases that lapsed while etcd was stopped are revoked once it
		// runs again, and the hosts take new ones: watch GET /host from
		// then on, and ask for every host running past the TTL.
		var seen []string // every state change seen, for the log
		last := map[string]string{}
		deadline := back.Add(recovery)
		settled := back.Add(hostTTL + 500*time.Millisecond)
		for {
			hosts, err := hA.HostList()
			if err != nil {
				t.Fatal(err)
			}
			all := true
			for _, h := range lab.Hosts {
				st := hosts[h.ID].State
				if st != last[h.ID] {
					seen = append(seen, h.ID+" "+st+" at "+time.Since(back).Round(10*time.Millisecond).String())
					last[h.ID] = st
				}
				all = all && st == "running"
			}
			if all && time.Now().After(settled) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET /host on hA %s after etcd went on: not all running: %+v (seen: %s)", recovery, hosts, strings.Join(seen, ", "))
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("GET /host on hA after etcd went on: %s", strings.Join(seen, ", "))
		// What this checks: leases lapsed, and the hosts took new ones.
		if n := leasesExpired(t, lab) - expiredBefore; n < int64(len(lab.Hosts)) {
			t.Errorf("etcd expired %d leases over the stop, want the %d hosts' at least: the stop did not outlast the leases", n, len(lab.Hosts))
		} else {
			t.Logf("etcd expired %d leases over the stop", n)
		}
		for _, h := range lab.Hosts {
			h.WaitHostState(h.ID, "running", time.Until(deadline)+time.Second)
		}
	})

	t.Run("realizers resume", func(t *testing.T) {
		// A member added across hosts after the outage: every host's
		// realizer must follow the store again.
		c3 := member{lab.Host("hC"), "c3"}
		hA.Must("PUT", "/host/hC/c3/wide", nil)
		_, addrs[c3] = look(t, hA, c3, "wide")
		if addrs[c3] == "" {
			t.Fatalf("%s has no address on wide", c3)
		}
		took := awaitMatrix(t, "after the outage, with hC/c3", append(slices.Clone(ms), c3), addrs, 20*time.Second)
		t.Logf("every pair pings %s after hC/c3 joined", took.Round(10*time.Millisecond))
	})

	t.Run("newone readable everywhere", func(t *testing.T) {
		for _, h := range lab.Hosts {
			var cens []struct {
				ID string `json:"cenID"`
			}
			if s, body := h.JSON("GET", "/cen", nil, &cens); s != http.StatusOK {
				t.Fatalf("GET /cen on %s: %d %s", h.ID, s, body)
			}
			ids := []string{}
			for _, c := range cens {
				ids = append(ids, c.ID)
			}
			if !slices.Contains(ids, "newone") {
				t.Errorf("GET /cen on %s after the outage: no newone: %v", h.ID, ids)
			}
		}
	})
}
