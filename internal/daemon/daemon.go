// Package daemon assembles leviathan as "leviathan serve" runs it: the
// embedded store, the fabric namespace, the netns runtime, the internal
// API reconciled with the kernel, the Docker runtime and pools, the
// emulated VMs, and the HTTP API in front of it. The binary and the
// benchmarks share it, so what is measured is what runs.
//
// Threading: a Daemon is safe for concurrent use; Close must be called
// once, after the HTTP servers in front of Handler have stopped.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"

	"github.com/leviathan-net/leviathan/cin"
	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/cpool"
	"github.com/leviathan-net/leviathan/cpool/dockerrt"
	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/internal/metrics"
	"github.com/leviathan-net/leviathan/monitor"
	"github.com/leviathan-net/leviathan/netfab"
	"github.com/leviathan-net/leviathan/rest"
	"github.com/leviathan-net/leviathan/vm"
)

// Config is what "leviathan serve" takes.
type Config struct {
	StateDir    string
	HostID      string
	FabricNetns string
	NetnsPrefix string
	CINPool     cin.Pool // cin.DefaultPool when zero
	// Docker uses the engine the Docker client's environment names, when
	// it answers: Docker members and CPools. Without one they are
	// unavailable and everything else works.
	Docker bool
	VMs    VMConfig
	Rest   rest.Options
	Log    *slog.Logger
}

// Daemon is an assembled leviathan.
type Daemon struct {
	Store   *graph.BoltStore
	Fabric  *netfab.Fabric
	Service *core.Service
	Engine  *dockerrt.Engine // nil without Docker
	Pools   *cpool.Manager
	VMs     *vm.Manager
	// Metrics records core's operations and the kernel's, and serves
	// them at /metrics.
	Metrics *metrics.Metrics
	// Handler serves the API.
	Handler http.Handler
	api     *rest.Server
	cancel  context.CancelFunc
}

// Open assembles and reconciles a daemon. ctx bounds the reconcile only.
func Open(ctx context.Context, cfg Config) (_ *Daemon, err error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if err := graph.ValidateID("host", cfg.HostID); err != nil {
		return nil, fmt.Errorf("host ID: %w", err)
	}
	// d is not the named result: "return nil, err" would make it nil
	// before the deferred Close runs.
	d := &Daemon{}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if d.Store, err = graph.OpenBolt(cfg.StateDir); err != nil {
		return nil, err
	}
	if d.Fabric, err = netfab.OpenFabric(ctx, cfg.FabricNetns); err != nil {
		return nil, err
	}
	// A container ID names a Docker container first, when an engine
	// answers, else a network namespace (DESIGN.md decision 2).
	var runtimes []core.Runtime
	if cfg.Docker {
		d.Engine, err = dockerrt.Open(ctx, cfg.Log)
		switch {
		case errors.Is(err, dockerrt.ErrUnavailable):
			cfg.Log.Warn("no Docker engine: Docker members and CPools are unavailable", "err", err)
		case err != nil:
			return nil, fmt.Errorf("docker: %w", err)
		default:
			runtimes = append(runtimes, cpool.NewRuntime(d.Engine))
			cfg.Log.Info("docker engine", "host", d.Engine.Host(), "api_version", d.Engine.APIVersion())
		}
	}
	// Emulated VMs come before core, whose reconcile wires the VMs that
	// are CEN members: the events bus is made first and shared.
	bus := monitor.NewBus()
	if d.VMs, err = openVMs(ctx, cfg, d, bus); err != nil {
		return nil, err
	}
	// GNS3 switch ports (vm/switch.go) are TAP members of switches' CENs.
	runtimes = append(runtimes, d.VMs.Runtime(), d.VMs.SwitchRuntime())
	runtimes = append(runtimes, &core.NetnsRuntime{Prefix: cfg.NetnsPrefix, Fabric: cfg.FabricNetns, NS: d.Fabric})
	// Core records its batches and calls the kernel through a fabric that
	// counts, into the registry /metrics serves; the reconcile below is
	// counted too.
	if d.Metrics = cfg.Rest.Metrics; d.Metrics == nil {
		d.Metrics = metrics.New(cfg.Log)
	}
	cfg.Rest.Metrics = d.Metrics
	d.Service, err = core.New(core.Options{
		HostID:   cfg.HostID,
		Store:    d.Store,
		Fabric:   d.Metrics.Fabric(d.Fabric),
		Runtimes: runtimes,
		CINPool:  cfg.CINPool,
		Metrics:  d.Metrics,
		Bus:      bus,
		Log:      cfg.Log,
	})
	if err != nil {
		return nil, err
	}
	if err := d.Service.Reconcile(ctx); err != nil {
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	d.VMs.UseCENs(d.Service) // a GNS3 switch is CENs
	// Changes and jobs run under the daemon's lifetime, not a request's.
	opCtx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	if cfg.Rest.Log == nil {
		cfg.Rest.Log = cfg.Log
	}
	if d.Engine != nil {
		d.Pools = cpool.New(cpool.Options{Engine: d.Engine, Service: d.Service, Store: d.Store, Host: cfg.HostID, Log: cfg.Log})
		d.Pools.Start()
		cfg.Rest.Pools = d.Pools
	}
	cfg.Rest.VMs = d.VMs
	d.api = rest.New(opCtx, d.Service, cfg.Rest)
	d.Handler = d.api
	return d, nil
}

// CloseStreams ends the monitor websockets (status 1001, going away) and
// notification streams, which the HTTP servers' own shutdown does not
// end; call it when shutdown begins.
func (d *Daemon) CloseStreams() {
	if d.api != nil {
		d.api.CloseStreams()
	}
}

// VMConfig configures the emulated VMs.
type VMConfig struct {
	// UDPPorts and ConsolePorts are the ranges of their ports
	// (vm.DefaultUDPRange and vm.DefaultConsoleRange when zero).
	UDPPorts, ConsolePorts vm.Range
}

// openVMs starts the emulated VMs' manager: projects under
// STATE/projects, VMs that were started started again.
func openVMs(ctx context.Context, cfg Config, d *Daemon, bus *monitor.Bus) (*vm.Manager, error) {
	if cfg.VMs.UDPPorts == (vm.Range{}) {
		cfg.VMs.UDPPorts = vm.DefaultUDPRange
	}
	if cfg.VMs.ConsolePorts == (vm.Range{}) {
		cfg.VMs.ConsolePorts = vm.DefaultConsoleRange
	}
	ports, err := vm.NewPorts(cfg.VMs.UDPPorts, cfg.VMs.ConsolePorts)
	if err != nil {
		return nil, err
	}
	return vm.OpenManager(ctx, vm.ManagerConfig{
		Store: d.Store, Bus: bus, Ports: ports,
		Dir:    filepath.Join(cfg.StateDir, "projects"),
		HostID: cfg.HostID,
		Log:    cfg.Log.With("part", "vm"),
	})
}

// Close cancels kernel work under way (it rolls back), ends the streams,
// waits for the requests and background jobs still running, and releases
// the fabric's sockets and the store. Kernel state stays.
func (d *Daemon) Close() {
	if d.cancel != nil {
		d.cancel()
	}
	if d.api != nil {
		d.api.Close()
	}
	if d.Pools != nil {
		d.Pools.Close()
	}
	if d.Service != nil {
		d.Service.Wait()
	}
	if d.VMs != nil {
		d.VMs.Close()
	}
	if d.Engine != nil {
		d.Engine.Close()
	}
	if d.Fabric != nil {
		d.Fabric.Close()
	}
	if d.Store != nil {
		d.Store.Close()
	}
}
