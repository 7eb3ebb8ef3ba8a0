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
