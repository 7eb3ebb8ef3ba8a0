package rest

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestGNS3SampleSession runs the sample session of the reference docs
// (gns3-api-v1-general.rst, gns3-api-v2-general.txt) as written, then
// the rest of a VM's life: stop, reload, delete, and the project's
// delete, which stops its VMs and frees its ports.
func TestGNS3SampleSession(t *testing.T) {
	e := newGNS3Env(t, "")

	for _, path := range []string{"/v1/version", "/v2/version"} {
		var v map[string]string
		e.must(200, "GET", path, "", &v)
		if v["version"] != Version {
			t.Errorf("GET %s: %v", path, v)
		}
	}

	var proj struct {
		ID        string  `json:"project_id"`
		Name      string  `json:"name"`
		Temporary bool    `json:"temporary"`
		Path      *string `json:"path"`
	}
	e.must(201, "POST", "/v2/projects", `{"name": "test"}`, &proj)
	if proj.ID == "" || proj.Name != "test" || proj.Temporary || proj.Path == nil {
		t.Fatalf("project: %+v", proj)
	}
	pid := proj.ID

	var vm1, vm2 vmBody
	e.must(201, "POST", "/v2/projects/"+pid+"/vms", `{"name": "VPCS 1", "vm_type": "vpcs"}`, &vm1)
	e.must(201, "POST", "/v1/projects/"+pid+"/vpcs/vms", `{"name": "VPCS 2"}`, &vm2)
	for i, v := range []vmBody{vm1, vm2} {
		if v.ID == "" || v.Name != fmt.Sprintf("VPCS %d", i+1) || v.ProjectID != pid || v.Console == 0 || v.Status != "stopped" {
			t.Errorf("VM %d: %+v", i+1, v)
		}
	}
	if vm1.Console == vm2.Console {
		t.Errorf("both VMs have console %d", vm1.Console)
	}

	// The v1 doc's form, then the v2 doc's (which spells it /v1/projects/{pid}/...).
	var p1, p2, p3 struct {
		Port int `json:"udp_port"`
	}
	e.must(201, "POST", "/v1/ports/udp", `{}`, &p1)
	e.must(201, "POST", "/v1/projects/"+pid+"/ports/udp", `{}`, &p2)
	e.must(201, "POST", "/v2/projects/"+pid+"/ports/udp", `{}`, &p3)
	if p1.Port == 0 || p1.Port == p2.Port || p2.Port == p3.Port || p1.Port == p3.Port {
		t.Fatalf("UDP ports %d %d %d", p1.Port, p2.Port, p3.Port)
	}

	nio := func(vmID string, lport, rport int) {
		body := fmt.Sprintf(`{"lport": %d, "rhost": "127.0.0.1", "rport": %d, "type": "nio_udp"}`, lport, rport)
		var got map[string]any
		e.must(201, "POST", "/v1/projects/"+pid+"/vpcs/vms/"+vmID+"/adapters/0/ports/0/nio", body, &got)
		if got["lport"] != float64(lport) || got["rport"] != float64(rport) || got["rhost"] != "127.0.0.1" || got["type"] != "nio_udp" {
			t.Errorf("NIO: %v", got)
		}
	}
	nio(vm1.ID, p1.Port, p2.Port)
	nio(vm2.ID, p2.Port, p1.Port)

	e.must(204, "POST", "/v1/projects/"+pid+"/vpcs/vms/"+vm1.ID+"/start", "{}", nil)
	e.must(204, "POST", "/v1/projects/"+pid+"/vpcs/vms/"+vm2.ID+"/start", "{}", nil)

	c1 := dialConsole(t, vm1.Console)
	if out := c1.run("ip 192.168.1.1"); !strings.Contains(out, "Checking for duplicate address...") ||
		!strings.Contains(out, "192.168.1.1 255.255.255.0") {
		t.Fatalf("ip 192.168.1.1: %q", out)
	}
	from := c1.out.Len()
	c1.c.Write([]byte("disconnect\r\n"))
	c1.waitFor(from, "Good-bye")

	c2 := dialConsole(t, vm2.Console)
	if out := c2.run("ip 192.168.1.2"); !strings.Contains(out, "192.168.1.2 255.255.255.0") {
		t.Fatalf("ip 192.168.1.2: %q", out)
	}
	out := c2.run("ping 192.168.1.1")
	if n := len(pingTime.FindAllString(out, -1)); n < 4 {
		t.Fatalf("ping 192.168.1.1: %d replies of 5: %q", n, out)
	}

	base := "/v2/projects/" + pid + "/vms/"
	pid1, pid2 := e.vmRecord(vm1.ID).PID, e.vmRecord(vm2.ID).PID
	t.Run("GET shows both VMs started, by either path", func(t *testing.T) {
		e := e.in(t)
		var list1, list2 []vmBody
		e.must(200, "GET", "/v1/projects/"+pid+"/vpcs/vms", "", &list1)
		e.must(200, "GET", "/v2/projects/"+pid+"/vms", "", &list2)
		if len(list1) != 2 || len(list2) != 2 {
			t.Fatalf("lists: %v %v", list1, list2)
		}
		for _, v := range list1 {
			if v.Status != "started" {
				t.Errorf("%+v", v)
			}
		}
		var one vmBody
		e.must(200, "GET", base+vm1.ID, "", &one)
		if one.ID != vm1.ID || one.Status != "started" {
			t.Errorf("GET VM 1: %+v", one)
		}
		var projects []map[string]any
		e.must(200, "GET", "/v1/projects", "", &projects)
		if len(projects) != 1 || projects[0]["project_id"] != pid {
			t.Errorf("GET /v1/projects: %v", projects)
		}
		e.must(200, "GET", "/v2/projects/"+pid, "", nil)
	})
	t.Run("stop ends the vpcs, and the console goes", func(t *testing.T) {
		e := e.in(t)
		e.must(204, "POST", base+vm2.ID+"/stop", "", nil)
		waitGone(t, pid2)
		var v vmBody
		e.must(200, "GET", base+vm2.ID, "", &v)
		if v.Status != "stopped" {
			t.Errorf("after stop: %+v", v)
		}
		e.must(204, "POST", base+vm2.ID+"/stop", "", nil) // once more: nothing to do
	})
	t.Run("reload runs a new vpcs", func(t *testing.T) {
		e := e.in(t)
		e.must(204, "POST", base+vm1.ID+"/reload", "", nil)
		waitGone(t, pid1)
		pid1 = e.vmRecord(vm1.ID).PID
		if !running(pid1) {
			t.Fatalf("after reload: vpcs %d does not run", pid1)
		}
		dialConsole(t, vm1.Console)
	})
	t.Run("delete of a VM", func(t *testing.T) {
		e := e.in(t)
		e.must(204, "DELETE", base+vm2.ID, "", nil)
		e.must(404, "GET", base+vm2.ID, "", nil)
		e.must(404, "POST", base+vm2.ID+"/start", "", nil)
	})
	t.Run("delete of the project stops its VMs and frees its ports", func(t *testing.T) {
		e := e.in(t)
		e.must(204, "DELETE", "/v1/projects/"+pid, "", nil)
		waitGone(t, pid1)
		e.must(404, "GET", "/v2/projects/"+pid, "", nil)
		e.must(404, "GET", base+vm1.ID, "", nil)
		if held := e.mgrPortsHeld(pid); len(held) != 0 {
			t.Errorf("ports still held for the project: %v", held)
		}
		var projects []map[string]any
		e.must(200, "GET", "/v2/projects", "", &projects)
		if len(projects) != 0 {
			t.Errorf("projects left: %v", projects)
		}
	})
}

