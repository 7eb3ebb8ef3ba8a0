package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/leviathan-net/leviathan/bench/benchkit"
	"github.com/leviathan-net/leviathan/cpool/dockerrt"
	"github.com/leviathan-net/leviathan/cpool/dockerrt/dtest"
	"github.com/leviathan-net/leviathan/internal/daemon"
	"github.com/leviathan-net/leviathan/netfab"
)

// hostID is the daemon's host, as in /host/{hostId}/... URLs.
const hostID = "host1"

// cleanupTimeout bounds each cleanup step, which runs even after the run's
// context has ended.
const cleanupTimeout = 2 * time.Minute

// env is what every measurement uses: leviathan served over HTTP, a
// connection of the benchmark's own to the same Docker engine, the Docker
// command line, and the run's prefix and image.
type env struct {
	prefix        string // of every container and namespace the run makes
	image         string
	docker        string // the Docker command line
	dockerVersion string
	eng           *dockerrt.Engine
	lev           *daemon.Daemon
	srv           *httptest.Server
	netnsPrefix   string // leviathan's netns runtime: member X is netnsPrefix+X
}

// name is a name under the run's prefix.
func (e *env) name(s string) string { return e.prefix + s }

// memberNetns is the path of the namespace of leviathan's netns member id.
func (e *env) memberNetns(id string) string { return netfab.NetnsPath(e.netnsPrefix + id) }

// setUp makes the run's image and starts leviathan, registering with cl
// the undo of everything as soon as it can exist: leviathan stopped first
// (so that no pool is kept at size while its containers go), then the
// containers, the image and the namespaces.
func setUp(ctx context.Context, cl *cleanup, log *slog.Logger) (*env, error) {
	tag := randHex(4)
	e := &env{prefix: "lvb-cp-" + tag + "-"}
	e.netnsPrefix = e.prefix + "m-"
	if err := checkNoNetns(e.prefix); err != nil {
		return nil, err
	}
	e.docker = "/usr/bin/docker" // Debian's, of the engine's own version
	if _, err := os.Stat(e.docker); err != nil {
		if e.docker, err = exec.LookPath("docker"); err != nil {
			return nil, fmt.Errorf("no Docker command line: %w (install docker.io: make deps)", err)
		}
	}
	eng, err := dockerrt.Open(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("%w (run through scripts/with-dockerd.sh, as make bench does)", err)
	}
	e.eng = eng
	cl.add(func() error { return eng.Close() })
	if cs, err := eng.ListNamed(ctx, e.prefix); err != nil {
		return nil, err
	} else if len(cs) > 0 {
		return nil, fmt.Errorf("containers named %s* exist already: not this run's, leaving them alone", e.prefix)
	}
	cl.add(func() error { return deleteNetnsPrefixed(e.prefix) })
	if e.dockerVersion, err = e.dockerOut(ctx, "version", "--format", "{{.Server.Version}}"); err != nil {
		return nil, err
	}

	e.image = "lvb-cp-" + tag + "/busybox:1"
	if ok, err := eng.HasImage(ctx, e.image); err != nil {
		return nil, err
	} else if ok {
		return nil, fmt.Errorf("image %s exists already: not this run's", e.image)
	}
	rootfs, err := dtest.BusyboxRootfs()
	if err != nil {
		return nil, err
	}
	cl.add(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if ok, err := eng.HasImage(ctx, e.image); err != nil || !ok {
			return err
		}
		_, err := e.dockerOut(ctx, "image", "rm", e.image)
		return err
	})
	if err := eng.ImportImage(ctx, e.image, bytes.NewReader(rootfs), `CMD ["/bin/sleep","infinity"]`); err != nil {
		return nil, err
	}
	cl.add(func() error { return removeContainersPrefixed(eng, e.prefix) })

	stateDir, err := os.MkdirTemp("", "lvb-cp-state-")
	if err != nil {
		return nil, err
	}
	cl.add(func() error { return os.RemoveAll(stateDir) })
	d, err := daemon.Open(ctx, daemon.Config{
		StateDir:    stateDir,
		HostID:      hostID,
		FabricNetns: e.prefix + "fab",
		NetnsPrefix: e.netnsPrefix,
		Docker:      true,
		Log:         log,
	})
	if err != nil {
		return nil, err
	}
	if d.Engine == nil {
		d.Close()
		return nil, errors.New("leviathan found no Docker engine")
	}
	e.lev = d
	e.srv = httptest.NewServer(d.Handler)
	// As runDaemon stops: the server, then the daemon.
	cl.add(func() error {
		e.srv.Close()
		d.Close()
		return nil
	})
	fmt.Printf("leviathan serving on %s with Docker at %s (prefix %s, image %s)\n", e.srv.URL, eng.Host(), e.prefix, e.image)
	return e, nil
}

