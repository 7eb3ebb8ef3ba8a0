package rest

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/internal/ktest"
	"github.com/leviathan-net/leviathan/netfab"
)

// labEnv is an env with a made bridge CEN cen1 (c1, c2, c3) in a made
// CIN, a made wire CEN cen2 (c1, c4) and a defined CEN cen3 (c1, c2).
func labEnv(t *testing.T, o Options) *env {
	t.Helper()
	e := newEnv(t, o)
	e.must(200, "POST", "/cen/import", `{"cenList":[
		{"cenID":"cen1","containerIDs":["c1","c2","c3"]},
		{"cenID":"cen2","containerIDs":["c1","c4"]},
		{"cenID":"cen3","containerIDs":["c1","c2"]}]}`, nil)
	e.must(200, "POST", "/cen/make", `["cen1","cen2"]`, nil)
	e.must(200, "POST", "/cin/import", `{"cin1":["cen1"]}`, nil)
	e.must(200, "POST", "/cin/make", `["cin1"]`, nil)
	return e
}

// addrOn returns a container's address on a CEN, without its length.
func addrOn(t *testing.T, e *env, container, cenID string) string {
	t.Helper()
	var v core.ContainerView
	e.must(200, "GET", "/host/host1/"+container, "", &v)
	for _, iv := range v.Interfaces {
		if iv.CEN == cenID && iv.IP != nil {
			a, _, _ := strings.Cut(*iv.IP, "/")
			return a
		}
	}
	t.Fatalf("%s has no address on %s: %+v", container, cenID, v.Interfaces)
	return ""
}

// pinger pings addr from a namespace every 100 ms until stopped.
func pinger(t *testing.T, ns, addr string) (stop func()) {
	t.Helper()
	cmd := exec.Command("nsenter", "--net="+ns, "ping", "-q", "-i", "0.1", "-W", "1", addr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
	}
	t.Cleanup(stop)
	return stop
}

// pcapRecord is one frame of a pcap stream.
type pcapRecord struct {
	capLen, wireLen uint32
	data            []byte
}

// readPcap parses a pcap stream with an Ethernet global header.
func readPcap(t *testing.T, b []byte) []pcapRecord {
	t.Helper()
	le := binary.LittleEndian
	if len(b) < 24 || le.Uint32(b) != 0xa1b2c3d4 || le.Uint32(b[20:]) != 1 {
		t.Fatalf("not a pcap stream of Ethernet frames: % x", b[:min(len(b), 24)])
	}
	var out []pcapRecord
	for b = b[24:]; len(b) > 0; {
		if len(b) < 16 {
			t.Fatalf("truncated record header: %d bytes left", len(b))
		}
		r := pcapRecord{capLen: le.Uint32(b[8:]), wireLen: le.Uint32(b[12:])}
		if int(r.capLen) > len(b)-16 || r.capLen > r.wireLen {
			t.Fatalf("bad record: caplen %d, wire %d, %d bytes left", r.capLen, r.wireLen, len(b)-16)
		}
		r.data = b[16 : 16+r.capLen]
		out = append(out, r)
		b = b[16+r.capLen:]
	}
	return out
}