// linked is two started VMs whose NIOs point at each other, with
// 192.168.1.1 and .2 set on their consoles.
type linked struct {
	pid          string
	vm1, vm2     vmBody
	port1, port2 int
	c1, c2       *console
}

func (e *gns3Env) link() *linked {
	t := e.t
	t.Helper()
	l := &linked{}
	var proj map[string]any
	e.must(201, "POST", "/v2/projects", `{"name": "links"}`, &proj)
	l.pid = proj["project_id"].(string)
	e.must(201, "POST", "/v2/projects/"+l.pid+"/vms", `{"name": "PC1", "vm_type": "vpcs"}`, &l.vm1)
	e.must(201, "POST", "/v2/projects/"+l.pid+"/vms", `{"name": "PC2", "vm_type": "vpcs"}`, &l.vm2)
	l.port1, l.port2 = e.udpPort(l.pid), e.udpPort(l.pid)
	e.setNIO(l.pid, l.vm1.ID, l.port1, l.port2, "")
	e.setNIO(l.pid, l.vm2.ID, l.port2, l.port1, "")
	e.must(204, "POST", "/v2/projects/"+l.pid+"/vms/"+l.vm1.ID+"/start", "", nil)
	e.must(204, "POST", "/v2/projects/"+l.pid+"/vms/"+l.vm2.ID+"/start", "", nil)
	l.consoles(t)
	return l
}

