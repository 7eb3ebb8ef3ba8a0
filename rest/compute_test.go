package rest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"

	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/internal/ktest"
)

// controller talks to a leviathan compute as a GNS3 2.2.59 controller
// does (reference/gns3-compute-2.2.md): basic auth on every request, a
// new connection per request, content-type application/json even with
// no body.
type controller struct {
	t    *testing.T
	base string
}

const computeAuth = "gns3:secret"

func newComputeEnv(t *testing.T) (*gns3Env, *controller) {
	e := newGNS3Env(t, "")
	e.opts.Auth = computeAuth
	e.restart()
	return e, &controller{t: t, base: e.srv.URL + "/v2/compute"}
}

// api is the leviathan API of the same server, with the same auth.
func (c *controller) api() *controller {
	return &controller{t: c.t, base: strings.TrimSuffix(c.base, "/v2/compute")}
}

func (c *controller) do(method, path, body string) (int, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	user, pass, _ := strings.Cut(computeAuth, ":")
	req.SetBasicAuth(user, pass)
	req.Header.Set("Content-Type", "application/json")
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func (c *controller) must(want int, method, path, body string, out any) {
	c.t.Helper()
	got, b := c.do(method, path, body)
	if got != want {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, got, want, b)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(b), out); err != nil {
			c.t.Fatalf("%s %s: decode %q: %v", method, path, b, err)
		}
	}
}

// computeMsg is one notification, as the controller reads it.
type computeMsg struct {
	Action    string          `json:"action"`
	Event     json.RawMessage `json:"event"`
	ProjectID string          `json:"project_id"`
	at        time.Time
}

// notifications is the controller's websocket to the compute.
type notifications struct {
	t    *testing.T
	c    *websocket.Conn
	mu   sync.Mutex
	msgs []computeMsg
	wake chan struct{}
}

func (c *controller) notifications() *notifications {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h := http.Header{}
	user, pass, _ := strings.Cut(computeAuth, ":")
	req, _ := http.NewRequest("GET", "http://x", nil)
	req.SetBasicAuth(user, pass)
	h.Set("Authorization", req.Header.Get("Authorization"))
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(c.base, "http")+"/notifications/ws", &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		c.t.Fatal(err)
	}
	n := &notifications{t: c.t, c: ws, wake: make(chan struct{}, 1)}
	c.t.Cleanup(func() { ws.CloseNow() })
	go func() {
		for {
			_, b, err := ws.Read(context.Background())
			if err != nil {
				return
			}
			var m computeMsg
			if json.Unmarshal(b, &m) == nil {
				m.at = time.Now()
				n.mu.Lock()
				n.msgs = append(n.msgs, m)
				n.mu.Unlock()
				select {
				case n.wake <- struct{}{}:
				default:
				}
			}
		}
	}()
	return n
}

// find returns the first message after from matching ok, waiting up to
// within for it.
func (n *notifications) find(from int, within time.Duration, ok func(computeMsg) bool) (computeMsg, bool) {
	deadline := time.After(within)
	for {
		n.mu.Lock()
		for _, m := range n.msgs[min(from, len(n.msgs)):] {
			if ok(m) {
				n.mu.Unlock()
				return m, true
			}
		}
		n.mu.Unlock()
		select {
		case <-n.wake:
		case <-deadline:
			return computeMsg{}, false
		}
	}
}

func (n *notifications) len() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.msgs)
}

// nodeUpdated matches a node.updated of a node with a status.
func nodeUpdated(nodeID, status string) func(computeMsg) bool {
	return func(m computeMsg) bool {
		var ev struct {
			NodeID    string `json:"node_id"`
			ProjectID string `json:"project_id"`
			Status    string `json:"status"`
		}
		json.Unmarshal(m.Event, &ev)
		return m.Action == "node.updated" && ev.NodeID == nodeID && ev.Status == status && m.ProjectID == ev.ProjectID && ev.ProjectID != ""
	}
}

