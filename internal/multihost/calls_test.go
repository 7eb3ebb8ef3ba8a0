package multihost_test

import (
	"sync"
	"testing"
	"time"

	"github.com/leviathan-net/leviathan/internal/ktest"
	"github.com/leviathan-net/leviathan/internal/mhtest"
)

// TestCallsOnTwoAPIsAtOnce changes one CEN through two hosts' APIs at
// the same time. Each call does its own host's part and waits for the
// other's realizer, which must not wait for the other call in turn: both
// answer well before the host timeout, and both members are wired.
func TestCallsOnTwoAPIsAtOnce(t *testing.T) {
	lab := mhtest.New(t, 3)
	hA, hB := lab.Host("hA"), lab.Host("hB")
	ms, addrs := wide(t, lab)
	x, y := member{hA, "x1"}, member{hB, "y1"}

	for round := range 3 {
		var wg sync.WaitGroup
		took := make([]time.Duration, 2)
		for i, c := range []struct {
			api *mhtest.Host
			m   member
			add bool
		}{{hA, x, round%2 == 0}, {hB, y, round%2 == 0}} {
			wg.Go(func() {
				method := "PUT"
				if !c.add {
					method = "DELETE"
				}
				start := time.Now()
				status, body, err := c.api.Request(method, "/host/"+c.m.String()+"/wide", nil)
				took[i] = time.Since(start)
				if err != nil || status/100 != 2 {
					t.Errorf("round %d: %s /host/%s/wide on %s: %d %s %v", round, method, c.m, c.api.ID, status, body, err)
				}
			})
		}
		wg.Wait()
		for i, d := range took {
			// The host timeout is 30 s: a call that waited for it was
			// held up by the other.
			if d > 10*time.Second {
				t.Errorf("round %d: call %d took %s", round, i, d.Round(time.Millisecond))
			}
		}
	}
	// Rounds 0 and 2 added, round 1 removed: both are members again.
	all := append(ms, x, y)
	for _, m := range []member{x, y} {
		_, addrs[m] = look(t, hA, m, "wide")
	}
	awaitMatrix(t, "after concurrent changes", all, addrs, 10*time.Second)
}

// TestDeleteThroughAnotherHost destroys and deletes a CIN and a CEN that
// span hosts through a host with no member in them: every host's kernel
// is left clean.
func TestDeleteThroughAnotherHost(t *testing.T) {
	lab := mhtest.New(t, 3)
	hA, hB, hC := lab.Host("hA"), lab.Host("hB"), lab.Host("hC")
	ms := members(lab, "hA/a1", "hB/b1", "hB/b2")
	hC.Must("POST", "/cen/import", cenFile(map[string][]member{"pair": ms}))
	hC.Must("POST", "/cen/make", []string{"pair"})
	hC.Must("POST", "/cin/import", map[string][]string{"pn": {"pair"}})
	hC.Must("POST", "/cin/make", []string{"pn"})
	addrs := addresses(t, hC, "pair", ms)
	checkMatrix(t, "pair", ms, addrs)

	name, _ := look(t, hC, ms[0], "pair")
	fabricHas := func(h *mhtest.Host) bool {
		_, ok := ktest.Links(t, h.Fabric())[name]
		return ok
	}
	for _, h := range []*mhtest.Host{hA, hB} {
		if !fabricHas(h) {
			t.Fatalf("%s's fabric has no bridge %q of the CEN", h.ID, name)
		}
	}
	hC.Must("DELETE", "/cin/pn", nil)
	for _, m := range ms {
		if _, addr := look(t, hA, m, "pair"); addr != "" {
			t.Errorf("%s keeps the address %s after its CIN was deleted", m, addr)
		}
	}
	hC.Must("POST", "/cen/destroy", []string{"pair"})
	hC.Must("DELETE", "/cen/pair", nil)
	for _, h := range []*mhtest.Host{hA, hB, hC} {
		if fabricHas(h) {
			t.Errorf("%s's fabric still has the bridge %q of a deleted CEN", h.ID, name)
		}
	}
	for _, m := range ms {
		if _, ok := ktest.Links(t, m.host.MemberNetns(m.id))[name]; ok {
			t.Errorf("%s still has its interface %q on a deleted CEN", m, name)
		}
	}
}