// consoles dials both consoles and sets the addresses.
func (l *linked) consoles(t *testing.T) {
	t.Helper()
	l.c1, l.c2 = dialConsole(t, l.vm1.Console), dialConsole(t, l.vm2.Console)
	var wg sync.WaitGroup
	for c, ip := range map[*console]string{l.c1: "192.168.1.1/24", l.c2: "192.168.1.2/24"} {
		wg.Go(func() {
			if out := c.run("ip " + ip); !strings.Contains(out, "255.255.255.0") {
				t.Errorf("ip %s: %q", ip, out)
			}
		})
	}
	wg.Wait()
}

func (e *gns3Env) udpPort(pid string) int {
	e.t.Helper()
	var p struct {
		Port int `json:"udp_port"`
	}
	e.must(201, "POST", "/v2/projects/"+pid+"/ports/udp", "", &p)
	return p.Port
}

func (e *gns3Env) setNIO(pid, vmID string, lport, rport int, filters string) {
	e.t.Helper()
	body := fmt.Sprintf(`{"type": "nio_udp", "lport": %d, "rhost": "127.0.0.1", "rport": %d`, lport, rport)
	if filters != "" {
		body += `, "filters": ` + filters
	}
	e.must(201, "POST", "/v2/projects/"+pid+"/vms/"+vmID+"/adapters/0/ports/0/nio", body+"}", nil)
}

func (e *gns3Env) mgrPortsHeld(owner string) []string {
	var out []string
	for _, p := range e.ports.Held(owner) {
		out = append(out, p.String())
	}
	return out
}

