package mhtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/leviathan-net/leviathan/netfab"
)

// Host is one simulated host: a namespace with eth0 on the underlay, and
// the leviathan daemon running in it.
type Host struct {
	lab *Lab
	// ID is its --host-id: hA, hB...
	ID string
	// Underlay is its address on the underlay (192.0.2.N), its
	// --underlay.
	Underlay string
	// Netns is the path of its namespace.
	Netns string
	// FabricNetns is its daemon's --fabric-netns (a name).
	FabricNetns string
	// NetnsPrefix is its daemon's --netns-prefix.
	NetnsPrefix string
	// StateDir, Socket: its daemon's --state-dir and --socket.
	StateDir, Socket string
	// LogPath is its daemon's log file, every run of it appended.
	LogPath string

	link   string // its veth end in the underlay namespace
	proc   *proc  // the daemon's current or last run
	ready  bool   // the current run has answered
	client *http.Client
}

// Args is the daemon's command line after "serve".
func (h *Host) Args() []string {
	c := h.lab.cfg
	args := []string{
		"--host-id", h.ID,
		"--fabric-netns", h.FabricNetns,
		"--netns-prefix", h.NetnsPrefix,
		"--state-dir", h.StateDir,
		"--socket", h.Socket,
		"--listen", "127.0.0.1:8080",
		"--docker=false",
		"--log-level", c.logLevel,
	}
	if !c.bolt {
		args = append(args,
			"--store", "etcd://"+EtcdAddr+"/"+h.lab.StorePrefix,
			"--underlay", h.Underlay,
			"--host-ttl", c.hostTTL.String())
	}
	return append(args, c.extra...)
}

// MemberNetns is the namespace path of the host's netns container id.
func (h *Host) MemberNetns(id string) string { return netfab.NetnsPath(h.NetnsPrefix + id) }

// Fabric is the path of the host's fabric namespace.
func (h *Host) Fabric() string { return netfab.NetnsPath(h.FabricNetns) }

// PID is the daemon's process ID, 0 when it does not run.
func (h *Host) PID() int {
	if h.proc == nil || h.proc.exited() {
		return 0
	}
	return h.proc.cmd.Process.Pid
}

// Running reports whether the daemon's process runs.
func (h *Host) Running() bool { return h.PID() != 0 }

// Start starts the daemon again (after Kill or Stop) with the same
// command line and state, and waits until it answers.
func (h *Host) Start() {
	h.lab.t.Helper()
	if h.Running() {
		h.lab.t.Fatalf("mhtest: %s: Start while the daemon runs (PID %d)", h.ID, h.PID())
	}
	h.launch()
	h.waitReady()
}

// Kill kills the daemon with SIGKILL and waits for it: a crash. What it
// made in the kernel stays.
func (h *Host) Kill() {
	if h.proc != nil {
		h.proc.kill()
	}
}

// Stop stops the daemon with SIGTERM and waits for it to exit, failing
// the test unless it exits cleanly within 20s.
func (h *Host) Stop() {
	h.lab.t.Helper()
	if h.proc == nil {
		return
	}
	if err := h.proc.stop(20 * time.Second); err != nil {
		h.lab.t.Errorf("mhtest: %s: stop: %v", h.ID, err)
	}
}

// Partition cuts the host off the underlay (so from the other hosts and
// from etcd) by setting its link on the underlay bridge down.
func (h *Host) Partition() { h.setLink("down") }

// Heal undoes Partition.
func (h *Host) Heal() { h.setLink("up") }

func (h *Host) setLink(state string) {
	h.lab.t.Helper()
	ip(h.lab.t, "-n", filepath.Base(h.lab.Underlay), "link", "set", h.link, state)
}

func (h *Host) launch() {
	t := h.lab.t
	t.Helper()
	p, err := startProc(h.Netns, h.LogPath, h.lab.bin, append([]string{"serve"}, h.Args()...)...)
	if err != nil {
		t.Fatalf("mhtest: %s: %v", h.ID, err)
	}
	h.proc, h.ready = p, false
}

