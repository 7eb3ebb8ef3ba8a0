package rest

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/internal/ktest"
)

// minRTT pings addr from the namespace at ns and returns the smallest
// round trip in milliseconds, or -1 when no reply came.
func minRTT(t *testing.T, ns, addr string, extra ...string) float64 {
	t.Helper()
	args := append([]string{"--net=" + ns, "ping", "-c", "3", "-i", "0.2", "-W", "2"}, extra...)
	out, _ := exec.Command("nsenter", append(args, addr)...).CombinedOutput()
	i := strings.Index(string(out), "rtt min/avg/max/mdev = ")
	if i < 0 {
		return -1
	}
	f := strings.SplitN(string(out[i+len("rtt min/avg/max/mdev = "):]), "/", 2)
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		t.Fatalf("parse %q: %v", out, err)
	}
	return v
}

func (e *env) link(path, body string) core.LinkView {
	e.t.Helper()
	var v core.LinkView
	method := "PUT"
	if body == "" {
		method = "DELETE"
	}
	e.must(200, method, path, body, &v)
	return v
}

// Impairments on a member's link, measured with ping: each direction
// once, kept across a restart, cleared by DELETE; a wire with an
// impaired link is a bridge.
func TestLinkImpairments(t *testing.T) {
	e := cinEnv(t, Options{})
	c1, c2 := e.ns("c1"), "10.10.0.11"
	path := "/host/host1/c1/cen1/link"
	if rtt := minRTT(t, c1, c2); rtt < 0 || rtt > 20 {
		t.Fatalf("unimpaired round trip %.1f ms", rtt)
	}
	t.Run("delay, each direction once", func(t *testing.T) {
		e := e.in(t)
		v := e.link(path, `{"delay_ms":50}`)
		if v.DelayMs != 50 || !v.Relayed || v.State != core.LinkUp {
			t.Fatalf("PUT: %+v", v)
		}
		if rtt := minRTT(t, c1, c2); rtt < 100 || rtt > 160 {
			t.Errorf("round trip %.1f ms with 50 ms on c1's link, want 100 and a little", rtt)
		}
		// The other members' links stay pure kernel.
		if rtt := minRTT(t, e.ns("c2"), "10.10.0.12"); rtt < 0 || rtt > 20 {
			t.Errorf("c2 to c3: %.1f ms", rtt)
		}
		var got core.LinkView
		e.must(200, "GET", path, "", &got)
		if got.DelayMs != 50 || got.Stats == nil || got.Stats.FromMember.OutFrames == 0 || got.Stats.ToMember.OutFrames == 0 {
			t.Errorf("GET: %+v", got)
		}
	})
	t.Run("loss", func(t *testing.T) {
		e := e.in(t)
		e.link(path, `{"loss_percent":100}`)
		if rtt := minRTT(t, c1, c2); rtt >= 0 {
			t.Errorf("a reply came through 100%% loss (%.1f ms)", rtt)
		}
		v := e.link(path, `{"loss_percent":0}`)
		if v.DelayMs != 50 {
			t.Errorf("a PUT of loss changed the delay: %+v", v)
		}
		if rtt := minRTT(t, c1, c2); rtt < 100 {
			t.Errorf("after loss 0: %.1f ms", rtt)
		}
	})
	t.Run("rate", func(t *testing.T) {
		e := e.in(t)
		e.link(path, `{"delay_ms":0,"rate_kbit":100}`)
		// 1400-byte pings take about 115 ms each way at 100 kbit/s.
		if rtt := minRTT(t, c1, c2, "-s", "1400"); rtt < 200 {
			t.Errorf("round trip of big pings %.1f ms at 100 kbit/s", rtt)
		}
		e.link(path, `{"rate_kbit":0,"delay_ms":50}`)
	})
	e.restart() // a crash: the relay goes with the process, reconcile makes it anew
	t.Run("kept across a restart", func(t *testing.T) {
		e := e.in(t)
		var v core.LinkView
		e.must(200, "GET", path, "", &v)
		if v.DelayMs != 50 || !v.Relayed {
			t.Fatalf("after restart: %+v", v)
		}
		if rtt := minRTT(t, c1, c2); rtt < 100 {
			t.Errorf("after restart: %.1f ms", rtt)
		}
	})
	t.Run("down and up", func(t *testing.T) {
		e := e.in(t)
		e.link(path, `{"state":"down"}`)
		if rtt := minRTT(t, c1, c2); rtt >= 0 {
			t.Error("a reply came over a link that is down")
		}
		if _, ok := ktest.Links(t, c1)["cen1"]; !ok {
			t.Error("down removed the interface")
		}
		if v := e.link(path, `{"state":"up"}`); v.State != core.LinkUp || v.DelayMs != 50 {
			t.Errorf("up: %+v", v)
		}
		// The kernel tells the member's end of its carrier within a second.
		eventually(t, 5*time.Second, func() string {
			if rtt := minRTT(t, c1, c2); rtt < 100 {
				return fmt.Sprintf("back up: %.1f ms", rtt)
			}
			return ""
		})
	})
	t.Run("bad settings change nothing", func(t *testing.T) {
		e := e.in(t)
		for _, tc := range []struct{ path, body string }{
			{path, `{"loss_percent":101}`},
			{path, `{"delay_ms":-1}`},
			{path, `{"delay_ms":99999999}`},
			{path, `{"rate_kbit":-5}`},
			{path, `{"state":"sideways"}`},
			{path, `{"jitter_ms":5,"delay_ms":0}`},
			{path, `{"delay":5}`},
			{path, `[1]`},
		} {
			if s, b := e.do("PUT", tc.path, tc.body); s != 400 || !strings.Contains(b, `"message"`) {
				t.Errorf("PUT %s: %d %s, want 400", tc.body, s, b)
			}
		}
		for _, p := range []string{"/host/host1/nobody/cen1/link", "/host/host1/d1/cen1/link", "/host/host1/c1/nocen/link"} {
			if s, _ := e.do("PUT", p, `{"delay_ms":1}`); s != 404 {
				t.Errorf("PUT %s: %d, want 404", p, s)
			}
		}
		var v core.LinkView
		e.must(200, "GET", path, "", &v)
		if v.DelayMs != 50 || v.LossPercent != 0 || v.State != core.LinkUp {
			t.Errorf("after bad requests: %+v", v)
		}
	})
	t.Run("cleared", func(t *testing.T) {
		e := e.in(t)
		if v := e.link(path, ""); v.Relayed || v.DelayMs != 0 {
			t.Errorf("DELETE: %+v", v)
		}
		if rtt := minRTT(t, c1, c2); rtt < 0 || rtt > 20 {
			t.Errorf("after DELETE: %.1f ms", rtt)
		}
		for name := range ktest.Links(t, e.fab.Path()) {
			if strings.HasPrefix(name, "lr~") {
				t.Errorf("relay TAP %s left after DELETE", name)
			}
		}
		e.check()
	})
	t.Run("a wire with an impaired link is a bridge", func(t *testing.T) {
		e := e.in(t)
		e.must(200, "POST", "/cen/import", `{"cenList":[{"cenID":"duo","containerIDs":["w1","w2"]}]}`, nil)
		e.must(200, "POST", "/cin/import", `{"cinw":["duo"]}`, nil)
		e.must(200, "POST", "/cen/make", `["duo"]`, nil)
		e.must(200, "POST", "/cin/make", `["cinw"]`, nil)
		wiring := func() string {
			var c core.CENView
			e.must(200, "GET", "/cen/duo", "", &c)
			return fmt.Sprint(*c.Wiring)
		}
		var w2 core.ContainerView
		e.must(200, "GET", "/host/host1/w2", "", &w2)
		addr := stripLen(*w2.Interfaces[0].IP)
		e.link("/host/host1/w1/duo/link", `{"delay_ms":30}`)
		if got := wiring(); got != string(graph.WiringBridge) {
			t.Errorf("impaired wire: %s", got)
		}
		if rtt := minRTT(t, e.ns("w1"), addr); rtt < 60 {
			t.Errorf("w1 to w2 over the impaired link: %.1f ms", rtt)
		}
		e.link("/host/host1/w1/duo/link", "")
		if got := wiring(); got != string(graph.WiringWire) {
			t.Errorf("cleared: %s", got)
		}
		if rtt := minRTT(t, e.ns("w1"), addr); rtt < 0 || rtt > 20 {
			t.Errorf("w1 to w2 after clearing: %.1f ms", rtt)
		}
		e.check()
	})
	t.Run("a member that leaves takes its settings along", func(t *testing.T) {
		e := e.in(t)
		e.link("/host/host1/c3/cen1/link", `{"delay_ms":10}`)
		e.must(200, "DELETE", "/host/host1/c3/cen1", "", nil)
		e.must(200, "PUT", "/host/host1/c3/cen1", "", nil)
		var v core.LinkView
		e.must(200, "GET", "/host/host1/c3/cen1/link", "", &v)
		if v.DelayMs != 0 || v.Relayed {
			t.Errorf("settings came back with the member: %+v", v)
		}
		e.check()
	})
}
