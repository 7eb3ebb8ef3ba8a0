package mhtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// HostInfo is one entry of GET /host.
type HostInfo struct {
	HostID    string          `json:"hostID"`
	Underlay  string          `json:"underlay"`
	State     string          `json:"state"` // "running" or "unknown"
	VXLANPort int             `json:"vxlan_port"`
	MTU       int             `json:"mtu"`
	VNIRange  json.RawMessage `json:"vni_range"`
	Error     string          `json:"error,omitempty"`
}

// HostList is GET /host on h's API, by host ID. It does not touch the
// test.
func (h *Host) HostList() (map[string]HostInfo, error) {
	status, body, err := h.Request("GET", "/host", nil)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("GET /host on %s: %d %s", h.ID, status, body)
	}
	var list []HostInfo
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("GET /host on %s: %s: %w", h.ID, body, err)
	}
	out := map[string]HostInfo{}
	for _, hi := range list {
		out[hi.HostID] = hi
	}
	return out, nil
}

// WaitHostState polls GET /host on viewer's API until it shows host id
// in state, and returns how long that took; it fails the test, with the
// last answer, if that takes longer than within.
func (h *Host) WaitHostState(id, state string, within time.Duration) time.Duration {
	h.lab.t.Helper()
	start := time.Now()
	var last any
	for {
		hosts, err := h.HostList()
		if err == nil && hosts[id].State == state {
			return time.Since(start)
		}
		last = hosts
		if err != nil {
			last = err
		}
		if time.Since(start) > within {
			h.lab.t.Fatalf("GET /host on %s: %s not %q after %s; last: %+v", h.ID, id, state, within, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
