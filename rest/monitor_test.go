package rest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// wsClient is a real websocket client of /leviathan/monitor.
type wsClient struct {
	t *testing.T
	c *websocket.Conn
}

func (e *env) dialWS(path string, opts *websocket.DialOptions) (*wsClient, *http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.srv.URL, "http")+path, opts)
	if err != nil {
		return nil, resp, err
	}
	c.SetReadLimit(1 << 24)
	return &wsClient{t: e.t, c: c}, resp, nil
}

func (e *env) monitor() *wsClient {
	e.t.Helper()
	w, _, err := e.dialWS("/leviathan/monitor", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { w.c.CloseNow() })
	return w
}

func (w *wsClient) send(msg string) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		w.t.Fatal(err)
	}
}

// recv reads one message as raw JSON.
func (w *wsClient) recv() string {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, b, err := w.c.Read(ctx)
	if err != nil {
		w.t.Fatalf("read: %v", err)
	}
	return string(b)
}

type monMsg struct {
	Type      string `json:"type"`
	Sequence  any    `json:"sequence"`
	MonitorID string `json:"monitorID"`
	Event     string `json:"event"`
	Message   []struct {
		Container string  `json:"containerID"`
		IP        string  `json:"ipaddress"`
		Tag       *string `json:"tag"`
	} `json:"message"`
	Response struct {
		MonitorID string `json:"monitorID"`
		Message   string `json:"message"`
		State     []struct {
			Container string  `json:"containerID"`
			IP        string  `json:"ipaddress"`
			Tag       *string `json:"tag"`
		} `json:"state"`
	} `json:"response"`
}

func (w *wsClient) recvMsg() monMsg {
	w.t.Helper()
	raw := w.recv()
	var m monMsg
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		w.t.Fatalf("decode %s: %v", raw, err)
	}
	return m
}

// cinEnv is an env with cen1 (c1, c2, c3) and cen2 (d1, d2, d3) made, and
// cin1 over cen1, cin2 over cen2 made.
func cinEnv(t *testing.T, o Options) *env {
	e := newEnv(t, o)
	e.must(200, "POST", "/cen/import", `{"cenList":[{"cenID":"cen1","containerIDs":["c1","c2","c3"]},{"cenID":"cen2","containerIDs":["d1","d2","d3"]}]}`, nil)
	e.must(200, "POST", "/cen/make", `["cen1","cen2"]`, nil)
	e.must(200, "POST", "/cin/import", `{"cin1":["cen1"],"cin2":["cen2"]}`, nil)
	e.must(200, "POST", "/cin/make", `["cin1","cin2"]`, nil)
	return e
}

func TestMonitorProtocolTranscript(t *testing.T) {
	e := cinEnv(t, Options{})
	e.must(200, "PUT", "/host/host1/c3", `{"tag":"web"}`, nil)
	w := e.monitor()
	var tr strings.Builder
	step := func(send string, n int) {
		if send != "" {
			w.send(send)
			fmt.Fprintf(&tr, "> %s\n", send)
		}
		for range n {
			fmt.Fprintf(&tr, "< %s\n", w.recv())
		}
	}
	change := func(method, path string, n int) {
		body := ""
		if method == "POST" {
			body = `["cin1","cin2"]`
		}
		e.must(200, method, path, body, nil)
		fmt.Fprintf(&tr, "# %s %s %s\n", method, path, body)
		step("", n)
	}
	// The documented protocol.
	step(`{"type":"start","sequence":"1","monitor":"CIN","parameters":{"cinID":"cin1"}}`, 1)
	change("PUT", "/host/host1/c4/cen1", 1)
	change("DELETE", "/host/host1/c2/cen1", 1)
	// A second monitor on the same connection, by tag.
	step(`{"type":"start","sequence":"2","monitor":"CIN","parameters":{"cinID":"cin1","container_tag":"web"}}`, 1)
	e.must(201, "PUT", "/host/host1/c5", `{"tag":"web"}`, nil)
	change("PUT", "/host/host1/c5/cen1", 2) // both monitors see c5
	change("PUT", "/host/host1/c6/cen1", 1) // only the first
	// Replace monitor 1 with one on cin2; stop monitor 2.
	step(`{"type":"start","sequence":"3","monitor":"CIN","monitorID":"1","parameters":{"cinID":"cin2"}}`, 1)
	step(`{"type":"stop","sequence":"4","monitorID":"2"}`, 1)
	change("DELETE", "/host/host1/d3/cen2", 1)
	change("PUT", "/host/host1/c7/cen1", 0) // nobody watches cin1 any more
	// Errors: the connection stays open through all of them.
	step(`{"type":"start",`, 1)
	step(`{"type":"jump","sequence":5}`, 1)
	step(`{"sequence":6}`, 1)
	step(`{"type":"start","sequence":7,"monitor":"CEN","parameters":{"cinID":"cin1"}}`, 1)
	step(`{"type":"start","sequence":8,"monitor":"CIN"}`, 1)
	step(`{"type":"start","sequence":9,"monitor":"CIN","parameters":{"cinID":"nosuch"}}`, 1)
	step(`{"type":"start","sequence":10,"monitor":"CIN","monitorID":"99","parameters":{"cinID":"cin1"}}`, 1)
	step(`{"type":"stop","sequence":11,"monitorID":"2"}`, 1)
	step(`{"type":"stop","sequence":12}`, 1)
	// cin destroy deletes everyone's address (monitor 1 watches cin2).
	change("POST", "/cin/destroy", 1)
	golden := &transcript{e: e}
	golden.b.WriteString(tr.String())
	golden.compare("monitor")
}