// TestGNS3Links changes NIOs and their filters while the VMs ping each
// other.
func TestGNS3Links(t *testing.T) {
	e := newGNS3Env(t, "")
	l := e.link()
	if n := len(l.c2.ping("192.168.1.1", 2)); n != 2 {
		t.Fatalf("before anything: %d replies of 2", n)
	}
	nioPath := "/v2/projects/" + l.pid + "/vms/" + l.vm1.ID + "/adapters/0/ports/0/nio"

	t.Run("a NIO replaced on a new lport carries the pings at once", func(t *testing.T) {
		e := e.in(t)
		// VM 1 moves to a new port; VM 2's NIO follows it with PUT.
		port3 := e.udpPort(l.pid)
		e.setNIO(l.pid, l.vm1.ID, port3, l.port2, "")
		if n := len(l.c2.ping("192.168.1.1", 1)); n != 0 {
			t.Errorf("VM 2 still reaches VM 1 through the old lport: %d replies", n)
		}
		e.must(200, "PUT", "/v2/projects/"+l.pid+"/vms/"+l.vm2.ID+"/adapters/0/ports/0/nio",
			fmt.Sprintf(`{"type": "nio_udp", "lport": %d, "rhost": "127.0.0.1", "rport": %d}`, l.port2, port3), nil)
		if n := len(l.c2.ping("192.168.1.1", 3)); n < 2 {
			t.Errorf("after the swap: %d replies of 3", n)
		}
		// The old lport went back: the project no longer holds it.
		for _, p := range e.mgrPortsHeld(l.pid) {
			if p == fmt.Sprintf("udp/%d", l.port1) {
				t.Errorf("udp/%d is still held after its NIO went", l.port1)
			}
		}
		l.port1 = port3
	})
	t.Run("packet_loss 100 stops the pings, and removing it brings them back", func(t *testing.T) {
		e := e.in(t)
		e.setNIO(l.pid, l.vm1.ID, l.port1, l.port2, `{"packet_loss": [100]}`)
		if n := len(l.c2.ping("192.168.1.1", 2)); n != 0 {
			t.Errorf("with 100%% loss: %d replies", n)
		}
		var nio struct {
			Stats struct {
				FromVM struct {
					Dropped int `json:"dropped_filter"`
				} `json:"from_vm"`
				ToVM struct {
					Dropped int `json:"dropped_filter"`
				} `json:"to_vm"`
			} `json:"stats"`
		}
		e.must(200, "GET", nioPath, "", &nio)
		if nio.Stats.ToVM.Dropped+nio.Stats.FromVM.Dropped == 0 {
			t.Errorf("the relay counts no frame dropped by the filter: %+v", nio)
		}
		e.must(200, "PUT", nioPath, fmt.Sprintf(`{"type": "nio_udp", "lport": %d, "rhost": "127.0.0.1", "rport": %d, "filters": {}}`, l.port1, l.port2), nil)
		if n := len(l.c2.ping("192.168.1.1", 2)); n != 2 {
			t.Errorf("without the filter: %d replies of 2", n)
		}
	})
	t.Run("a delay shows in the round trip", func(t *testing.T) {
		e := e.in(t)
		e.setNIO(l.pid, l.vm1.ID, l.port1, l.port2, `{"delay": [100, 0]}`)
		rtts := l.c2.ping("192.168.1.1", 3)
		if len(rtts) < 2 {
			t.Fatalf("with a delay: %d replies of 3", len(rtts))
		}
		// 100 ms each way through VM 1's relay.
		for _, d := range rtts {
			if d < 190*time.Millisecond || d > 600*time.Millisecond {
				t.Errorf("round trip %v with a 100 ms delay each way", d)
			}
		}
		e.setNIO(l.pid, l.vm1.ID, l.port1, l.port2, "")
		for _, d := range l.c2.ping("192.168.1.1", 2) {
			if d > 100*time.Millisecond {
				t.Errorf("round trip %v after the delay went", d)
			}
		}
	})
	t.Run("a deleted NIO cuts the link", func(t *testing.T) {
		e := e.in(t)
		e.must(204, "DELETE", nioPath, "", nil)
		e.must(404, "GET", nioPath, "", nil)
		if n := len(l.c2.ping("192.168.1.1", 1)); n != 0 {
			t.Errorf("without a NIO: %d replies", n)
		}
		e.setNIO(l.pid, l.vm1.ID, l.port1, l.port2, "")
		if n := len(l.c2.ping("192.168.1.1", 2)); n < 1 {
			t.Errorf("NIO back: %d replies of 2", n)
		}
	})
}

