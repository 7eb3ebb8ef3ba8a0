package rest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/internal/ktest"
)

// An emulated VM is a CEN member: a TAP on the CEN's bridge, relayed to
// its tunnel. A netns container and a VPCS share the segment and ping
// each other both ways, on L2 and by CIN address, also after a restart.
func TestVMIsACENMember(t *testing.T) {
	e := newGNS3Env(t, "")
	var proj struct {
		ID string `json:"project_id"`
	}
	e.must(201, "POST", "/v2/projects", `{"name":"lab"}`, &proj)
	var pc vmBody
	e.must(201, "POST", "/v2/projects/"+proj.ID+"/vms", `{"name":"PC1","vm_type":"vpcs"}`, &pc)
	e.must(204, "POST", "/v2/projects/"+proj.ID+"/vms/"+pc.ID+"/start", "", nil)

	// Two members, one of them a VM: a bridge, not a wire.
	e.must(200, "POST", "/cen/import", fmt.Sprintf(`{"cenList":[{"cenID":"lab","containerIDs":["n1",%q]}]}`, pc.ID), nil)
	e.must(200, "POST", "/cen/make", `["lab"]`, nil)
	var c core.CENView
	e.must(200, "GET", "/cen/lab", "", &c)
	if c.Wiring == nil || *c.Wiring != string(graph.WiringBridge) || c.State != graph.StateConfigured {
		t.Fatalf("CEN with a VM: %+v", c)
	}
	var v core.ContainerView
	e.must(200, "GET", "/host/host1/"+pc.ID, "", &v)
	if v.Runtime != graph.RuntimeVPCS || v.State != graph.StateRunning || len(v.Interfaces) != 1 {
		t.Fatalf("the VM as a member: %+v", v)
	}
	k := dialConsole(t, pc.Console)

	t.Run("L2", func(t *testing.T) {
		k.t = t
		ktest.IP(t, "-n", e.prefix+"n1", "addr", "add", "192.168.77.1/24", "dev", "lab")
		k.run("ip 192.168.77.2/24")
		if rtts := k.ping("192.168.77.1", 3); len(rtts) == 0 {
			t.Error("the VM does not reach n1 on L2")
		}
		if !ktest.Ping(t, e.ns("n1"), "192.168.77.2") {
			t.Error("n1 does not reach the VM on L2")
		}
		ktest.IP(t, "-n", e.prefix+"n1", "addr", "del", "192.168.77.1/24", "dev", "lab")
		k.run("clear ip")
	})

	e.must(200, "POST", "/cin/import", `{"cinlab":["lab"]}`, nil)
	e.must(200, "POST", "/cin/make", `["cinlab"]`, nil)
	addrOf := func(e *gns3Env, id string) string {
		e.t.Helper()
		var v core.ContainerView
		e.must(200, "GET", "/host/host1/"+id, "", &v)
		if len(v.Interfaces) != 1 || v.Interfaces[0].IP == nil {
			e.t.Fatalf("%s has no CIN address: %+v", id, v)
		}
		return stripLen(*v.Interfaces[0].IP)
	}
	vmAddr, n1Addr := addrOf(e, pc.ID), addrOf(e, "n1")
	reach := func(t *testing.T, k *console) {
		t.Helper()
		// The address is typed into the console in the background (vpcs
		// checks for a duplicate for about 3 s).
		eventually(t, 20*time.Second, func() string {
			if !ktest.Ping(t, e.ns("n1"), vmAddr) {
				return "n1 does not reach the VM at " + vmAddr
			}
			return ""
		})
		if rtts := k.ping(n1Addr, 3); len(rtts) == 0 {
			t.Errorf("the VM does not reach n1 at %s", n1Addr)
		}
		if out := k.run("show ip"); !strings.Contains(out, vmAddr) || !strings.Contains(out, "10.10.0.1") {
			t.Errorf("show ip: %s", out)
		}
	}
	t.Run("CIN address through the console", func(t *testing.T) {
		k.t = t
		reach(t, k)
	})

	t.Run("impairment of the VM's link", func(t *testing.T) {
		e := e.in(t)
		e.must(200, "PUT", "/host/host1/"+pc.ID+"/lab/link", `{"delay_ms":100}`, nil)
		if rtt := minRTT(t, e.ns("n1"), vmAddr); rtt < 200 {
			t.Errorf("round trip to the VM %.1f ms with 100 ms on its link", rtt)
		}
		e.must(200, "DELETE", "/host/host1/"+pc.ID+"/lab/link", "", nil)
		if rtt := minRTT(t, e.ns("n1"), vmAddr); rtt < 0 || rtt > 50 {
			t.Errorf("round trip to the VM %.1f ms after clearing", rtt)
		}
	})
	t.Run("capture of the VM's link", func(t *testing.T) {
		e := e.in(t)
		go func() {
			time.Sleep(300 * time.Millisecond)
			ktest.Ping(t, e.ns("n1"), vmAddr)
		}()
		s, b := e.do("GET", "/host/host1/"+pc.ID+"/lab/pcap?count=2", "")
		if s != 200 || len(b) <= 24 {
			t.Errorf("capture: %d, %d bytes", s, len(b))
		}
	})
	t.Run("one adapter: a NIO or a CEN", func(t *testing.T) {
		e := e.in(t)
		s, b := e.do("POST", "/v2/projects/"+proj.ID+"/vms/"+pc.ID+"/adapters/0/ports/0/nio", `{"lport":20999,"rhost":"127.0.0.1","rport":20998,"type":"nio_udp"}`)
		if s != 409 || !strings.Contains(b, "CEN") || !strings.Contains(b, "lab") {
			t.Errorf("NIO on a CEN member: %d %s", s, b)
		}
		var pc2 vmBody
		e.must(201, "POST", "/v2/projects/"+proj.ID+"/vms", `{"name":"PC2","vm_type":"vpcs"}`, &pc2)
		var port struct {
			Port int `json:"udp_port"`
		}
		e.must(201, "POST", "/v2/projects/"+proj.ID+"/ports/udp", "", &port)
		e.must(201, "POST", "/v2/projects/"+proj.ID+"/vms/"+pc2.ID+"/adapters/0/ports/0/nio", fmt.Sprintf(`{"lport":%d,"rhost":"127.0.0.1","rport":20998,"type":"nio_udp"}`, port.Port), nil)
		if s, b := e.do("PUT", "/host/host1/"+pc2.ID+"/lab", ""); s != 409 || !strings.Contains(b, "NIO") {
			t.Errorf("CEN for a VM with a NIO: %d %s", s, b)
		}
	})

	e.restart()
	t.Run("after a restart", func(t *testing.T) {
		e := e.in(t)
		var fab int
		for name := range ktest.Links(t, e.fab.Path()) {
			if strings.HasPrefix(name, "lt~") {
				fab++
			}
		}
		if fab != 1 {
			t.Errorf("%d VM TAPs on the fabric after the restart, want 1", fab)
		}
		k := dialConsole(t, pc.Console)
		reach(t, k)
	})

	t.Run("leaving the CEN", func(t *testing.T) {
		e := e.in(t)
		e.must(200, "DELETE", "/host/host1/"+pc.ID+"/lab", "", nil)
		for name := range ktest.Links(t, e.fab.Path()) {
			if strings.HasPrefix(name, "lt~") {
				t.Errorf("VM TAP %s left after the VM left", name)
			}
		}
		if ktest.Ping(t, e.ns("n1"), vmAddr) {
			t.Error("n1 still reaches the VM")
		}
	})
}