func TestMonitorCINDestroyAndMakeEvents(t *testing.T) {
	e := cinEnv(t, Options{})
	w := e.monitor()
	w.send(`{"type":"start","sequence":"1","monitor":"CIN","parameters":{"cinID":"cin2"}}`)
	if m := w.recvMsg(); len(m.Response.State) != 3 {
		t.Fatalf("state: %+v", m)
	}
	e.must(200, "POST", "/cin/destroy", `["cin2"]`, nil)
	if m := w.recvMsg(); m.Event != "delete" || len(m.Message) != 3 {
		t.Fatalf("after destroy: %+v", m)
	}
	e.must(200, "POST", "/cin/make", `["cin2"]`, nil)
	if m := w.recvMsg(); m.Event != "create" || len(m.Message) != 3 || m.Message[0].IP != "10.11.0.10" {
		t.Fatalf("after make: %+v", m)
	}
}

// 200 monitors start while membership changes are fired; each must end
// with exactly the CIN's final members, never seeing a create for a
// member it has or a delete for one it has not.
func TestMonitorConcurrentStartsSeeEveryChangeOnce(t *testing.T) {
	e := cinEnv(t, Options{})
	const monitors, changes = 200, 40
	var wg sync.WaitGroup
	clients := make([]*wsClient, monitors)
	states := make([]map[string]bool, monitors)
	errs := make(chan error, monitors*4)
	var mu sync.Mutex

	// Fire changes concurrently with the starts.
	var cwg sync.WaitGroup
	cwg.Add(1)
	go func() {
		defer cwg.Done()
		for i := range changes {
			method := "PUT"
			if i%3 == 2 {
				method = "DELETE"
			}
			status, body := e.do(method, fmt.Sprintf("/host/host1/m%d/cen1", i%10), "")
			if status != 200 && status != 404 {
				errs <- fmt.Errorf("%s m%d: %d %s", method, i%10, status, body)
			}
		}
	}()
	for i := range monitors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.srv.URL, "http")+"/leviathan/monitor", nil)
			if err != nil {
				errs <- err
				return
			}
			c.SetReadLimit(1 << 24)
			w := &wsClient{t: t, c: c}
			if err := c.Write(ctx, websocket.MessageText, []byte(`{"type":"start","sequence":"s","monitor":"CIN","parameters":{"cinID":"cin1"}}`)); err != nil {
				errs <- err
				return
			}
			_, b, err := c.Read(ctx)
			if err != nil {
				errs <- err
				return
			}
			var m monMsg
			json.Unmarshal(b, &m)
			have := map[string]bool{}
			for _, s := range m.Response.State {
				have[s.Container+"="+s.IP] = true
			}
			mu.Lock()
			clients[i], states[i] = w, have
			mu.Unlock()
		}()
	}
	wg.Wait()
	cwg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// The final truth.
	final := map[string]bool{}
	for c, as := range addrsOf(t, e, "cin1") {
		for _, a := range as {
			final[c+"="+a] = true
		}
	}
	// Apply each client's events until it matches or goes quiet.
	for i, w := range clients {
		have := states[i]
		for !mapsEqual(have, final) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, b, err := w.c.Read(ctx)
			cancel()
			if err != nil {
				t.Fatalf("monitor %d: stuck at %v, want %v: %v", i, keys(have), keys(final), err)
			}
			var m monMsg
			json.Unmarshal(b, &m)
			for _, x := range m.Message {
				k := x.Container + "=" + x.IP
				switch {
				case m.Event == "create" && have[k]:
					t.Fatalf("monitor %d: create for %s, which it has: a repeat", i, k)
				case m.Event == "delete" && !have[k]:
					t.Fatalf("monitor %d: delete for %s, which it never had: a miss", i, k)
				}
				have[k] = m.Event == "create"
				if !have[k] {
					delete(have, k)
				}
			}
		}
		w.c.CloseNow()
	}
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestMonitorSlowClientIsDropped(t *testing.T) {
	e := cinEnv(t, Options{MonitorQueue: 4})
	// A client that stops reading, served with small socket buffers on
	// both ends: they fill, the server's writer blocks, and its queue
	// overflows.
	setBuf := func(fd uintptr, opt int) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt, 4096) }
	small := httptest.NewUnstartedServer(e.srv.Config.Handler)
	small.Listener = smallBufListener{small.Listener, setBuf}
	small.Start()
	defer small.Close()
	dialer := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { setBuf(fd, syscall.SO_RCVBUF) })
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(small.URL, "http")+"/leviathan/monitor",
		&websocket.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	slow := &wsClient{t: t, c: c}
	slow.send(`{"type":"start","sequence":"1","monitor":"CIN","parameters":{"cinID":"cin1"}}`)
	slow.recv()
	// A healthy client next to it.
	fast := e.monitor()
	fast.send(`{"type":"start","sequence":"1","monitor":"CIN","parameters":{"cinID":"cin1"}}`)
	fast.recv()
	const pairs = 200
	got := make(chan int, 1)
	go func() {
		n := 0
		for n < 2*pairs {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			_, _, err := fast.c.Read(ctx)
			cancel()
			if err != nil {
				break
			}
			n++
		}
		got <- n
	}()
	subs := e.svc.Bus().Subscribers()
	for i := range pairs {
		e.must(200, "PUT", fmt.Sprintf("/host/host1/s%d/cen1", i%20), "", nil)
		e.must(200, "DELETE", fmt.Sprintf("/host/host1/s%d/cen1", i%20), "", nil)
	}
	if n := <-got; n != 2*pairs {
		t.Errorf("the healthy client got %d of %d events", n, 2*pairs)
	}
	if now := e.svc.Bus().Subscribers(); now != subs-1 {
		t.Errorf("subscribers: %d before, %d after; want the slow one dropped", subs, now)
	}
}

