package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"

	"github.com/leviathan-net/leviathan/bench/benchkit"
	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/netfab"
	"github.com/leviathan-net/leviathan/rest"
)

// hostID is the daemon's host, as in /host/{hostId}/... URLs.
const hostID = "host1"

// daemon is leviathan assembled in-process as `leviathan serve` assembles
// it (bbolt store, fabric namespace, netns runtime, REST API), served over
// real HTTP on 127.0.0.1.
type daemon struct {
	fabric string // the fabric namespace's name
	prefix string // the netns runtime's prefix
	fab    *netfab.Fabric
	srv    *httptest.Server
	client *http.Client
	close  func()
}

// netnsPath is the path of container id's namespace.
func (d *daemon) netnsPath(id string) string { return netfab.NetnsPath(d.prefix + id) }

// leviathanSystem starts a daemon with a fresh fabric namespace, netns
// prefix and state directory, all registered with cl, and returns it as a
// system ready to run every phase.
func leviathanSystem(ctx context.Context, lay layout, cl *cleanup, log *slog.Logger) (*system, error) {
	tag := randHex(4)
	fabric := "lvb-fab-" + tag
	prefix := "lvb-" + tag + "-"
	// Claim every namespace the run can create before creating any.
	paths := []string{netfab.NetnsPath(fabric)}
	for i := range lay.cens {
		for j := range lay.per {
			paths = append(paths, netfab.NetnsPath(prefix+lay.containerID(i, j)))
		}
	}
	if err := cl.claimNetns(paths...); err != nil {
		return nil, err
	}
	stateDir, err := os.MkdirTemp("", "lvb-state-")
	if err != nil {
		return nil, err
	}
	cl.addDir(stateDir)

	d, err := startDaemon(ctx, fabric, prefix, stateDir, log)
	if err != nil {
		return nil, err
	}
	cl.addCloser(d.close)
	sys := &system{name: sysLeviathan, layout: lay}
	for _, ph := range phases {
		sys.stages = append(sys.stages, ph.leviathan(lay, d))
	}
	return sys, nil
}

// startDaemon assembles the daemon as cmd/leviathan's runDaemon does.
func startDaemon(ctx context.Context, fabric, prefix, stateDir string, log *slog.Logger) (d *daemon, err error) {
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	store, err := graph.OpenBolt(stateDir)
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() { store.Close() })
	fab, err := netfab.OpenFabric(ctx, fabric)
	if err != nil {
		return nil, err
	}
	undo = append(undo, fab.Close)
	svc, err := core.New(core.Options{
		HostID:   hostID,
		Store:    store,
		Fabric:   fab,
		Runtimes: []core.Runtime{&core.NetnsRuntime{Prefix: prefix, Fabric: fabric, NS: fab}},
		Log:      log,
	})
	if err != nil {
		return nil, err
	}
	if err := svc.Reconcile(ctx); err != nil {
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	opCtx, cancelOps := context.WithCancel(context.Background())
	undo = append(undo, func() { cancelOps(); svc.Wait() })
	srv := httptest.NewServer(rest.New(opCtx, svc, rest.Options{Log: log}))
	undo = append(undo, srv.Close)

	d = &daemon{fabric: fabric, prefix: prefix, fab: fab, srv: srv, client: srv.Client()}
	// Stop as runDaemon stops: cancel kernel work, wait for requests and
	// jobs, then release the fabric and the store.
	d.close = func() {
		cancelOps()
		srv.Close()
		svc.Wait()
		fab.Close()
		store.Close()
	}
	var v struct{ Version string }
	if err := d.call(ctx, http.MethodGet, "/v2/version", nil, &v); err != nil {
		return nil, fmt.Errorf("daemon not ready: %w", err)
	}
	fmt.Printf("leviathan %s serving on %s (fabric %s, netns prefix %s, state %s)\n", v.Version, srv.URL, fabric, prefix, stateDir)
	return d, nil
}

// call sends a request with a JSON body (none when in is nil) and decodes
// a 2xx answer into out; any other answer is an error carrying the body.
func (d *daemon) call(ctx context.Context, method, path string, in, out any) error {
	return benchkit.Call(ctx, d.client, d.srv.URL, method, path, in, out)
}
