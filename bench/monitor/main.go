// Command monitor measures the /leviathan/monitor fan-out: the latency
// from a membership change's HTTP reply to its event arriving at every
// connected monitor (p50, p99, max), with 1, 100 and 1000 monitors on the
// same CIN, and the events per second fanned out. It runs leviathan
// in-process as "leviathan serve" assembles it, on a real HTTP server on
// 127.0.0.1, with real websocket clients, in throwaway namespaces. Run as
// root: go run ./bench/monitor.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
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
	flag.Parse()
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
	defer fmt.Println("\nlatency: from the change's HTTP reply to the event read by each monitor; each change's\nfan-out completes before the next change. events/s: events delivered over the run.")
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
	container string
	event     string
	at        time.Time
}

// measure connects n monitors, fires changes (one container joining,
// then leaving, in turn) one after another, and matches every event each
// monitor receives to the HTTP reply of its change.
func measure(ctx context.Context, base string, call func(method, path, body string) error, n, changes int) (result, error) {
	wsURL := "ws" + strings.TrimPrefix(base, "http") + "/leviathan/monitor"
	// Each client only timestamps and keeps what it reads, counting it in
	// its own atomic: decoding waits until the run is over, so the
	// clients (in this process) take as little CPU from the server as
	// they can.
	type raw struct {
		at time.Time
		b  []byte
	}
	reads := make([][]raw, n)
	counts := make([]atomic.Int64, n)
	conns := make([]*websocket.Conn, n)
	var wg sync.WaitGroup
	errc := make(chan error, n)
	for i := range n {
		c, _, err := websocket.Dial(ctx, wsURL, nil)
		if err != nil {
			return result{}, fmt.Errorf("connect monitor %d: %w", i, err)
		}
		conns[i] = c
		if err := c.Write(ctx, websocket.MessageText, []byte(`{"type":"start","sequence":"1","monitor":"CIN","parameters":{"cinID":"watched"}}`)); err != nil {
			return result{}, err
		}
		if _, _, err := c.Read(ctx); err != nil {
			return result{}, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, b, err := c.Read(ctx)
				if err != nil {
					if websocket.CloseStatus(err) == -1 && ctx.Err() == nil && !strings.Contains(err.Error(), "closed") {
						errc <- err
					}
					return
				}
				reads[i] = append(reads[i], raw{time.Now(), b})
				counts[i].Add(1)
			}
		}()
	}
	type change struct {
		container, event string
		reply            time.Time
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
		fired = append(fired, change{ctr, event, time.Now()})
		// Wait for this change's fan-out to finish before the next, so
		// each latency is the fan-out's own, not a queue behind others.
		if !waitAll(counts, int64(k+1), 10*time.Second) {
			break
		}
	}
	elapsed := time.Since(start)
	for _, c := range conns {
		c.Close(websocket.StatusNormalClosure, "done")
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		return result{}, err
	}
	arrivals := make([][]arrival, n)
	for i := range n {
		for _, r := range reads[i] {
			var m struct {
				Event   string `json:"event"`
				Message []struct {
					Container string `json:"containerID"`
				} `json:"message"`
			}
			if err := json.Unmarshal(r.b, &m); err != nil {
				return result{}, fmt.Errorf("monitor %d: %s: %w", i, r.b, err)
			}
			for _, x := range m.Message {
				arrivals[i] = append(arrivals[i], arrival{x.Container, m.Event, r.at})
			}
		}
	}
	var lat []time.Duration
	for i := range n {
		if len(arrivals[i]) != changes {
			return result{}, fmt.Errorf("monitor %d got %d events, want %d", i, len(arrivals[i]), changes)
		}
		for k, a := range arrivals[i] {
			f := fired[k]
			if a.container != f.container || a.event != f.event {
				return result{}, fmt.Errorf("monitor %d: event %d is %s %s, want %s %s", i, k, a.event, a.container, f.event, f.container)
			}
			lat = append(lat, max(0, a.at.Sub(f.reply)))
		}
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	return result{events: len(lat), p50: pct(0.50), p99: pct(0.99), max: lat[len(lat)-1], rate: float64(len(lat)) / elapsed.Seconds()}, nil
}

// waitAll waits until every monitor has read at least want messages.
func waitAll(counts []atomic.Int64, want int64, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for i := range counts {
		for counts[i].Load() < want {
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(200 * time.Microsecond)
		}
	}
	return true
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