func TestMonitorNoGoroutineLeak(t *testing.T) {
	e := cinEnv(t, Options{MonitorPing: 20 * time.Millisecond})
	settle := func() int {
		var n int
		for range 50 {
			runtime.GC()
			n = runtime.NumGoroutine()
			time.Sleep(20 * time.Millisecond)
			if runtime.NumGoroutine() == n {
				break
			}
		}
		return n
	}
	base := settle()
	var ws []*wsClient
	for range 20 {
		w, _, err := e.dialWS("/leviathan/monitor", nil)
		if err != nil {
			t.Fatal(err)
		}
		w.send(`{"type":"start","sequence":"1","monitor":"CIN","parameters":{"cinID":"cin1"}}`)
		w.recv()
		ws = append(ws, w)
	}
	n, _, err := e.dialWS("/v2/notifications/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	ws = append(ws, n)
	req, _ := http.NewRequest("GET", e.srv.URL+"/v2/notifications", nil)
	ctx, cancel := context.WithCancel(context.Background())
	resp, err := e.srv.Client().Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // pings flow
	if got := e.svc.Bus().Subscribers(); got != 22 {
		t.Errorf("%d subscribers, want 22", got)
	}
	for _, w := range ws {
		w.c.Close(websocket.StatusNormalClosure, "bye")
	}
	cancel()
	resp.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for e.svc.Bus().Subscribers() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := e.svc.Bus().Subscribers(); got != 0 {
		t.Errorf("%d subscribers left after every client closed", got)
	}
	e.srv.Client().CloseIdleConnections()
	if after := settle(); after > base+2 {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d before, %d after closing every client\n%s", base, after, buf[:runtime.Stack(buf, true)])
	}
}

func TestNotificationStream(t *testing.T) {
	e := newEnv(t, Options{MonitorPing: 50 * time.Millisecond})
	req, _ := http.NewRequest("GET", e.srv.URL+"/v2/notifications", nil)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("content type %q", ct)
	}
	lines := bufio.NewScanner(resp.Body)
	next := func() map[string]any {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("stream ended: %v", lines.Err())
		}
		var m map[string]any
		if err := json.Unmarshal(lines.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", lines.Text(), err)
		}
		return m
	}
	if m := next(); m["action"] != "ping" {
		t.Fatalf("idle stream: %v, want a ping", m)
	}
	e.must(200, "POST", "/cen/import", `{"cenList":[{"cenID":"n1","containerIDs":["a","b"]}]}`, nil)
	e.must(200, "POST", "/cen/make", `["n1"]`, nil)
	for {
		m := next()
		if m["action"] == "ping" {
			continue
		}
		ev, _ := m["event"].(map[string]any)
		if m["action"] != "cen.made" || ev["cenID"] != "n1" || ev["state"] != "configured" {
			t.Fatalf("got %v, want cen.made of n1", m)
		}
		break
	}
}

