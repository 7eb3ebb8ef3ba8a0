package multihost_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/leviathan-net/leviathan/internal/mhtest"
)

// monMsg is a message of the monitor protocol (docs/manual.md, "The
// monitor").
type monMsg struct {
	Type      string          `json:"type"`
	Sequence  json.RawMessage `json:"sequence"`
	MonitorID string          `json:"monitorID"`
	Event     string          `json:"event"`
	Message   []monEntry      `json:"message"`
	Response  struct {
		MonitorID string     `json:"monitorID"`
		State     []monEntry `json:"state"`
		Message   string     `json:"message"`
	} `json:"response"`
}

type monEntry struct {
	Container string  `json:"containerID"`
	IP        string  `json:"ipaddress"`
	Tag       *string `json:"tag"`
}

// monitorConn is a websocket to a host's /leviathan/monitor, over its
// unix socket.
type monitorConn struct {
	t *testing.T
	c *websocket.Conn
}

func dialMonitor(t *testing.T, h *mhtest.Host) *monitorConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://leviathan/leviathan/monitor", &websocket.DialOptions{HTTPClient: h.Client()})
	if err != nil {
		t.Fatalf("monitor on %s: %v", h.ID, err)
	}
	c.SetReadLimit(1 << 24)
	t.Cleanup(func() { c.CloseNow() })
	return &monitorConn{t, c}
}

func (m *monitorConn) send(v any) {
	m.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		m.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.c.Write(ctx, websocket.MessageText, b); err != nil {
		m.t.Fatalf("monitor: send %s: %v", b, err)
	}
}

// await reads messages until one satisfies ok, and returns it with the
// messages before it; it fails the test after within (which ends the
// connection).
func (m *monitorConn) await(within time.Duration, what string, ok func(monMsg) bool) (monMsg, []string) {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var skipped []string
	for {
		_, b, err := m.c.Read(ctx)
		if err != nil {
			m.t.Fatalf("monitor: no %s within %s (%v); got meanwhile: %q", what, within, err, skipped)
		}
		var msg monMsg
		if err := json.Unmarshal(b, &msg); err != nil {
			m.t.Fatalf("monitor: %s: %v", b, err)
		}
		if ok(msg) {
			return msg, skipped
		}
		skipped = append(skipped, string(b))
	}
}

// TestMonitorSeesOtherHosts watches the CIN "net" from hC's monitor while
// hA's API adds a member on hA and removes it: hC's monitor gets both
// changes, with the member's address.
func TestMonitorSeesOtherHosts(t *testing.T) {
	lab := mhtest.New(t, 3)
	hA, hC := lab.Host("hA"), lab.Host("hC")
	ms, addrs := wide(t, lab)

	mon := dialMonitor(t, hC)
	mon.send(map[string]any{"type": "start", "sequence": 1, "monitor": "CIN", "parameters": map[string]any{"cinID": "net"}})
	resp, _ := mon.await(10*time.Second, "answer to the start", func(m monMsg) bool { return m.Type != "event" })
	if resp.Type != "response" || resp.Response.MonitorID == "" {
		t.Fatalf("monitor on hC: start on net: %+v, want a response with a monitor ID", resp)
	}
	// The state already names every host's members.
	var state []string
	for _, e := range resp.Response.State {
		state = append(state, e.Container+" "+e.IP)
	}
	for _, m := range ms {
		if !slices.Contains(state, m.id+" "+addrs[m]) {
			t.Errorf("monitor on hC: state of net %q lacks %s %s", state, m, addrs[m])
		}
	}
	id := resp.Response.MonitorID

	// The event of one member, with its address.
	about := func(action, ctr, ip string) func(monMsg) bool {
		return func(m monMsg) bool {
			return m.Type == "event" && m.MonitorID == id && m.Event == action &&
				slices.ContainsFunc(m.Message, func(e monEntry) bool { return e.Container == ctr && e.IP == ip })
		}
	}

	hA.Must("PUT", "/host/hA/a3", nil)
	hA.Must("PUT", "/host/hA/a3/wide", nil)
	put := time.Now()
	a3 := member{hA, "a3"}
	_, addr := look(t, hA, a3, "wide")
	if addr == "" {
		t.Fatalf("%s has no address on wide after it joined", a3)
	}
	_, skipped := mon.await(5*time.Second, "create of hA/a3 "+addr, about("create", "a3", addr))
	t.Logf("monitor on hC: create of hA/a3 %s %s after hA's answer", addr, time.Since(put).Round(time.Millisecond))
	if len(skipped) > 0 {
		t.Errorf("monitor on hC: before the create of hA/a3, other messages: %q", skipped)
	}

	hA.Must("DELETE", "/host/hA/a3/wide", nil)
	del := time.Now()
	_, skipped = mon.await(5*time.Second, "delete of hA/a3 "+addr, about("delete", "a3", addr))
	t.Logf("monitor on hC: delete of hA/a3 %s %s after hA's answer", addr, time.Since(del).Round(time.Millisecond))
	if len(skipped) > 0 {
		t.Errorf("monitor on hC: before the delete of hA/a3, other messages: %q", skipped)
	}
}
