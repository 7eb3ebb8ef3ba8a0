package rest

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// authDo sends a request with basic auth and returns the status.
func (e *env) authDo(method, path, user, pass string) int {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.SetBasicAuth(user, pass)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestUIFiles(t *testing.T) {
	e := newEnv(t, Options{})
	for _, tc := range []struct {
		path, ctype string
		status      int
	}{
		{"/ui", "text/html", 200},
		{"/ui/index.html", "text/html", 200},
		{"/ui/app.js", "text/javascript", 200},
		{"/ui/style.css", "text/css", 200},
		{"/ui/cytoscape.min.js", "text/javascript", 200},
		{"/ui/nope.js", "application/json", 404},
		{"/ui/", "application/json", 404},
		{"/ui/..%2fui.go", "application/json", 404},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp, err := e.srv.Client().Get(e.srv.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.ctype) {
				t.Errorf("%d %q, want %d %s", resp.StatusCode, resp.Header.Get("Content-Type"), tc.status, tc.ctype)
			}
		})
	}
}

// TestUIInBrowser opens /ui in headless Chromium behind basic auth, finds
// every object of a small topology in the page, adds a member through
// the API and sees it appear without a reload.
func TestUIInBrowser(t *testing.T) {
	const user, pass = "admin", "s3cret"
	e := labEnv(t, Options{})
	e.opts.Auth = user + ":" + pass
	e.restart()
	if got := e.authDo("GET", "/topology", "", ""); got != 401 {
		t.Fatalf("GET /topology without credentials: %d, want 401", got)
	}
	b := startBrowser(t, user, pass)

	b.call("Page.navigate", map[string]any{"url": e.srv.URL + "/ui"}, nil)
	b.waitText(30*time.Second, "live", "host1", "cin1", "cen1", "cen2", "cen3", "c1", "c2", "c3", "c4")
	if _, err := b.eval("window.__notReloaded = true"); err != nil {
		t.Fatal(err)
	}

	// A member added through the API appears, pushed by the
	// notification websocket: the page is the same page.
	if got := e.authDo("PUT", "/host/host1/c5/cen1", user, pass); got != 200 {
		t.Fatalf("PUT /host/host1/c5/cen1: %d", got)
	}
	b.waitText(15*time.Second, "c5")
	if v, err := b.eval("window.__notReloaded === true"); err != nil || string(v) != "true" {
		t.Errorf("the page was reloaded (marker %s, %v)", v, err)
	}

	// Details of a container, with its capture links.
	if _, err := b.eval(`document.querySelector('#objects li[data-id="container:host1/c1"]').click()`); err != nil {
		t.Fatal(err)
	}
	text := b.waitText(5*time.Second, "runtime", "capture")
	for _, want := range []string{"netns", "cen1", "cen2", "10."} {
		if !strings.Contains(text, want) {
			t.Errorf("c1's details lack %q:\n%s", want, text)
		}
	}
	raw, err := b.eval(`[...document.querySelectorAll('#details a')].map(a => a.getAttribute('href')).join(' ')`)
	if err != nil || !strings.Contains(string(raw), "/host/host1/c1/cen1/pcap") {
		t.Errorf("capture links: %s %v", raw, err)
	}
	time.Sleep(300 * time.Millisecond) // the layout settles

	shots := []string{filepath.Join(t.TempDir(), "ui.png")}
	if p := os.Getenv("LEVIATHAN_SCREENSHOT"); p != "" {
		shots = append(shots, p)
	}
	b.screenshot(shots...)
	if st, err := os.Stat(shots[0]); err != nil || st.Size() < 1000 {
		t.Errorf("screenshot: %v %v", st, err)
	}
	t.Logf("screenshot: %s", strings.Join(shots, ", "))
}