func TestWebsocketOriginAndAuth(t *testing.T) {
	e := newEnv(t, Options{Auth: "u:p"})
	_, resp, err := e.dialWS("/leviathan/monitor", nil)
	if err == nil || resp == nil || resp.StatusCode != 401 {
		t.Errorf("no credentials: %v %v", resp, err)
	}
	h := http.Header{}
	h.Set("Authorization", "Basic dTpw") // u:p
	w, _, err := e.dialWS("/leviathan/monitor", &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatalf("with credentials: %v", err)
	}
	w.c.CloseNow()
	h.Set("Origin", "http://elsewhere.example")
	_, resp, err = e.dialWS("/leviathan/monitor", &websocket.DialOptions{HTTPHeader: h})
	if err == nil || resp == nil || resp.StatusCode != 403 {
		t.Errorf("cross-origin browser page: %v %v, want 403", resp, err)
	}
}

// smallBufListener gives accepted connections a small send buffer, which
// also turns the kernel's buffer autotuning off for them.
type smallBufListener struct {
	net.Listener
	set func(fd uintptr, opt int)
}

func (l smallBufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		if rc, err := tc.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) { l.set(fd, syscall.SO_SNDBUF) })
		}
	}
	return c, err
}

func TestMonitorTagChanges(t *testing.T) {
	e := cinEnv(t, Options{})
	e.must(200, "PUT", "/host/host1/c3", `{"tag":"web"}`, nil)
	w := e.monitor()
	w.send(`{"type":"start","sequence":"1","monitor":"CIN","parameters":{"cinID":"cin1","container_tag":"web"}}`)
	if m := w.recvMsg(); len(m.Response.State) != 1 || m.Response.State[0].Container != "c3" {
		t.Fatalf("state: %+v", m)
	}
	// c1 gains the tag: it enters the filtered view; c3 loses it: it leaves.
	e.must(200, "PUT", "/host/host1/c1", `{"tag":"web"}`, nil)
	if m := w.recvMsg(); m.Event != "create" || len(m.Message) != 1 || m.Message[0].Container != "c1" {
		t.Fatalf("after tagging c1: %+v", m)
	}
	e.must(200, "PUT", "/host/host1/c3", `{"tag":""}`, nil)
	if m := w.recvMsg(); m.Event != "delete" || len(m.Message) != 1 || m.Message[0].Container != "c3" {
		t.Fatalf("after untagging c3: %+v", m)
	}
	e.must(200, "PUT", "/host/host1/c2", ``, nil) // no tag given: nothing changes, no event
	e.must(200, "PUT", "/host/host1/c1/cen1", "", nil)
	w.send(`{"type":"stop","sequence":"2","monitorID":"1"}`)
	if m := w.recvMsg(); m.Type != "response" {
		t.Fatalf("an event came for a change that changed nothing: %+v", m)
	}
}
