package multihost_test

import (
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/leviathan-net/leviathan/internal/mhtest"
)

// exists reports whether a file (a namespace's mount point) is there.
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestMembersOnAnotherHostsAPI registers, through hB's API, a container
// of hC: hC creates its namespace, by the answer; deleting it through
// hB's API removes the namespace. hB touches no namespace of its own.
func TestMembersOnAnotherHostsAPI(t *testing.T) {
	lab := mhtest.New(t, 3)
	hA, hB, hC := lab.Host("hA"), lab.Host("hB"), lab.Host("hC")
	ns := hC.MemberNetns("x1")

	var c struct {
		container
		Runtime string `json:"runtime"`
	}
	start := time.Now()
	if s, body := hB.JSON("PUT", "/host/hC/x1", nil, &c); s != http.StatusCreated {
		t.Fatalf("PUT /host/hC/x1 on hB: %d %s, want 201", s, body)
	}
	atAnswer := exists(ns)
	t.Logf("PUT /host/hC/x1 on hB: %s", time.Since(start).Round(time.Millisecond))
	if c.HostID != "hC" || c.ContainerID != "x1" || c.Runtime != "netns" || c.Netns != ns {
		t.Errorf("PUT /host/hC/x1 on hB: %+v, want hC's x1 of runtime netns in %s", c, ns)
	}
	if !atAnswer {
		t.Errorf("PUT /host/hC/x1 on hB answered before hC created %s", ns)
		for deadline := time.Now().Add(5 * time.Second); !exists(ns) && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
		}
		if exists(ns) {
			t.Logf("%s appeared %s after the answer", ns, time.Since(start).Round(time.Millisecond))
		} else {
			t.Fatalf("%s still missing 5s after the answer", ns)
		}
	}
	if other := hB.MemberNetns("x1"); exists(other) {
		t.Errorf("hB made a namespace of its own for hC's x1: %s", other)
	}
	for _, api := range lab.Hosts {
		var got container
		if s, body := api.JSON("GET", "/host/hC/x1", nil, &got); s != http.StatusOK || got.Netns != ns {
			t.Errorf("GET /host/hC/x1 on %s: %d %s, want it in %s", api.ID, s, body, ns)
		}
	}

	start = time.Now()
	if s, body := hB.Do("DELETE", "/host/hC/x1", nil); s != http.StatusNoContent {
		t.Fatalf("DELETE /host/hC/x1 on hB: %d %s, want 204", s, body)
	}
	for deadline := time.Now().Add(5 * time.Second); exists(ns); {
		if time.Now().After(deadline) {
			t.Fatalf("%s still there 5s after DELETE /host/hC/x1 on hB answered", ns)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%s gone %s after the DELETE was sent", ns, time.Since(start).Round(time.Millisecond))
	for _, api := range []*mhtest.Host{hA, hB, hC} {
		if s, body := api.Do("GET", "/host/hC/x1", nil); s != http.StatusNotFound {
			t.Errorf("GET /host/hC/x1 on %s after the delete: %d %s, want 404", api.ID, s, body)
		}
	}
}
