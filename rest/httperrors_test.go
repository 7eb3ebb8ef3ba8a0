package rest

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawRequest sends bytes as they are over TCP and reads the answer.
func rawRequest(t *testing.T, addr, req string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	go io.WriteString(conn, req) // the server may answer before it has read it all
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestHTTPLayerErrorsAreJSON sends what a client library would refuse
// to: headers too large, websocket handshakes gone wrong, and the
// malformed requests Go's HTTP server answers itself, before any
// handler. All but those last answer JSON; those are pinned here as
// what docs/manual.md ("Errors") says they are.
func TestHTTPLayerErrorsAreJSON(t *testing.T) {
	e := newEnv(t, Options{})
	addr := strings.TrimPrefix(e.srv.URL, "http://")
	big := strings.Repeat("a", MaxHeaderBytes)
	ws := "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	cases := []struct {
		name, req string
		status    int
		json      bool // false: Go's own text/plain answer, documented
	}{
		{"headers over the limit", "GET /v2/version HTTP/1.1\r\nHost: x\r\nX-Big: " + big + "\r\n\r\n", 431, true},
		{"many headers over the limit", "GET /v2/version HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: "+strings.Repeat("b", 1000)+"\r\n", 70) + "\r\n", 431, true},
		{"a URL over the limit", "GET /cen/" + big + " HTTP/1.1\r\nHost: x\r\n\r\n", 431, true},
		{"headers just under the limit", "GET /v2/version HTTP/1.1\r\nHost: x\r\nX-Big: " + big[:MaxHeaderBytes-100] + "\r\n\r\n", 200, true},
		{"monitor without Upgrade", "GET /leviathan/monitor HTTP/1.1\r\nHost: x\r\n\r\n", 426, true},
		{"monitor with a bad version", "GET /leviathan/monitor HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", 400, true},
		{"monitor without a key", "GET /leviathan/monitor HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n", 400, true},
		{"monitor from another origin", "GET /leviathan/monitor HTTP/1.1\r\nHost: x\r\nOrigin: http://elsewhere.example\r\n" + ws + "\r\n", 403, true},
		{"monitor by POST", "POST /leviathan/monitor HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n" + ws + "\r\n", 405, true},
		{"notifications without Upgrade", "GET /v2/notifications/ws HTTP/1.1\r\nHost: x\r\n\r\n", 426, true},
		// Written by net/http before any handler runs: no hook exists.
		{"headers over the server's limit", "GET /v2/version HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", ServerMaxHeaderBytes+8192) + "\r\n\r\n", 431, false},
		{"a bad Content-Length", "POST /cen/make HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n[]", 400, false},
		{"a malformed request line", "GET\r\n\r\n", 400, false},
		{"no Host", "GET /v2/version HTTP/1.1\r\n\r\n", 400, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := rawRequest(t, addr, c.req)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %.300s", resp.StatusCode, c.status, body)
			}
			ct := resp.Header.Get("Content-Type")
			if !c.json {
				if !strings.HasPrefix(ct, "text/plain") {
					t.Errorf("Content-Type %q: net/http's own answer changed; update this test and docs/manual.md", ct)
				}
				return
			}
			var eb errorBody
			if c.status == 200 {
				return
			}
			if !strings.HasPrefix(ct, "application/json") || json.Unmarshal([]byte(body), &eb) != nil || eb.Status != c.status || eb.Message == "" {
				t.Errorf("Content-Type %q, body %.300s: want JSON {status,message} with status %d", ct, body, c.status)
			}
		})
	}
}

// TestContentType checks that the routes with a JSON body refuse a body
// that says it is something else (415), and take none, curl's default
// for -d and application/json with its parameters.
func TestContentType(t *testing.T) {
	e := newEnv(t, Options{})
	e.must(201, "PUT", "/cen/cen1", "", nil)
	routes := []struct{ method, path, body string }{
		{"POST", "/cen/make", `[]`},
		{"POST", "/cen/destroy", `[]`},
		{"POST", "/cen/import", `{"cenList":[]}`},
		{"POST", "/cin/import", `{}`},
		{"POST", "/cin/make", `[]`},
		{"POST", "/cin/destroy", `[]`},
		{"PUT", "/cin/cin1", `[]`},
		{"PUT", "/host/host1/c1", `{}`},
	}
	types := []struct {
		ct   string
		want bool // accepted
	}{
		{"", true},
		{"application/json", true},
		{"application/json; charset=utf-8", true},
		{"Application/JSON;charset=UTF-8", true},
		{"application/x-www-form-urlencoded", true},
		{"application/merge-patch+json", true},
		{"text/plain", false},
		{"text/plain; charset=utf-8", false},
		{"application/xml", false},
		{"multipart/form-data; boundary=x", false},
		{"application/octet-stream", false},
		{"application/json; charset=latin1", false},
		{"not a media type", false},
	}
	for _, tt := range types {
		t.Run(tt.ct, func(t *testing.T) {
			for _, r := range routes {
				req, _ := http.NewRequest(r.method, e.srv.URL+r.path, strings.NewReader(r.body))
				if tt.ct != "" {
					req.Header.Set("Content-Type", tt.ct)
				}
				resp, err := e.srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if tt.want && resp.StatusCode >= 400 {
					t.Errorf("%s %s with %q: %d %s, want it accepted", r.method, r.path, tt.ct, resp.StatusCode, b)
				}
				var eb errorBody
				if !tt.want && (resp.StatusCode != 415 || json.Unmarshal(b, &eb) != nil || eb.Status != 415) {
					t.Errorf("%s %s with %q: %d %s, want a JSON 415", r.method, r.path, tt.ct, resp.StatusCode, b)
				}
			}
		})
	}
	// Routes without a JSON body do not care.
	req, _ := http.NewRequest("PUT", e.srv.URL+"/cen/cen2", nil)
	req.Header.Set("Content-Type", "text/plain")
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Errorf("PUT /cen/cen2 with text/plain: %d, want 201", resp.StatusCode)
	}
}
