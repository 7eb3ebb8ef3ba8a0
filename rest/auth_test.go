package rest

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// concrete turns a route's gin parameters into values.
func concrete(path string) string {
	parts := strings.Split(path, "/")
	for i, p := range parts {
		if strings.HasPrefix(p, ":") || strings.HasPrefix(p, "*") {
			parts[i] = "x" + p[1:]
		}
	}
	return strings.Join(parts, "/")
}

// TestAuthOnEveryRoute walks the router: with auth on, every route
// (websockets, streams and unknown routes included) answers 401 with the
// challenge and a JSON body, without credentials and with a wrong
// password; the same request on a trusted connection gets through.
func TestAuthOnEveryRoute(t *testing.T) {
	e := newEnv(t, Options{Auth: "admin:s3cret"})
	routes := New(context.Background(), e.svc, Options{Auth: "admin:s3cret"}).Routes()
	if len(routes) < 20 {
		t.Fatalf("only %d routes", len(routes))
	}
	routes = append(routes,
		Route{http.MethodGet, "/no/such/route"},
		Route{http.MethodPatch, "/cen/x"}, // a method no route has
	)
	for _, r := range routes {
		t.Run(r.Method+" "+r.Path, func(t *testing.T) {
			for _, tc := range []struct {
				name, user, pass string
				msg              string
			}{
				{"no credentials", "", "", "authentication required"},
				{"wrong password", "admin", "nope", "authentication failed: wrong user or password"},
				{"wrong user", "root", "s3cret", "authentication failed: wrong user or password"},
			} {
				req, _ := http.NewRequest(r.Method, e.srv.URL+concrete(r.Path), strings.NewReader("[]"))
				if tc.user != "" {
					req.SetBasicAuth(tc.user, tc.pass)
				}
				// What a websocket client sends: auth comes before the upgrade.
				req.Header.Set("Connection", "Upgrade")
				req.Header.Set("Upgrade", "websocket")
				req.Header.Set("Sec-WebSocket-Version", "13")
				req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("%s: %d %s, want 401", tc.name, resp.StatusCode, b)
					continue
				}
				if got := resp.Header.Get("WWW-Authenticate"); got != `Basic realm="leviathan"` {
					t.Errorf("%s: WWW-Authenticate %q", tc.name, got)
				}
				var body errorBody
				if err := json.Unmarshal(b, &body); err != nil || body.Status != 401 || body.Message != tc.msg {
					t.Errorf("%s: body %s (%v), want status 401 and %q", tc.name, b, err, tc.msg)
				}
			}
		})
	}
}

// TestTrustedConnSkipsAuth: a server that marks its connections with
// TrustConn (the daemon does for its unix socket) serves them without
// credentials.
func TestTrustedConnSkipsAuth(t *testing.T) {
	e := newEnv(t, Options{Auth: "admin:s3cret"})
	srv := httptest.NewUnstartedServer(New(context.Background(), e.svc, Options{Auth: "admin:s3cret"}))
	srv.Config.ConnContext = func(ctx context.Context, _ net.Conn) context.Context { return TrustConn(ctx) }
	srv.Start()
	defer srv.Close()
	for url, want := range map[string]int{srv.URL: 200, e.srv.URL: 401} {
		resp, err := http.Get(url + "/cen")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s/cen: %d, want %d", url, resp.StatusCode, want)
		}
	}
}
