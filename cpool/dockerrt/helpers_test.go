package dockerrt_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leviathan-net/leviathan/cpool/dockerrt"
)

// engineSocket returns the path of the engine's unix socket from
// DOCKER_HOST (default /var/run/docker.sock), or skips t when the engine is
// not on a unix socket.
func engineSocket(t *testing.T) string {
	t.Helper()
	h := os.Getenv("DOCKER_HOST")
	if h == "" {
		return "/var/run/docker.sock"
	}
	p, ok := strings.CutPrefix(h, "unix://")
	if !ok {
		t.Skipf("the engine is at %s, not on a unix socket", h)
	}
	return p
}

// run runs a container for t (removed when t ends with the rest of its
// prefix) and fails t if it cannot.
func run(t *testing.T, e *dockerrt.Engine, s dockerrt.RunSpec) dockerrt.Container {
	t.Helper()
	c, err := e.Run(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitExited polls until the container ref no longer runs.
func waitExited(t *testing.T, e *dockerrt.Engine, ref string) dockerrt.Container {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := e.Lookup(context.Background(), ref)
		if err != nil {
			t.Fatal(err)
		}
		if !c.Running {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s still runs after 10s", ref)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// proxy is a unix-socket proxy in front of the engine, which a test takes
// down and brings back up to play an engine restart. While down it accepts
// connections and closes them at once, counting them.
type proxy struct {
	path, upstream string
	ln             net.Listener

	mu       sync.Mutex // guards the fields below
	down     bool
	attempts int                   // connections refused while down
	conns    map[net.Conn]struct{} // open client and upstream connections
}

func newProxy(t *testing.T) *proxy {
	t.Helper()
	p := &proxy{
		path:     filepath.Join(t.TempDir(), "docker.sock"),
		upstream: engineSocket(t),
		conns:    map[net.Conn]struct{}{},
	}
	ln, err := net.Listen("unix", p.path)
	if err != nil {
		t.Fatal(err)
	}
	p.ln = ln
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.setDown(true)
	})
	return p
}

func (p *proxy) host() string { return "unix://" + p.path }

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.attempts++
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.mu.Unlock()
		go p.forward(c)
	}
}

func (p *proxy) forward(c net.Conn) {
	u, err := net.Dial("unix", p.upstream)
	if err != nil {
		c.Close()
		return
	}
	if !p.track(c, u) {
		c.Close()
		u.Close()
		return
	}
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		io.Copy(dst, src)
		done <- struct{}{}
	}
	go cp(u, c)
	go cp(c, u)
	<-done
	c.Close()
	u.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, u)
	p.mu.Unlock()
}

func (p *proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

// setDown takes the proxy down (closing every open connection, as an
// engine that goes away does) or brings it back up.
func (p *proxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		p.attempts = 0
		for c := range p.conns {
			c.Close()
		}
	}
}

func (p *proxy) refused() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.attempts
}

// events collects what Watch delivers.
type events struct {
	ch chan dockerrt.Event
}

func (ev events) fn(e dockerrt.Event) {
	select {
	case ev.ch <- e:
	default:
		panic("test event buffer full")
	}
}

// next waits for the next event that match accepts, skipping others.
func (ev events) next(t *testing.T, what string, match func(dockerrt.Event) bool) dockerrt.Event {
	t.Helper()
	timer := time.NewTimer(20 * time.Second)
	defer timer.Stop()
	for {
		select {
		case e := <-ev.ch:
			if match(e) {
				return e
			}
			t.Logf("skip event %+v", e)
		case <-timer.C:
			t.Fatalf("no %s event within 20s", what)
		}
	}
}

// watch runs Watch for t until t ends, and checks how it ended.
func watch(t *testing.T, e *dockerrt.Engine) events {
	ev := events{ch: make(chan dockerrt.Event, 1000)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Watch(ctx, ev.fn) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Watch returned %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Watch did not return within 5s of its context's end")
		}
	})
	return ev
}