// TestGNS3VPCSKilled kills a VM's vpcs behind leviathan's back: the VM
// goes to stopped, with log.error then vm.stopped on both notification
// streams.
func TestGNS3VPCSKilled(t *testing.T) {
	e := newGNS3Env(t, "")
	var proj map[string]any
	e.must(201, "POST", "/v2/projects", `{"name": "crash"}`, &proj)
	pid := proj["project_id"].(string)
	var v vmBody
	e.must(201, "POST", "/v2/projects/"+pid+"/vms", `{"name": "PC1", "vm_type": "vpcs"}`, &v)
	e.must(204, "POST", "/v2/projects/"+pid+"/vms/"+v.ID+"/start", "", nil)

	req, _ := http.NewRequest("GET", e.srv.URL+"/v2/notifications", nil)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	ws, _, err := e.dialWS("/v2/notifications/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.c.CloseNow()

	vpcsPID := e.vmRecord(v.ID).PID
	kill(t, vpcsPID)

	type note struct {
		Action string         `json:"action"`
		Event  map[string]any `json:"event"`
	}
	check := func(t *testing.T, next func() string) {
		var got []note
		for len(got) < 2 {
			var n note
			decode(t, next(), &n)
			if n.Action != "ping" {
				got = append(got, n)
			}
		}
		msg, _ := got[0].Event["message"].(string)
		if got[0].Action != "log.error" || !strings.Contains(msg, "PC1") || !strings.Contains(msg, "killed") ||
			!strings.Contains(msg, fmt.Sprint(vpcsPID)) {
			t.Errorf("first event %+v, want log.error naming PC1, pid %d and the signal", got[0], vpcsPID)
		}
		if got[1].Action != "vm.stopped" || got[1].Event["vm_id"] != v.ID || got[1].Event["status"] != "stopped" {
			t.Errorf("second event %+v, want vm.stopped of %s", got[1], v.ID)
		}
	}
	t.Run("/v2/notifications", func(t *testing.T) {
		check(t, func() string {
			if !lines.Scan() {
				t.Fatalf("stream ended: %v", lines.Err())
			}
			return lines.Text()
		})
	})
	t.Run("/v2/notifications/ws", func(t *testing.T) {
		check(t, func() string {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, b, err := ws.c.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		})
	})
	var got vmBody
	e.must(200, "GET", "/v2/projects/"+pid+"/vms/"+v.ID, "", &got)
	if got.Status != "stopped" {
		t.Errorf("after the kill: %+v", got)
	}
	// It starts again.
	e.must(204, "POST", "/v2/projects/"+pid+"/vms/"+v.ID+"/start", "", nil)
	dialConsole(t, v.Console)
}

// TestGNS3Restart restarts the daemon's parts: started VMs run again
// (a new vpcs each), with their consoles and NIOs; stopped ones stay
// stopped; ports stay held.
func TestGNS3Restart(t *testing.T) {
	e := newGNS3Env(t, "")
	l := e.link()
	var stopped vmBody
	e.must(201, "POST", "/v1/projects/"+l.pid+"/vpcs/vms", `{"name": "PC3"}`, &stopped)
	before := []int{e.vmRecord(l.vm1.ID).PID, e.vmRecord(l.vm2.ID).PID}
	held := e.mgrPortsHeld(l.pid)

	e.restart()
	for _, pid := range before {
		waitGone(t, pid)
	}
	for _, v := range []vmBody{l.vm1, l.vm2} {
		var got vmBody
		e.must(200, "GET", "/v2/projects/"+l.pid+"/vms/"+v.ID, "", &got)
		if got.Status != "started" || got.Console != v.Console {
			t.Errorf("after restart: %+v", got)
		}
		if pid := e.vmRecord(v.ID).PID; !running(pid) {
			t.Errorf("VM %s: vpcs %d does not run", v.Name, pid)
		}
	}
	var got vmBody
	e.must(200, "GET", "/v1/projects/"+l.pid+"/vpcs/vms/"+stopped.ID, "", &got)
	if got.Status != "stopped" {
		t.Errorf("a stopped VM after restart: %+v", got)
	}
	if after := e.mgrPortsHeld(l.pid); strings.Join(after, " ") != strings.Join(held, " ") {
		t.Errorf("ports held: %v before, %v after", held, after)
	}
	l.consoles(t)
	if n := len(l.c2.ping("192.168.1.1", 2)); n < 1 {
		t.Errorf("after restart: %d replies of 2", n)
	}
}

// TestGNS3Errors checks the statuses of requests that cannot be served.
func TestGNS3Errors(t *testing.T) {
	e := newGNS3Env(t, "")
	var proj map[string]any
	e.must(201, "POST", "/v1/projects", `{"project_id": "42f9feee-3217-4104-981e-85d5f0a806ec"}`, &proj)
	pid := proj["project_id"].(string)
	if pid != "42f9feee-3217-4104-981e-85d5f0a806ec" {
		t.Fatalf("project: %v", proj)
	}
	var v vmBody
	e.must(201, "POST", "/v1/projects/"+pid+"/vpcs/vms", `{"name": "PC1", "vm_id": "24d2e16b-fbef-4259-ae34-7bc21a41ee28"}`, &v)
	var other vmBody
	e.must(201, "POST", "/v1/projects/"+pid+"/vpcs/vms", `{"name": "PC2"}`, &other)
	lport := e.udpPort(pid)
	e.setNIO(pid, other.ID, lport, 20000, "")
	vmPath := "/v1/projects/" + pid + "/vpcs/vms/" + v.ID
	nio := vmPath + "/adapters/0/ports/0/nio"
	unknown := "00000000-0000-4000-8000-000000000000"

	for _, tc := range []struct {
		name, method, path, body string
		want                     int
	}{
		{"unknown project", "GET", "/v2/projects/" + unknown, "", 404},
		{"VM of an unknown project", "POST", "/v2/projects/" + unknown + "/vms", `{"name": "x", "vm_type": "vpcs"}`, 404},
		{"unknown VM", "POST", "/v1/projects/" + pid + "/vpcs/vms/" + unknown + "/start", "", 404},
		{"project ID not a UUID", "POST", "/v2/projects", `{"project_id": "p1"}`, 400},
		{"project exists: the same", "POST", "/v2/projects", `{"project_id": "` + pid + `"}`, 201},
		{"VM with no name", "POST", "/v1/projects/" + pid + "/vpcs/vms", `{}`, 400},
		{"v2 VM with no vm_type", "POST", "/v2/projects/" + pid + "/vms", `{"name": "x"}`, 400},
		{"v2 VM of another type", "POST", "/v2/projects/" + pid + "/vms", `{"name": "x", "vm_type": "qemu"}`, 400},
		{"VM ID taken", "POST", "/v1/projects/" + pid + "/vpcs/vms", `{"name": "x", "vm_id": "` + v.ID + `"}`, 409},
		{"malformed body", "POST", "/v1/projects/" + pid + "/vpcs/vms", `{"name": `, 400},
		{"a startup script with a host command", "POST", "/v1/projects/" + pid + "/vpcs/vms", `{"name": "x", "startup_script": "ip 10.0.0.1\n! id"}`, 400},
		{"adapter 1", "POST", vmPath + "/adapters/1/ports/0/nio", `{"type": "nio_udp", "lport": 20001, "rhost": "127.0.0.1", "rport": 20002}`, 404},
		{"port 1", "POST", vmPath + "/adapters/0/ports/1/nio", `{"type": "nio_udp", "lport": 20001, "rhost": "127.0.0.1", "rport": 20002}`, 404},
		{"adapter not a number", "POST", vmPath + "/adapters/a/ports/0/nio", `{}`, 400},
		{"NIO of another type", "POST", nio, `{"type": "nio_tap", "tap_device": "tap0"}`, 400},
		{"NIO lport out of range", "POST", nio, `{"type": "nio_udp", "lport": 70000, "rhost": "127.0.0.1", "rport": 20002}`, 400},
		{"NIO with no rport", "POST", nio, `{"type": "nio_udp", "lport": 20001, "rhost": "127.0.0.1"}`, 400},
		{"NIO with a bad rhost", "POST", nio, `{"type": "nio_udp", "lport": 20001, "rhost": "not a host", "rport": 20002}`, 400},
		{"NIO with an unknown filter", "POST", nio, `{"type": "nio_udp", "lport": 20001, "rhost": "127.0.0.1", "rport": 20002, "filters": {"bpf": [1]}}`, 400},
		{"NIO on an lport another NIO has", "POST", nio, fmt.Sprintf(`{"type": "nio_udp", "lport": %d, "rhost": "127.0.0.1", "rport": 20002}`, lport), 409},
		{"PUT of a NIO that is not there", "PUT", nio, `{"type": "nio_udp", "lport": 20001, "rhost": "127.0.0.1", "rport": 20002}`, 404},
		{"DELETE of a NIO that is not there", "DELETE", nio, "", 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := e.in(t)
			got, body := e.do(tc.method, tc.path, tc.body)
			if got != tc.want {
				t.Fatalf("%s %s: %d %s, want %d", tc.method, tc.path, got, body, tc.want)
			}
			if got >= 400 {
				var eb errorBody
				decode(t, body, &eb)
				if eb.Status != got || eb.Message == "" {
					t.Errorf("error body %s", body)
				}
			}
		})
	}

	t.Run("vpcs missing", func(t *testing.T) {
		m := newGNS3Env(t, "vpcs-not-installed-here")
		var proj map[string]any
		m.must(201, "POST", "/v2/projects", `{}`, &proj)
		got, body := m.do("POST", "/v2/projects/"+proj["project_id"].(string)+"/vms", `{"name": "x", "vm_type": "vpcs"}`)
		if got != 503 || !strings.Contains(body, "vpcs is not installed") {
			t.Errorf("%d %s", got, body)
		}
	})
	t.Run("no VM manager", func(t *testing.T) {
		w := httptest.NewRecorder()
		New(t.Context(), e.svc, Options{}).ServeHTTP(w, httptest.NewRequest("GET", "/v2/projects", nil))
		if w.Code != 503 {
			t.Errorf("status %d: %s", w.Code, w.Body)
		}
	})
}