// capture GETs a capture and returns its body once it ends.
func capture(t *testing.T, e *env, path string) []byte {
	t.Helper()
	resp, err := e.srv.Client().Get(e.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/vnd.tcpdump.pcap" {
		t.Errorf("Content-Type %q", ct)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// settled waits until the goroutine count is back to at most base (not
// checked when base < 0), and the server holds no capture socket.
func settled(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if (base < 0 || n <= base) && netfab.OpenCaptures() == 0 {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("after the capture: %d goroutines (want at most %d), %d capture sockets open\n%s",
				n, base, netfab.OpenCaptures(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// packetSockets returns the packet sockets of the namespace at ns, as
// /proc/net/packet lists them there.
func packetSockets(t *testing.T, ns string) int {
	t.Helper()
	out, err := exec.Command("nsenter", "--net="+ns, "cat", "/proc/net/packet").Output()
	if err != nil {
		t.Fatal(err)
	}
	return len(strings.Split(strings.TrimSpace(string(out)), "\n")) - 1
}

func TestCaptureReadByTcpdump(t *testing.T) {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Skip("tcpdump is not installed (apt-get install -y tcpdump)")
	}
	e := labEnv(t, Options{})
	from, to := addrOn(t, e, "c1", "cen1"), addrOn(t, e, "c2", "cen1")
	ktest.Ping(t, e.ns("c1"), to) // ARP settled: the capture sees ICMP only
	e.srv.Client().Transport.(*http.Transport).CloseIdleConnections()
	base := runtime.NumGoroutine()

	// A capture of c1's port on the bridge, read by tcpdump as it
	// streams, during two pings; then the client goes away.
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/host/host1/c1/cen1/pcap", nil)
	tr := &http.Transport{}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := packetSockets(t, e.fab.Path()); got != 1 {
		t.Errorf("fabric holds %d packet sockets during the capture, want 1", got)
	}
	var out bytes.Buffer
	td := exec.Command("tcpdump", "-n", "-l", "-r", "-")
	td.Stdin, td.Stdout, td.Stderr = resp.Body, &out, os.Stderr
	if err := td.Start(); err != nil {
		t.Fatal(err)
	}
	ping := exec.Command("nsenter", "--net="+e.ns("c1"), "ping", "-c", "2", "-i", "0.2", "-W", "1", to)
	if b, err := ping.CombinedOutput(); err != nil {
		t.Fatalf("ping: %v: %s", err, b)
	}
	time.Sleep(200 * time.Millisecond) // the last reply reaches tcpdump
	cancel()
	td.Wait() // the stream ends: tcpdump sees its end
	resp.Body.Close()
	tr.CloseIdleConnections()

	text := out.String()
	for _, want := range []string{from + " > " + to + ": ICMP echo request", to + " > " + from + ": ICMP echo reply"} {
		if n := strings.Count(text, want); n != 2 {
			t.Errorf("tcpdump shows %q %d times, want 2 (once per ping, one direction each):\n%s", want, n, text)
		}
	}
	settled(t, base)
	if got := packetSockets(t, e.fab.Path()); got != 0 {
		t.Errorf("fabric holds %d packet sockets after the capture, want 0", got)
	}
}

func TestCaptureCountAndConcurrent(t *testing.T) {
	e := labEnv(t, Options{})
	stop := pinger(t, e.ns("c1"), addrOn(t, e, "c2", "cen1"))
	defer stop()

	// Two captures at once, on both ends of the pings, each ending by
	// itself after its count.
	var wg sync.WaitGroup
	got := map[string][]pcapRecord{}
	var mu sync.Mutex
	for _, p := range []string{"/host/host1/c1/cen1/pcap?count=4", "/host/host1/c2/cen1/pcap?count=6"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := capture(t, e, p)
			mu.Lock()
			got[p] = readPcap(t, b)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if n := len(got["/host/host1/c1/cen1/pcap?count=4"]); n != 4 {
		t.Errorf("c1: %d frames, want 4", n)
	}
	if n := len(got["/host/host1/c2/cen1/pcap?count=6"]); n != 6 {
		t.Errorf("c2: %d frames, want 6", n)
	}

	// A wire has no fabric end: the capture is on the member's own end.
	ktest.IP(t, "-n", e.prefix+"c1", "addr", "add", "10.250.0.1/24", "dev", "cen2")
	ktest.IP(t, "-n", e.prefix+"c4", "addr", "add", "10.250.0.2/24", "dev", "cen2")
	stopWire := pinger(t, e.ns("c4"), "10.250.0.1")
	defer stopWire()
	recs := readPcap(t, capture(t, e, "/host/host1/c4/cen2/pcap?count=3"))
	if len(recs) != 3 {
		t.Errorf("wire: %d frames, want 3", len(recs))
	}
	for _, r := range recs {
		if r.wireLen < 14 || len(r.data) != int(r.capLen) {
			t.Errorf("wire: bad record %+v", r)
		}
	}
	settled(t, -1)
}

func TestCaptureErrors(t *testing.T) {
	e := labEnv(t, Options{})
	e.must(201, "PUT", "/host/host1/c9", "", nil)
	for _, tc := range []struct {
		name, path string
		status     int
	}{
		{"unknown host", "/host/host9/c1/cen1/pcap", 404},
		{"unknown container", "/host/host1/nope/cen1/pcap", 404},
		{"unknown CEN", "/host/host1/c1/nope/pcap", 404},
		{"not a member", "/host/host1/c9/cen1/pcap", 404},
		{"CEN not made", "/host/host1/c1/cen3/pcap", 409},
		{"negative count", "/host/host1/c1/cen1/pcap?count=-1", 400},
		{"zero count", "/host/host1/c1/cen1/pcap?count=0", 400},
		{"absurd count", "/host/host1/c1/cen1/pcap?count=99999999999999999999", 400},
		{"count not a number", "/host/host1/c1/cen1/pcap?count=ten", 400},
		{"bad ID", "/host/host1/c1/-x/pcap", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := e.in(t)
			status, body := e.do("GET", tc.path, "")
			var eb errorBody
			if err := json.Unmarshal([]byte(body), &eb); err != nil || status != tc.status || eb.Status != tc.status || eb.Message == "" {
				t.Errorf("GET %s: %d %s, want a JSON %d", tc.path, status, body, tc.status)
			}
		})
	}
	if n := netfab.OpenCaptures(); n != 0 {
		t.Errorf("%d capture sockets open after refused captures", n)
	}
}

func TestTopology(t *testing.T) {
	e := labEnv(t, Options{})
	var topo core.Topology
	e.must(200, "GET", "/topology", "", &topo)
	nodes := map[string]core.TopoNode{}
	for _, n := range topo.Nodes {
		nodes[n.ID] = n
	}
	for _, id := range []string{"host:host1", "cin:cin1", "cen:cen1", "cen:cen2", "cen:cen3",
		"container:host1/c1", "container:host1/c2", "container:host1/c3", "container:host1/c4"} {
		if _, ok := nodes[id]; !ok {
			t.Errorf("no node %q in %+v", id, topo.Nodes)
		}
	}
	if p := nodes["cen:cen1"].Parent; p != "cin:cin1" {
		t.Errorf("cen1's parent is %q, want its CIN", p)
	}
	if w := nodes["cen:cen2"].Wiring; w == nil || *w != "wire" {
		t.Errorf("cen2's wiring: %v", w)
	}
	links := map[string]core.TopoLink{}
	for _, l := range topo.Links {
		links[l.CEN+"/"+l.Container] = l
	}
	if len(topo.Links) != 7 {
		t.Errorf("%d links, want 7 (3 on cen1, 2 on cen2, 2 on cen3)", len(topo.Links))
	}
	l := links["cen1/c1"]
	if l.State != core.LinkWired || l.Interface != "cen1" || l.MAC == "" || l.IP == nil || l.Pcap != "/host/host1/c1/cen1/pcap" {
		t.Errorf("cen1/c1 link: %+v", l)
	}
	if l := links["cen3/c1"]; l.State != core.LinkUnwired || l.Pcap != "" {
		t.Errorf("cen3/c1 (CEN not made): %+v", l)
	}

	t.Run("dot", func(t *testing.T) {
		resp, err := e.srv.Client().Get(e.srv.URL + "/topology?format=dot")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/vnd.graphviz") {
			t.Errorf("Content-Type %q", ct)
		}
		dot, _ := io.ReadAll(resp.Body)
		if _, err := exec.LookPath("dot"); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal("graphviz is not installed (scripts/deps.sh installs it)")
			}
			t.Skip("graphviz is not installed (apt-get install -y graphviz, or make deps)")
		}
		cmd := exec.Command("dot", "-Tsvg")
		cmd.Stdin = bytes.NewReader(dot)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		svg, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Fatalf("dot: %v: %s\n%s", err, stderr.String(), dot)
		}
		for _, name := range []string{"c1", "c2", "c3", "c4", "cen1", "CIN cin1"} {
			if !bytes.Contains(svg, []byte(">"+name)) {
				t.Errorf("the SVG has no %q", name)
			}
		}
	})
	t.Run("mermaid", func(t *testing.T) {
		status, text := e.in(t).do("GET", "/topology?format=mermaid", "")
		if status != 200 || !strings.HasPrefix(text, "flowchart LR\n") {
			t.Fatalf("%d %s", status, text)
		}
		for _, name := range []string{`"c1 (running)"`, `"c2 (running)"`, `"c3 (running)"`, `"c4 (running)"`, `"cen1 (configured)"`, "CIN cin1"} {
			if !strings.Contains(text, name) {
				t.Errorf("no %s in\n%s", name, text)
			}
		}
	})
	t.Run("bad format", func(t *testing.T) {
		e.in(t).must(400, "GET", "/topology?format=svg", "", nil)
	})
}
