package monitor

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// cinSource is a Source with one CIN, cin1, of fixed members: the store
// and kernel behind a real one are core's to test.
type cinSource struct{ bus *Bus }

func (s cinSource) CINMembers(id string) ([]Member, uint64, error) {
	if id != "cin1" {
		return nil, 0, fmt.Errorf("no CIN %s", id)
	}
	return []Member{{Container: "c1", IP: "10.10.0.10"}}, s.bus.Seq(), nil
}

func TestClient(t *testing.T) {
	bus := NewBus()
	ms := NewServer(bus, cinSource{bus}, nil)
	srv := httptest.NewServer(http.HandlerFunc(ms.ServeMonitor))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := Dial(ctx, srv.URL+"/leviathan/monitor", DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	if _, err := c.Start(ctx, "nosuch", nil); err == nil || !strings.Contains(err.Error(), "no CIN nosuch") {
		t.Errorf("start on an unknown CIN: %v", err)
	}
	resp, err := c.Start(ctx, "cin1", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"response","sequence":2,"response":{"monitorID":"1","state":[{"containerID":"c1","ipaddress":"10.10.0.10","tag":null}]}}`
	if diff := cmp.Diff(want, string(resp)); diff != "" {
		t.Errorf("response (-want +got):\n%s", diff)
	}
	bus.Publish(Event{Action: ActionCINAddressCreate, Data: CINAddresses{CIN: "cin1", Members: []Member{{Container: "c2", IP: "10.10.0.11"}}}})
	ev, err := c.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want = `{"type":"event","monitorID":"1","event":"create","message":[{"containerID":"c2","ipaddress":"10.10.0.11","tag":null}]}`
	if diff := cmp.Diff(want, string(ev)); diff != "" {
		t.Errorf("event (-want +got):\n%s", diff)
	}
	// The server counts a message once its write returned, which may be
	// a moment after the client read it.
	st := ms.Stats()
	for st.Streams[StreamMonitor].Sent == 0 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
		st = ms.Stats()
	}
	if mon := st.Streams[StreamMonitor]; mon.Open != 1 || mon.Sent != 1 || st.Published != 1 || st.Dropped != 0 {
		t.Errorf("stats with one client after one event: %+v", st)
	}
	c.Close()
	for ms.Stats().Streams[StreamMonitor].Open != 0 {
		if ctx.Err() != nil {
			t.Fatal("the closed connection is still counted open")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDialRefused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, `{"status":401,"message":"authentication required"}`, http.StatusUnauthorized)
	}))
	defer srv.Close()
	_, resp, err := Dial(context.Background(), srv.URL+"/leviathan/monitor", DialOptions{})
	if err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("dial: %v %v", resp, err)
	}
}
