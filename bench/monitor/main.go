// Command monitor measures the /leviathan/monitor fan-out: the latency
// from a membership change's HTTP reply to its event arriving at every
// connected monitor (p50, p99, max), with 1, 100 and 1000 monitors on the
// same CIN, and the events per second fanned out. It runs leviathan
// in-process as "leviathan serve" assembles it, on a real HTTP server on
// 127.0.0.1, with real websocket clients, in throwaway namespaces. Run as
// root: go run ./bench/monitor.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/leviathan-net/leviathan/internal/daemon"
	"github.com/leviathan-net/leviathan/netfab"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "monitor bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	counts := flag.String("monitors", "1,100,1000", "monitor counts to measure")
	changes := flag.Int("changes", 100, "membership changes per count")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	nClients := flag.Int("clients", 0, "internal: run as the client process with this many monitors")
	url := flag.String("url", "", "internal: the client process's monitor URL")
	flag.Parse()
	if *nClients > 0 {
		return clients(ctx, *url, *nClients)
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("run as root: it creates network namespaces")
	}
	b := make([]byte, 4)
	rand.Read(b)
	tag := hex.EncodeToString(b)
	fabric, prefix := "lvbm-fab-"+tag, "lvbm-"+tag+"-"
	state, err := os.MkdirTemp("", "lvbm-state-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(state)
	defer removeNamespaces(prefix, fabric)

	d, err := daemon.Open(ctx, daemon.Config{StateDir: state, HostID: "host1", FabricNetns: fabric, NetnsPrefix: prefix})
	if err != nil {
		return err
	}
	defer d.Close()
	srv := httptest.NewServer(d.Handler)
	defer srv.Close()
	call := func(method, path, body string) error {
		req, _ := http.NewRequestWithContext(ctx, method, srv.URL+path, strings.NewReader(body))
		resp, err := srv.Client().Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("%s %s: %s", method, path, resp.Status)
		}
		return nil
	}
	for _, s := range [][3]string{
		{"POST", "/cen/import", `{"cenList":[{"cenID":"mon","containerIDs":["a","b","c"]}]}`},
		{"POST", "/cen/make", `["mon"]`},
		{"POST", "/cin/import", `{"watched":["mon"]}`},
		{"POST", "/cin/make", `["watched"]`},
	} {
		if err := call(s[0], s[1], s[2]); err != nil {
			return err
		}
	}

	fmt.Printf("monitor fan-out: %d membership changes per row, one CIN, 2 CPUs\n\n", *changes)
	fmt.Printf("%9s %8s %9s %9s %9s %14s   %s\n", "monitors", "events", "p50", "p99", "max", "events/s out", "p99 < 10 ms")
	defer fmt.Println("\nlatency: from the change's HTTP reply to the event read by each monitor (in a client process\nof their own); each change's fan-out completes before the next. events/s: delivered over the run.")
	for _, f := range strings.Split(*counts, ",") {
		var n int
		if _, err := fmt.Sscan(f, &n); err != nil || n < 1 {
			return fmt.Errorf("-monitors: %q", f)
		}
		r, err := measure(ctx, srv.URL, call, n, *changes)
		if err != nil {
			return err
		}
		met := "met"
		if r.p99 >= 10*time.Millisecond {
			met = "MISSED"
		}
		fmt.Printf("%9d %8d %9s %9s %9s %14.0f   %s\n", n, r.events, ms(r.p50), ms(r.p99), ms(r.max), r.rate, met)
	}
	return nil
}

type result struct {
	events        int
	p50, p99, max time.Duration
	rate          float64
}

type arrival struct {
	Container string `json:"c"`
	Event     string `json:"e"`
	At        int64  `json:"t"` // wall clock, ns: comparable across processes on one machine
}

