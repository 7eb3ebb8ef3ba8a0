package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// chromiumPath is Debian's chromium.
const chromiumPath = "/usr/bin/chromium"

// browser is a headless Chromium driven over the Chrome DevTools
// protocol: one page target, with basic-auth challenges answered as a
// user typing the credentials into the browser's prompt would.
type browser struct {
	t    *testing.T
	cmd  *exec.Cmd
	ws   *websocket.Conn
	logs *bytes.Buffer

	mu      sync.Mutex // guards next and pending
	next    int
	pending map[int]chan cdpReply
	events  chan cdpMessage
	done    chan struct{}
}

type cdpMessage struct {
	ID     int             `json:"id,omitempty"`
	Method string          `json:"method,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

type cdpReply struct {
	result json.RawMessage
	err    error
}

// needChromium returns Chromium's path, skipping the test when it is
// absent (failing it on CI, which installs it with scripts/deps.sh).
func needChromium(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing; CI installs it with scripts/deps.sh", chromiumPath)
		}
		t.Skipf("browser test: %s is missing (apt-get install -y chromium, or make deps)", chromiumPath)
	}
	return chromiumPath
}

// startBrowser starts headless Chromium with a throwaway profile and
// attaches to its page. user and pass answer basic-auth challenges.
func startBrowser(t *testing.T, user, pass string) *browser {
	t.Helper()
	path := needChromium(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	b := &browser{t: t, logs: &bytes.Buffer{}, pending: map[int]chan cdpReply{}, events: make(chan cdpMessage, 256), done: make(chan struct{})}
	b.cmd = exec.CommandContext(ctx, path,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--window-size=1280,800",
		"--user-data-dir="+dir, "--remote-debugging-port=0", "about:blank")
	b.cmd.Stdout, b.cmd.Stderr = b.logs, b.logs
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if b.ws != nil {
			b.ws.Close(websocket.StatusNormalClosure, "")
		}
		cancel()
		b.cmd.Wait()
		if t.Failed() {
			t.Logf("chromium's output:\n%s", b.logs)
		}
	})

	// Chromium writes the port it picked into the profile.
	var port string
	deadline := time.Now().Add(30 * time.Second)
	for port == "" {
		if raw, err := os.ReadFile(filepath.Join(dir, "DevToolsActivePort")); err == nil {
			port, _, _ = strings.Cut(string(raw), "\n")
		}
		if time.Now().After(deadline) {
			t.Fatalf("chromium did not open its DevTools port in 30s:\n%s", b.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var targets []struct{ Type, WebSocketDebuggerURL string }
	for {
		resp, err := http.Get("http://127.0.0.1:" + port + "/json/list")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&targets)
			resp.Body.Close()
		}
		if err == nil && len(targets) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("chromium's DevTools list: %v %+v", err, targets)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var wsURL string
	for _, tg := range targets {
		if tg.Type == "page" {
			wsURL = tg.WebSocketDebuggerURL
		}
	}
	if wsURL == "" {
		t.Fatalf("chromium has no page target: %+v", targets)
	}
	ws, _, err := websocket.Dial(ctx, wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.SetReadLimit(64 << 20) // screenshots
	b.ws = ws
	go b.read(ctx)
	go b.handle(user, pass)
	b.call("Fetch.enable", map[string]any{"handleAuthRequests": true, "patterns": []any{map[string]any{"urlPattern": "*"}}}, nil)
	b.call("Page.enable", nil, nil)
	b.call("Runtime.enable", nil, nil)
	return b
}

// read delivers replies to their callers and events to handle.
func (b *browser) read(ctx context.Context) {
	defer close(b.done)
	defer close(b.events)
	for {
		_, data, err := b.ws.Read(ctx)
		if err != nil {
			b.mu.Lock()
			for id, ch := range b.pending {
				ch <- cdpReply{err: err}
				delete(b.pending, id)
			}
			b.mu.Unlock()
			return
		}
		var m cdpMessage
		if json.Unmarshal(data, &m) != nil {
			continue
		}
		if m.ID != 0 {
			b.mu.Lock()
			ch := b.pending[m.ID]
			delete(b.pending, m.ID)
			b.mu.Unlock()
			if ch != nil {
				r := cdpReply{result: m.Result}
				if m.Error != nil {
					r.err = fmt.Errorf("%d %s", m.Error.Code, m.Error.Message)
				}
				ch <- r
			}
			continue
		}
		select {
		case b.events <- m:
		default: // not needed by the test
		}
	}
}

// handle lets paused requests go on and answers auth challenges.
func (b *browser) handle(user, pass string) {
	for m := range b.events {
		var p struct {
			RequestID string `json:"requestId"`
		}
		json.Unmarshal(m.Params, &p)
		switch m.Method {
		case "Fetch.requestPaused":
			b.send("Fetch.continueRequest", map[string]any{"requestId": p.RequestID})
		case "Fetch.authRequired":
			b.send("Fetch.continueWithAuth", map[string]any{"requestId": p.RequestID, "authChallengeResponse": map[string]any{
				"response": "ProvideCredentials", "username": user, "password": pass}})
		}
	}
}

// send issues a command and returns the channel of its reply.
func (b *browser) send(method string, params any) chan cdpReply {
	ch := make(chan cdpReply, 1)
	b.mu.Lock()
	b.next++
	id := b.next
	b.pending[id] = ch
	b.mu.Unlock()
	msg, _ := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	if err := b.ws.Write(context.Background(), websocket.MessageText, msg); err != nil {
		b.mu.Lock()
		delete(b.pending, id)
		b.mu.Unlock()
		ch <- cdpReply{err: err}
	}
	return ch
}

// call issues a command, waits for its reply and decodes it into out.
func (b *browser) call(method string, params, out any) {
	b.t.Helper()
	if params == nil {
		params = map[string]any{}
	}
	select {
	case r := <-b.send(method, params):
		if r.err != nil {
			b.t.Fatalf("%s: %v", method, r.err)
		}
		if out != nil {
			if err := json.Unmarshal(r.result, out); err != nil {
				b.t.Fatalf("%s: %v", method, err)
			}
		}
	case <-time.After(30 * time.Second):
		b.t.Fatalf("%s: no answer in 30s", method)
	}
}

// eval evaluates a JavaScript expression in the page.
func (b *browser) eval(expr string) (json.RawMessage, error) {
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	b.call("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &r)
	if r.ExceptionDetails != nil {
		return nil, errors.New(r.ExceptionDetails.Text)
	}
	return r.Result.Value, nil
}

// text returns the page's visible text.
func (b *browser) text() string {
	b.t.Helper()
	raw, err := b.eval("document.body ? document.body.innerText : ''")
	if err != nil {
		return ""
	}
	var s string
	json.Unmarshal(raw, &s)
	return s
}

// waitText waits until the page's text holds every one of want.
func (b *browser) waitText(timeout time.Duration, want ...string) string {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		text := b.text()
		missing := []string{}
		for _, w := range want {
			if !strings.Contains(text, w) {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 {
			return text
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("after %v the page lacks %q; its text:\n%s", timeout, missing, text)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// screenshot saves the page as a PNG file at each path.
func (b *browser) screenshot(paths ...string) {
	b.t.Helper()
	var r struct {
		Data []byte `json:"data"` // base64 in JSON
	}
	b.call("Page.captureScreenshot", map[string]any{"format": "png"}, &r)
	for _, p := range paths {
		if err := os.WriteFile(p, r.Data, 0o644); err != nil {
			b.t.Errorf("screenshot: %v", err)
		}
	}
}