// call sends a request with a JSON body (none when in is nil) and decodes
// a 2xx answer into out; any other answer is an error carrying the body.
func (e *env) call(ctx context.Context, method, path string, in, out any) error {
	return benchkit.Call(ctx, e.srv.Client(), e.srv.URL, method, path, in, out)
}

// containerJSON is what the benchmark reads of GET /host/{host}/{id}.
type containerJSON struct {
	State      string `json:"state"`
	Error      string `json:"error"`
	Netns      string `json:"netns"`
	Interfaces []struct {
		CEN string  `json:"cenID"`
		IP  *string `json:"ipaddress"`
	} `json:"interfaces"`
}

func (e *env) container(ctx context.Context, id string) (containerJSON, error) {
	var v containerJSON
	err := e.call(ctx, http.MethodGet, "/host/"+hostID+"/"+id, nil, &v)
	return v, err
}

// network makes, through the API, a CEN of the given members and a CIN
// over it.
func (e *env) network(ctx context.Context, cen, cin string, members ...string) error {
	steps := []struct {
		path string
		body any
	}{
		{"/cen/import", map[string]any{"cenList": []map[string]any{{"cenID": cen, "containerIDs": members}}}},
		{"/cin/import", map[string][]string{cin: {cen}}},
		{"/cen/make", []string{cen}},
		{"/cin/make", []string{cin}},
	}
	for _, s := range steps {
		if err := e.call(ctx, http.MethodPost, s.path, s.body, nil); err != nil {
			return err
		}
	}
	return nil
}

// dockerOut runs the Docker command line and returns its output, trimmed.
func (e *env) dockerOut(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, e.docker, args...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return strings.TrimSpace(out.String()), nil
}

// cleanup undoes what the run made, last made first. Each step runs
// whatever the others did. Safe for concurrent use.
type cleanup struct {
	mu    sync.Mutex // guards steps
	steps []func() error
}

func (c *cleanup) add(fn func() error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.steps = append(c.steps, fn)
}

func (c *cleanup) run() error {
	c.mu.Lock()
	steps := c.steps
	c.steps = nil
	c.mu.Unlock()
	var errs []error
	for i := len(steps) - 1; i >= 0; i-- {
		if err := steps[i](); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("cleanup: %w", errors.Join(errs...))
	}
	return nil
}

// removeContainersPrefixed force-removes every container whose name starts
// with prefix, a few at a time.
func removeContainersPrefixed(eng *dockerrt.Engine, prefix string) error {
	if len(prefix) < 12 {
		panic("bench/cpool: refusing a short prefix")
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	cs, err := eng.ListNamed(ctx, prefix)
	if err != nil {
		return err
	}
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	return removeContainers(ctx, eng, ids)
}

// removeContainers force-removes containers, 8 at a time.
func removeContainers(ctx context.Context, eng *dockerrt.Engine, ids []string) error {
	return each(ctx, len(ids), launches, func(i int) error { return eng.Remove(ctx, ids[i]) })
}

// checkNoNetns fails when a namespace with the prefix exists: the prefix is
// fresh and random, so none should, and cleanup removes by it.
func checkNoNetns(prefix string) error {
	names, err := netnsPrefixed(prefix)
	if err != nil {
		return err
	}
	if len(names) > 0 {
		return fmt.Errorf("namespaces %s* exist already: not this run's, leaving them alone", prefix)
	}
	return nil
}

func netnsPrefixed(prefix string) ([]string, error) {
	ents, err := os.ReadDir(netfab.NetnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range ents {
		if strings.HasPrefix(d.Name(), prefix) {
			out = append(out, d.Name())
		}
	}
	return out, nil
}

// deleteNetnsPrefixed deletes every namespace whose name starts with
// prefix (their links go with them).
func deleteNetnsPrefixed(prefix string) error {
	if len(prefix) < 12 {
		panic("bench/cpool: refusing a short prefix")
	}
	names, err := netnsPrefixed(prefix)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		errs = append(errs, netfab.DeleteNetns(netfab.NetnsPath(n)))
	}
	return errors.Join(errs...)
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// each runs fn for 0..n-1, at most limit at once, and joins the errors.
func each(ctx context.Context, n, limit int, fn func(i int) error) error {
	var g errgroup.Group
	g.SetLimit(limit)
	errs := make([]error, n)
	for i := range n {
		if err := ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		g.Go(func() error { errs[i] = fn(i); return nil })
	}
	g.Wait()
	return errors.Join(errs...)
}
