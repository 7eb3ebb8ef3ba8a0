package dockerrt_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/docker/docker/api"
	"github.com/docker/docker/api/types/versions"

	"github.com/leviathan-net/leviathan/cpool/dockerrt"
	"github.com/leviathan-net/leviathan/cpool/dockerrt/dtest"
)

// serverAPIVersion asks the engine for its API version, as a ping answers
// it, without the Docker client.
func serverAPIVersion(t *testing.T) string {
	t.Helper()
	sock := engineSocket(t)
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	resp, err := c.Get("http://docker/_ping")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	v := resp.Header.Get("Api-Version")
	if v == "" {
		t.Fatal("the engine's ping has no Api-Version")
	}
	return v
}

func TestOpenNegotiatesTheAPIVersion(t *testing.T) {
	t.Setenv("DOCKER_API_VERSION", "") // negotiate, whatever the caller set
	e := dtest.Engine(t)
	server := serverAPIVersion(t)
	want := server
	if versions.LessThan(api.DefaultVersion, server) {
		want = api.DefaultVersion
	}
	if got := e.APIVersion(); got != want {
		t.Errorf("APIVersion() = %s, want %s (engine %s, client %s)", got, want, server, api.DefaultVersion)
	}
	if server == "1.41" && e.APIVersion() != "1.41" {
		t.Errorf("against Debian's engine (API 1.41) APIVersion() = %s", e.APIVersion())
	}
	if err := e.Ping(context.Background()); err != nil {
		t.Errorf("Ping: %v", err)
	}
	t.Logf("engine API %s, client API %s, in use %s", server, api.DefaultVersion, e.APIVersion())
}

func TestOpenUnavailable(t *testing.T) {
	tests := []struct {
		name, host string
	}{
		{"no socket", "unix://" + filepath.Join(t.TempDir(), "nothing.sock")},
		{"no directory", "unix:///nonexistent/leviathan/docker.sock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("DOCKER_HOST", tt.host)
			start := time.Now()
			e, err := dockerrt.Open(context.Background(), nil)
			if err == nil {
				e.Close()
				t.Fatalf("Open against %s: no error", tt.host)
			}
			if !errors.Is(err, dockerrt.ErrUnavailable) {
				t.Errorf("Open: %v, want ErrUnavailable", err)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("Open took %v to fail, want it fast", d)
			}
			t.Logf("Open: %v", err)
		})
	}
}

func TestUnavailableAfterOpen(t *testing.T) {
	dtest.Engine(t) // the proxy needs an engine behind it
	p := newProxy(t)
	t.Setenv("DOCKER_HOST", p.host())
	e, err := dockerrt.Open(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	p.setDown(true)
	// The engine hangs up on each request while down: a failure to
	// reach it, not an answer about the container.
	_, err = e.Lookup(context.Background(), "anything")
	if err == nil || errors.Is(err, dockerrt.ErrNoContainer) {
		t.Errorf("Lookup with the engine down: %v, want a failure to reach it", err)
	}
	if err := e.Ping(context.Background()); !errors.Is(err, dockerrt.ErrUnavailable) {
		t.Errorf("Ping with the engine down: %v, want ErrUnavailable", err)
	}
	p.setDown(false)
	if err := e.Ping(context.Background()); err != nil {
		t.Errorf("Ping with the engine back: %v", err)
	}
}
