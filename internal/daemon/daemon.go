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
	"sync"
	"time"

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
	StateDir string
	// Store is the store's URL (graph.ParseStoreURL): the embedded file
	// under StateDir when empty, or an etcd cluster shared by hosts.
	Store       string
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
	// Hosts is this host's part among several sharing an etcd store.
	Hosts core.HostConfig
	// HostTTL is how long this host is shown running after it stops
	// renewing its lease (10 s when 0).
	HostTTL time.Duration
	// Version is the version this host reports in its host record.
	Version string
}

// Daemon is an assembled leviathan.
type Daemon struct {
	Store   graph.Store
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
	bg      sync.WaitGroup // the realizer and the host's lease
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
	spec, err := graph.ParseStoreURL(cfg.Store)
	if err != nil {
		return nil, err
	}
	if d.Store, err = graph.OpenStore(ctx, spec, cfg.StateDir); err != nil {
		return nil, err
	}
	if len(spec.Endpoints) > 0 {
		// Reads go on, from the last copy, while etcd does not answer.
		m, err := graph.NewMirror(ctx, d.Store)
		if err != nil {
			return nil, err
		}
		d.Store, cfg.Rest.Stale = m, m.Stale
	}
	if d.Fabric, err = netfab.OpenFabric(ctx, cfg.FabricNetns); err != nil {
		return nil, err
	}
	if err := underlay(cfg.Log, d.Fabric, &cfg.Hosts); err != nil {
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
		Hosts:    cfg.Hosts,
	})
	if err != nil {
		return nil, err
	}
	// This host joins the others before it realizes anything: they then
	// flood its CENs to it.
	if err := d.Service.Register(ctx, cfg.Version); err != nil {
		return nil, err
	}
	rev, err := d.Store.Revision(ctx)
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
	ttl := cfg.HostTTL
	if ttl == 0 {
		ttl = DefaultHostTTL
	}
	d.bg.Go(func() {
		if err := graph.AnnounceHost(opCtx, d.Store, cfg.HostID, ttl); err != nil {
			cfg.Log.Error("host lease", "err", err)
		}
	})
	d.bg.Go(func() { d.Service.Realize(opCtx, rev) })
	// Ready means the other hosts see this one running.
	if err := d.Service.AwaitAlive(ctx); err != nil {
		return nil, err
	}
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

// DefaultHostTTL is how long a host stays shown running after its
// daemon stopped renewing its lease.
const DefaultHostTTL = 10 * time.Second

// underlay tells the fabric where VXLAN's underlay is (the namespace the
// daemon runs in) and fills in the MTU of CENs that span hosts from the
// underlay's interface, when the configuration names an underlay.
func underlay(log *slog.Logger, f *netfab.Fabric, hc *core.HostConfig) error {
	if !hc.Underlay.IsValid() {
		return nil
	}
	// Every thread but one wedged by a goroutine that ended locked
	// elsewhere is in the daemon's own namespace; this one is.
	ns, err := netfab.OwnNetns()
	if err != nil {
		return err
	}
	if err := f.SetUnderlay(ns); err != nil {
		return fmt.Errorf("underlay: %w", err)
	}
	if hc.MTU != 0 {
		return nil
	}
	mtu, err := netfab.UnderlayMTU(ns, hc.Underlay)
	if err != nil {
		return fmt.Errorf("underlay %s: %w", hc.Underlay, err)
	}
	hc.MTU = mtu - netfab.VXLANOverhead(hc.Underlay)
	log.Info("underlay", "address", hc.Underlay, "mtu", mtu, "cen_mtu", hc.MTU)
	return nil
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
	d.bg.Wait()
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