// computeNode is what the test reads of node JSON.
type computeNode struct {
	NodeID  string `json:"node_id"`
	Name    string `json:"name"`
	Console int    `json:"console"`
	Status  string `json:"status"`
}

const vpcsStartup = "# This the configuration for %h\\n#\\n# Uncomment the following line to enable DHCP\\n# dhcp\\n# or the line below to manually setup an IP address and subnet mask\\n# ip 192.168.1.1 255.255.255.0\\n#\\n\\nset pcname %h\\n"

// A GNS3 2.2.59 controller's calls, as recorded in the reference, replayed
// against a real server with basic auth: two VPCS on a switch that is a
// CEN, a netns container on it, filters, suspension, capture, close and
// re-open, delete.
func TestComputeControllerFlow(t *testing.T) {
	e, ctl := newComputeEnv(t)
	const (
		pid = "9b4a9d6e-1c3c-4f0e-8a45-0a7e6e3c2f11"
		pc1 = "0d6b6bd4-1111-4b0e-9d35-5e0c1e4d2a01"
		pc2 = "0d6b6bd4-2222-4b0e-9d35-5e0c1e4d2a02"
		sw  = "7c1f0e2a-3333-4c55-8e66-77f8a9b0c1d2"
	)
	t.Run("unauthenticated", func(t *testing.T) {
		if s, _ := e.do("GET", "/v2/compute/capabilities", ""); s != 401 {
			t.Errorf("capabilities without auth: %d, want 401", s)
		}
	})
	var caps map[string]any
	ctl.must(200, "GET", "/capabilities", "", &caps)
	if caps["version"] != "2.2.59" || caps["platform"] != "linux" {
		t.Errorf("capabilities: %v", caps)
	}
	notes := ctl.notifications()
	if m, ok := notes.find(0, 5*time.Second, func(m computeMsg) bool { return m.Action == "ping" }); !ok {
		t.Fatal("no ping on the notification websocket")
	} else {
		var p map[string]float64
		json.Unmarshal(m.Event, &p)
		if _, ok := p["cpu_usage_percent"]; !ok {
			t.Errorf("ping without cpu_usage_percent: %s", m.Event)
		}
		if mem, ok := p["memory_usage_percent"]; !ok || mem <= 0 || mem > 100 {
			t.Errorf("ping memory_usage_percent: %s", m.Event)
		}
	}

	var proj map[string]any
	ctl.must(201, "POST", "/projects", `{"name":"flow-1","project_id":"`+pid+`"}`, &proj)
	if d := cmp.Diff(map[string]any{"name": "flow-1", "project_id": pid, "variables": nil}, proj); d != "" {
		t.Errorf("project (-want +got):\n%s", d)
	}
	nodes := base(pid)
	createAll := func(t *testing.T, reopen map[string]int) {
		t.Helper()
		for _, n := range []struct{ id, name string }{{pc1, "PC1"}, {pc2, "PC2"}} {
			body := fmt.Sprintf(`{"name":%q,"node_id":%q,"startup_script":"%s"}`, n.name, n.id, vpcsStartup)
			if reopen != nil {
				body = fmt.Sprintf(`{"name":%q,"node_id":%q,"console":%d,"console_type":"telnet","startup_script":"%s"}`, n.name, n.id, reopen[n.id], vpcsStartup)
			}
			var v computeNode
			ctl.must(201, "POST", nodes+"/vpcs/nodes", body, &v)
			if v.NodeID != n.id || v.Status != "stopped" || v.Console == 0 || (reopen != nil && v.Console != reopen[n.id]) {
				t.Errorf("%s: %+v (re-open consoles %v)", n.name, v, reopen)
			}
		}
		ctl.must(201, "POST", nodes+"/ethernet_switch/nodes", `{"name":"Switch1","console_type":"none","node_id":"`+sw+`"}`, nil)
	}
	// link joins a VPCS to a switch port as the controller does: two UDP
	// ports, then a NIO on each end.
	lports := map[string]int{}
	link := func(t *testing.T, vpcs string, port int) {
		t.Helper()
		var a, b struct {
			Port int `json:"udp_port"`
		}
		ctl.must(201, "POST", "/projects/"+pid+"/ports/udp", "", &a)
		ctl.must(201, "POST", "/projects/"+pid+"/ports/udp", "", &b)
		ctl.must(201, "POST", nodes+"/vpcs/nodes/"+vpcs+"/adapters/0/ports/0/nio",
			fmt.Sprintf(`{"lport":%d,"rhost":"127.0.0.1","rport":%d,"type":"nio_udp","filters":{},"suspend":false}`, a.Port, b.Port), nil)
		ctl.must(201, "POST", nodes+"/ethernet_switch/nodes/"+sw+fmt.Sprintf("/adapters/0/ports/%d/nio", port),
			fmt.Sprintf(`{"lport":%d,"rhost":"127.0.0.1","rport":%d,"type":"nio_udp","filters":{},"suspend":false}`, b.Port, a.Port), nil)
		lports[vpcs], lports[fmt.Sprint(port)] = a.Port, b.Port
	}
	start := func(t *testing.T, id string) {
		t.Helper()
		from := notes.len()
		ctl.must(204, "POST", nodes+"/vpcs/nodes/"+id+"/start", "", nil)
		answered := time.Now()
		m, ok := notes.find(from, 5*time.Second, nodeUpdated(id, "started"))
		if !ok {
			t.Fatalf("no node.updated started for %s", id)
		}
		// The server writes node.updated before it answers; the client's
		// reader may see it a moment after the answer is read.
		if m.at.After(answered.Add(200 * time.Millisecond)) {
			t.Errorf("node.updated came %v after the start answer", m.at.Sub(answered))
		}
	}

	createAll(t, nil)
	var cens []core.CENView
	ctl.api().must(200, "GET", "/cen", "", &cens)
	if !slices.ContainsFunc(cens, func(c core.CENView) bool { return c.ID == "Switch1" }) {
		t.Fatalf("the switch's CEN Switch1 is not in GET /cen: %+v", cens)
	}
	link(t, pc1, 0)
	link(t, pc2, 1)
	start(t, pc1)
	start(t, pc2)
	ctl.must(204, "POST", nodes+"/ethernet_switch/nodes/"+sw+"/start", "", nil)
	var n1, n2 computeNode
	ctl.must(200, "GET", nodes+"/vpcs/nodes/"+pc1, "", &n1)
	ctl.must(200, "GET", nodes+"/vpcs/nodes/"+pc2, "", &n2)
	pids := []int{e.vmRecord(pc1).PID, e.vmRecord(pc2).PID}
	k1, k2 := dialConsolePrompt(t, n1.Console, "PC1> "), dialConsolePrompt(t, n2.Console, "PC2> ")
	k1.run("ip 192.168.50.1/24")
	k2.run("ip 192.168.50.2/24")
	pings := func(t *testing.T, k *console, addr string) bool {
		t.Helper()
		k.t = t
		return len(k.ping(addr, 2)) > 0
	}
	t.Run("ping through the switch", func(t *testing.T) {
		if !pings(t, k1, "192.168.50.2") {
			t.Error("PC1 does not reach PC2 through the switch")
		}
	})
	t.Run("a container on the switch", func(t *testing.T) {
		e := e.in(t)
		ctl.api().must(200, "PUT", "/host/host1/c1/Switch1", "", nil)
		ktest.IP(t, "-n", e.prefix+"c1", "addr", "add", "192.168.50.3/24", "dev", "Switch1")
		for _, a := range []string{"192.168.50.1", "192.168.50.2"} {
			if !ktest.Ping(t, e.ns("c1"), a) {
				t.Errorf("c1 does not reach %s", a)
			}
		}
		if !pings(t, k1, "192.168.50.3") || !pings(t, k2, "192.168.50.3") {
			t.Error("the VPCS do not reach c1")
		}
	})
	nio := func(filters string, suspend bool) string {
		return fmt.Sprintf(`{"lport":%d,"rhost":"127.0.0.1","rport":%d,"type":"nio_udp","filters":%s,"suspend":%v}`, lports[pc1], lports["0"], filters, suspend)
	}
	t.Run("filters", func(t *testing.T) {
		ctl.must(200, "PUT", nodes+"/vpcs/nodes/"+pc1+"/adapters/0/ports/0/nio", nio(`{"packet_loss":[100]}`, false), nil)
		if pings(t, k1, "192.168.50.2") {
			t.Error("pings pass with 100% packet_loss")
		}
		ctl.must(200, "PUT", nodes+"/vpcs/nodes/"+pc1+"/adapters/0/ports/0/nio", nio(`{}`, false), nil)
		if !pings(t, k1, "192.168.50.2") {
			t.Error("pings do not pass once the filter is gone")
		}
	})
	t.Run("suspend", func(t *testing.T) {
		ctl.must(200, "PUT", nodes+"/ethernet_switch/nodes/"+sw+"/adapters/0/ports/0/nio",
			fmt.Sprintf(`{"lport":%d,"rhost":"127.0.0.1","rport":%d,"type":"nio_udp","filters":{},"suspend":true}`, lports["0"], lports[pc1]), nil)
		if pings(t, k1, "192.168.50.2") {
			t.Error("pings pass a suspended link")
		}
		ctl.must(200, "PUT", nodes+"/ethernet_switch/nodes/"+sw+"/adapters/0/ports/0/nio",
			fmt.Sprintf(`{"lport":%d,"rhost":"127.0.0.1","rport":%d,"type":"nio_udp","filters":{},"suspend":false}`, lports["0"], lports[pc1]), nil)
		if !pings(t, k1, "192.168.50.2") {
			t.Error("pings do not pass once the link is resumed")
		}
	})
	t.Run("capture", func(t *testing.T) {
		var cv struct {
			Path string `json:"pcap_file_path"`
		}
		port := nodes + "/vpcs/nodes/" + pc1 + "/adapters/0/ports/0"
		ctl.must(200, "POST", port+"/start_capture", `{"capture_file_name":"PC1_0-Switch1_0.pcap","data_link_type":"DLT_EN10MB"}`, &cv)
		if !strings.HasSuffix(cv.Path, "PC1_0-Switch1_0.pcap") {
			t.Errorf("pcap_file_path %q", cv.Path)
		}
		got := make(chan []byte, 1)
		go func() {
			req, _ := http.NewRequest("GET", ctl.base+port+"/pcap", nil)
			u, p, _ := strings.Cut(computeAuth, ":")
			req.SetBasicAuth(u, p)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				got <- nil
				return
			}
			defer resp.Body.Close()
			if resp.Header.Get("Content-Type") != "application/vnd.tcpdump.pcap" {
				t.Errorf("pcap content type %q", resp.Header.Get("Content-Type"))
			}
			b, _ := io.ReadAll(resp.Body)
			got <- b
		}()
		pings(t, k1, "192.168.50.2")
		ctl.must(204, "POST", port+"/stop_capture", "", nil)
		select {
		case b := <-got:
			// A 24-byte header, then records of 16 bytes and a frame.
			if len(b) < 24+16+42 {
				t.Errorf("pcap stream of %d bytes", len(b))
			}
		case <-time.After(10 * time.Second):
			t.Error("the pcap stream did not end with the capture")
		}
		if fi, err := os.Stat(cv.Path); err != nil || fi.Size() < 24+16+42 {
			t.Errorf("capture file: %v", err)
		}
	})
	t.Run("stop", func(t *testing.T) {
		for _, id := range []string{pc1, pc2} {
			from := notes.len()
			ctl.must(204, "POST", nodes+"/vpcs/nodes/"+id+"/stop", "", nil)
			if _, ok := notes.find(from, 5*time.Second, nodeUpdated(id, "stopped")); !ok {
				t.Errorf("no node.updated stopped for %s", id)
			}
		}
	})

	// Closing: the controller stops every node, then closes.
	for _, p := range []string{"/vpcs/nodes/" + pc1, "/vpcs/nodes/" + pc2, "/ethernet_switch/nodes/" + sw} {
		ctl.must(204, "POST", nodes+p+"/stop", "", nil)
	}
	ctl.must(204, "POST", "/projects/"+pid+"/close", "", nil)
	closed := func(t *testing.T) {
		t.Helper()
		for _, p := range pids {
			if running(p) {
				t.Errorf("vpcs %d runs after close", p)
			}
		}
		for name := range ktest.Links(t, e.fab.Path()) {
			if strings.HasPrefix(name, "lt~") || name == "Switch1" {
				t.Errorf("%s left in the fabric after close", name)
			}
		}
		for what, p := range lports {
			c, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				t.Errorf("UDP port %d (%s) still bound after close: %v", p, what, err)
				continue
			}
			c.Close()
		}
		if held := e.ports.Held(pid); len(held) > 0 {
			t.Errorf("ports held after close: %v", held)
		}
		var cens []core.CENView
		ctl.api().must(200, "GET", "/cen", "", &cens)
		if slices.ContainsFunc(cens, func(c core.CENView) bool { return c.ID == "Switch1" }) {
			t.Error("the switch's CEN is left after close")
		}
	}
	t.Run("closed: nothing left", closed)

	t.Run("re-open", func(t *testing.T) {
		ctl.must(201, "POST", "/projects", `{"name":"flow-1","project_id":"`+pid+`"}`, nil)
		createAll(t, map[string]int{pc1: n1.Console, pc2: n2.Console})
		link(t, pc1, 0)
		link(t, pc2, 1)
		start(t, pc1)
		start(t, pc2)
		k1, k2 := dialConsolePrompt(t, n1.Console, "PC1> "), dialConsolePrompt(t, n2.Console, "PC2> ")
		k1.run("ip 192.168.50.1/24")
		k2.run("ip 192.168.50.2/24")
		if !pings(t, k1, "192.168.50.2") {
			t.Error("PC1 does not reach PC2 after the re-open")
		}
		pids = []int{e.vmRecord(pc1).PID, e.vmRecord(pc2).PID}
	})

	t.Run("delete", func(t *testing.T) {
		ctl.must(204, "DELETE", "/projects/"+pid, "", nil)
		for _, p := range []string{"/vpcs/nodes/" + pc1, "/vpcs/nodes/" + pc2, "/ethernet_switch/nodes/" + sw} {
			if s, b := ctl.do("POST", nodes+p+"/stop", ""); s != 404 || !strings.Contains(b, `"status":404`) {
				t.Errorf("stop after delete: %d %s", s, b)
			}
		}
		if s, _ := ctl.do("POST", "/projects/"+pid+"/close", ""); s != 404 {
			t.Errorf("close after delete: %d", s)
		}
		closed(t)
		if _, err := os.Stat(filepath.Join(e.dir, "projects", pid)); !os.IsNotExist(err) {
			t.Errorf("project directory after delete: %v", err)
		}
	})
}