// TestGNS3OneVMAtATime fires starts, stops and reloads at one VM and at
// another at once: each request on a VM sees the one before it done, so
// the last answer's state is the VM's state.
func TestGNS3OneVMAtATime(t *testing.T) {
	e := newGNS3Env(t, "")
	var proj map[string]any
	e.must(201, "POST", "/v2/projects", `{}`, &proj)
	pid := proj["project_id"].(string)
	var vms [2]vmBody
	for i := range vms {
		e.must(201, "POST", "/v2/projects/"+pid+"/vms", `{"name": "PC", "vm_type": "vpcs"}`, &vms[i])
	}
	var wg sync.WaitGroup
	for _, v := range vms {
		for _, op := range []string{"start", "stop", "reload", "start", "reload"} {
			wg.Go(func() {
				if got, body := e.do("POST", "/v2/projects/"+pid+"/vms/"+v.ID+"/"+op, ""); got != 204 {
					t.Errorf("%s: %d %s", op, got, body)
				}
			})
		}
	}
	wg.Wait()
	for _, v := range vms {
		var got vmBody
		e.must(200, "GET", "/v2/projects/"+pid+"/vms/"+v.ID, "", &got)
		pid := e.vmRecord(v.ID).PID
		if (got.Status == "started") != (pid != 0 && running(pid)) {
			t.Errorf("VM %s: status %s, vpcs %d running %v", v.ID, got.Status, pid, running(pid))
		}
	}
	e.must(204, "DELETE", "/v2/projects/"+pid, "", nil)
}
