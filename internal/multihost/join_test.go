package multihost_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/leviathan-net/leviathan/internal/mhtest"
)

// TestHostJoinsLater makes a CEN and a CIN with a member on a host that
// is down: the calls name it as late and leave both made on the others;
// when it starts, it realizes its part and its member pings the others.
func TestHostJoinsLater(t *testing.T) {
	lab := mhtest.New(t, 3)
	hA, hC := lab.Host("hA"), lab.Host("hC")
	hC.Stop()
	hA.WaitHostState("hC", "unknown", hostTTL+3*time.Second)

	ms := members(lab, "hA/l1", "hB/l2", "hC/l3")
	hA.Must("POST", "/cen/import", cenFile(map[string][]member{"late": ms}))
	for _, call := range []struct{ path, body, kind string }{
		{"/cen/make", "late", "CEN"},
		{"/cin/make", "latenet", "CIN"},
	} {
		if call.kind == "CIN" {
			hA.Must("POST", "/cin/import", map[string][]string{"latenet": {"late"}})
		}
		status, body := hA.Do("POST", call.path, []string{call.body})
		if status/100 == 2 || !strings.Contains(errorMessage(body), `host "hC"`) {
			t.Fatalf("POST %s with hC down: %d %s; want an error naming host \"hC\"", call.path, status, body)
		}
	}
	var cen struct {
		State string `json:"state"`
	}
	if s, body := hA.JSON("GET", "/cen/late", nil, &cen); s != http.StatusOK || cen.State == "failed" || cen.State == "pending" {
		t.Fatalf("GET /cen/late while hC is down: %d %s; want it made", s, body)
	}

	hC.Start()
	hA.WaitHostState("hC", "running", 10*time.Second)
	// hC finds its container and realizes its part once it runs.
	var addrs map[member]string
	deadline := time.Now().Add(15 * time.Second)
	for {
		addrs = map[member]string{}
		ok := true
		for _, m := range ms {
			var c container
			if s, _ := hA.JSON("GET", "/host/"+m.String(), nil, &c); s != http.StatusOK {
				ok = false
				continue
			}
			for _, i := range c.Interfaces {
				if i.CENID == "late" && i.IPAddress != nil {
					addrs[m], _, _ = strings.Cut(*i.IPAddress, "/")
				}
			}
			ok = ok && addrs[m] != ""
		}
		if ok || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	awaitMatrix(t, "after hC joined", ms, addrs, 20*time.Second)
}