// measure starts n monitors in a client process of their own (so that
// the server's fan-out is not measured against the clients' own Go
// scheduler), fires changes (a container joining, then leaving, in turn)
// one after another, each once the previous one reached every monitor,
// and matches every event each monitor received to its change's HTTP
// reply.
func measure(ctx context.Context, base string, call func(method, path, body string) error, n, changes int) (result, error) {
	self, err := os.Executable()
	if err != nil {
		return result{}, err
	}
	cmd := exec.CommandContext(ctx, self, "-clients", fmt.Sprint(n), "-url", "ws"+strings.TrimPrefix(base, "http")+"/leviathan/monitor")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return result{}, err
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return result{}, err
	}
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	defer cmd.Wait()
	defer in.Close()
	out := bufio.NewReader(outPipe)
	expect := func(want string) error {
		line, err := out.ReadString('\n')
		if err != nil {
			return fmt.Errorf("client process: %w", err)
		}
		if strings.TrimSpace(line) != want {
			return fmt.Errorf("client process: %q, want %q", strings.TrimSpace(line), want)
		}
		return nil
	}
	if err := expect("ready"); err != nil {
		return result{}, err
	}
	type change struct {
		container, event string
		reply            int64
	}
	var fired []change
	start := time.Now()
	for k := range changes {
		ctr := fmt.Sprintf("x%d", k/2)
		method, event := "PUT", "create"
		if k%2 == 1 {
			method, event = "DELETE", "delete"
		}
		if err := call(method, "/host/host1/"+ctr+"/mon", ""); err != nil {
			return result{}, err
		}
		fired = append(fired, change{ctr, event, time.Now().UnixNano()})
		fmt.Fprintf(in, "wait %d\n", k+1)
		if err := expect("ok"); err != nil {
			return result{}, fmt.Errorf("change %d: %w", k, err)
		}
	}
	elapsed := time.Since(start)
	fmt.Fprintln(in, "done")
	var arrivals [][]arrival
	if err := json.NewDecoder(out).Decode(&arrivals); err != nil {
		return result{}, fmt.Errorf("client process: %w", err)
	}
	var lat []time.Duration
	for i := range n {
		if len(arrivals[i]) != changes {
			return result{}, fmt.Errorf("monitor %d got %d events, want %d", i, len(arrivals[i]), changes)
		}
		for k, a := range arrivals[i] {
			f := fired[k]
			if a.Container != f.container || a.Event != f.event {
				return result{}, fmt.Errorf("monitor %d: event %d is %s %s, want %s %s", i, k, a.Event, a.Container, f.event, f.container)
			}
			lat = append(lat, max(0, time.Duration(a.At-f.reply)))
		}
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	return result{events: len(lat), p50: pct(0.50), p99: pct(0.99), max: lat[len(lat)-1], rate: float64(len(lat)) / elapsed.Seconds()}, nil
}

// clients is the client process: n monitors on url. It says "ready"
// once all have started; to "wait K" it answers "ok" when every monitor
// has read K events; on "done" it prints every monitor's arrivals as JSON.
func clients(ctx context.Context, url string, n int) error {
	type raw struct {
		at int64
		b  []byte
	}
	reads := make([][]raw, n)
	counts := make([]atomic.Int64, n)
	conns := make([]*websocket.Conn, n)
	var wg sync.WaitGroup
	for i := range n {
		c, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			return fmt.Errorf("connect monitor %d: %w", i, err)
		}
		conns[i] = c
		if err := c.Write(ctx, websocket.MessageText, []byte(`{"type":"start","sequence":"1","monitor":"CIN","parameters":{"cinID":"watched"}}`)); err != nil {
			return err
		}
		if _, _, err := c.Read(ctx); err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				// No deadline on reads (each would cost a timer): the
				// connection's close ends the loop.
				_, b, err := c.Read(context.Background())
				if err != nil {
					return
				}
				reads[i] = append(reads[i], raw{time.Now().UnixNano(), b})
				counts[i].Add(1)
			}
		}()
	}
	fmt.Println("ready")
	cmds := bufio.NewScanner(os.Stdin)
	for cmds.Scan() {
		var k int64
		if _, err := fmt.Sscanf(cmds.Text(), "wait %d", &k); err == nil {
			deadline := time.Now().Add(10 * time.Second)
			ok := "ok"
			for i := range counts {
				for counts[i].Load() < k && ok == "ok" {
					if time.Now().After(deadline) {
						ok = fmt.Sprintf("timeout: monitor %d has %d of %d", i, counts[i].Load(), k)
					}
					time.Sleep(100 * time.Microsecond)
				}
			}
			fmt.Println(ok)
			continue
		}
		break // done
	}
	for _, c := range conns {
		c.Close(websocket.StatusNormalClosure, "done")
	}
	wg.Wait()
	arrivals := make([][]arrival, n)
	for i := range n {
		arrivals[i] = []arrival{}
		for _, r := range reads[i] {
			var m struct {
				Event   string `json:"event"`
				Message []struct {
					Container string `json:"containerID"`
				} `json:"message"`
			}
			if err := json.Unmarshal(r.b, &m); err != nil {
				return fmt.Errorf("monitor %d: %s: %w", i, r.b, err)
			}
			for _, x := range m.Message {
				arrivals[i] = append(arrivals[i], arrival{x.Container, m.Event, r.at})
			}
		}
	}
	return json.NewEncoder(os.Stdout).Encode(arrivals)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// removeNamespaces deletes the namespaces this run created: its fabric
// and those named with its random prefix.
func removeNamespaces(prefix, fabric string) {
	netfab.DeleteNetns(netfab.NetnsPath(fabric))
	ents, _ := os.ReadDir(netfab.NetnsDir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			netfab.DeleteNetns(filepath.Join(netfab.NetnsDir, e.Name()))
		}
	}
}