// waitReady waits until GET /v2/version answers 200, failing the test
// if it exits first or takes too long (the lab's cleanup then shows the
// daemons' logs).
func (h *Host) waitReady() {
	t := h.lab.t
	t.Helper()
	deadline := time.Now().Add(h.lab.cfg.ready)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		status, _, err := h.request(ctx, "GET", "/v2/version", nil)
		cancel()
		if err == nil && status == http.StatusOK {
			h.ready = true
			return
		}
		select {
		case <-h.proc.done:
			t.Fatalf("mhtest: %s: the daemon exited before it was ready (%v); the logs follow", h.ID, h.proc.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mhtest: %s: the daemon is not ready after %s (last: %d %v); the logs follow", h.ID, h.lab.cfg.ready, status, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stopAtEnd stops the daemon as the test ends, killing it if SIGTERM is
// not enough.
func (h *Host) stopAtEnd() {
	if h.proc == nil || h.proc.exited() {
		return // never started, or a test stopped or killed it
	}
	// A daemon stopped before it answered (another failed to start)
	// may not handle SIGTERM yet: only a ready one must exit cleanly.
	if err := h.proc.stop(15 * time.Second); err != nil && h.ready {
		h.lab.t.Errorf("mhtest: %s: the daemon did not stop cleanly on SIGTERM: %v", h.ID, err)
	}
}

// Client is an HTTP client of the daemon's unix socket; any host name
// in a URL reaches it ("http://leviathan/v2/version").
func (h *Host) Client() *http.Client {
	if h.client == nil {
		sock := h.Socket
		h.client = &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			},
			MaxIdleConnsPerHost: 64,
		}}
	}
	return h.client
}

// RequestTimeout bounds one API call of Do, JSON and Request.
var RequestTimeout = 2 * time.Minute

// Request calls the host's API: body nil sends none, a string or []byte
// is sent as is, anything else as JSON. It does not touch the test, so
// any goroutine may call it.
func (h *Host) Request(method, path string, body any) (status int, resp []byte, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), RequestTimeout)
	defer cancel()
	return h.request(ctx, method, path, body)
}

func (h *Host) request(ctx context.Context, method, path string, body any) (int, []byte, error) {
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return 0, nil, err
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://leviathan"+path, r)
	if err != nil {
		return 0, nil, err
	}
	if r != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.Client().Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s on %s: %w", method, path, h.ID, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, b, fmt.Errorf("%s %s on %s: read the answer: %w", method, path, h.ID, err)
	}
	return resp.StatusCode, b, nil
}

// Do is Request from the test's goroutine: it fails the test when the
// daemon cannot be reached (not for an error status).
func (h *Host) Do(method, path string, body any) (status int, resp []byte) {
	h.lab.t.Helper()
	status, resp, err := h.Request(method, path, body)
	if err != nil {
		h.lab.t.Fatalf("mhtest: %v", err)
	}
	return status, resp
}

// JSON is Do that, on a 2xx answer, decodes it into out (unless nil),
// failing the test if it cannot. It returns the status and, for any
// other status, the answer.
func (h *Host) JSON(method, path string, body, out any) (status int, resp []byte) {
	h.lab.t.Helper()
	status, resp = h.Do(method, path, body)
	if status/100 == 2 && out != nil {
		if err := json.Unmarshal(resp, out); err != nil {
			h.lab.t.Fatalf("mhtest: %s %s on %s: %d %s: %v", method, path, h.ID, status, resp, err)
		}
	}
	return status, resp
}

// Must is Do that fails the test unless the answer is 2xx, and returns
// the answer.
func (h *Host) Must(method, path string, body any) []byte {
	h.lab.t.Helper()
	status, resp := h.Do(method, path, body)
	if status/100 != 2 {
		h.lab.t.Fatalf("%s %s on %s: %d %s", method, path, h.ID, status, resp)
	}
	return resp
}