func base(pid string) string { return "/projects/" + pid }

// The answers a controller reads: capabilities exactly (golden), node
// JSON with every field the reference lists, errors in GNS3's shape.
func TestComputeAnswers(t *testing.T) {
	_, ctl := newComputeEnv(t)
	_, caps := ctl.do("GET", "/capabilities", "")
	golden(t, "compute_capabilities", caps)

	const pid = "11111111-2222-4333-8444-555555555555"
	ctl.must(201, "POST", "/projects", `{"name":"p","project_id":"`+pid+`"}`, nil)
	keys := func(s string) []string {
		var m map[string]any
		decode(t, s, &m)
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		return ks
	}
	s, b := ctl.do("POST", base(pid)+"/vpcs/nodes", `{"name":"PC1","node_id":"22222222-2222-4333-8444-555555555555"}`)
	if s != 201 {
		t.Fatalf("create VPCS: %d %s", s, b)
	}
	want := []string{"command_line", "console", "console_type", "name", "node_directory", "node_id", "project_id", "status"}
	if d := cmp.Diff(want, keys(b)); d != "" {
		t.Errorf("VPCS node JSON keys (-want +got):\n%s", d)
	}
	s, b = ctl.do("POST", base(pid)+"/ethernet_switch/nodes", `{"name":"Switch1","console_type":"none","node_id":"33333333-2222-4333-8444-555555555555"}`)
	if s != 201 {
		t.Fatalf("create switch: %d %s", s, b)
	}
	for _, k := range []string{"name", "node_id", "project_id", "ports_mapping", "status", "console", "console_type"} {
		if !slices.Contains(keys(b), k) {
			t.Errorf("switch JSON has no %q: %s", k, b)
		}
	}
	var swv struct {
		Ports []map[string]any `json:"ports_mapping"`
	}
	decode(t, b, &swv)
	if len(swv.Ports) != 8 || fmt.Sprint(swv.Ports[0]) != fmt.Sprint(map[string]any{"name": "Ethernet0", "port_number": 0.0, "type": "access", "vlan": 1.0}) {
		t.Errorf("default ports_mapping: %v", swv.Ports)
	}
	s, b = ctl.do("POST", base(pid)+"/ethernet_hub/nodes", `{"name":"Hub1","console_type":"none","node_id":"44444444-2222-4333-8444-555555555555","ports_mapping":[{"name":"Ethernet0","port_number":0},{"name":"Ethernet1","port_number":1}]}`)
	if s != 201 || !strings.Contains(b, `"ports_mapping":[{"name":"Ethernet0","port_number":0},{"name":"Ethernet1","port_number":1}]`) {
		t.Errorf("create hub: %d %s", s, b)
	}
	for _, c := range []struct {
		name, method, path, body string
		status                   int
		has                      string
	}{
		{"trunk", "POST", base(pid) + "/ethernet_switch/nodes", `{"name":"S2","node_id":"55555555-2222-4333-8444-555555555555","ports_mapping":[{"name":"Ethernet0","port_number":0,"type":"dot1q","vlan":1}]}`, 409, "802.1Q"},
		{"bad JSON", "POST", base(pid) + "/vpcs/nodes", `{"name":`, 400, "request body"},
		{"no such node", "GET", base(pid) + "/vpcs/nodes/66666666-2222-4333-8444-555555555555", "", 404, "not found"},
		{"no such project", "POST", "/projects/77777777-2222-4333-8444-555555555555/close", "", 404, "not found"},
		{"node exists", "POST", base(pid) + "/vpcs/nodes", `{"name":"PC1","node_id":"22222222-2222-4333-8444-555555555555"}`, 409, "exists"},
		{"no such switch port", "POST", base(pid) + "/ethernet_switch/nodes/33333333-2222-4333-8444-555555555555/adapters/0/ports/9/nio", `{"lport":20001,"rhost":"127.0.0.1","rport":20002,"type":"nio_udp"}`, 404, "port 9"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, b := ctl.do(c.method, c.path, c.body)
			var eb struct {
				Status  int    `json:"status"`
				Message string `json:"message"`
			}
			decode(t, b, &eb)
			if s != c.status || eb.Status != c.status || !strings.Contains(eb.Message, c.has) {
				t.Errorf("%d %s, want %d with %q", s, b, c.status, c.has)
			}
		})
	}
	ctl.must(204, "DELETE", "/projects/"+pid, "", nil)
	var cens []core.CENView
	ctl.api().must(200, "GET", "/cen", "", &cens)
	if len(cens) != 0 {
		t.Errorf("CENs left after the project went: %+v", cens)
	}
}

// golden compares got with testdata/NAME.golden.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./rest -update to create it)", err)
	}
	if d := cmp.Diff(string(want), got+"\n"); d != "" {
		t.Errorf("%s differs (-want +got):\n%s", path, d)
	}
}
