package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/leviathan-net/leviathan/cin"
	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/internal/daemon"
	"github.com/leviathan-net/leviathan/rest"
	"github.com/leviathan-net/leviathan/vm"
)

// defaultSocket is where the daemon serves its API for local clients,
// and where the client looks first.
const defaultSocket = "/run/leviathan/leviathan.sock"

type serveConfig struct {
	listen      []string
	socket      string
	stateDir    string
	hostID      string
	fabricNetns string
	netnsPrefix string
	auth        string
	authFile    string
	insecure    bool
	tlsCert     string
	tlsKey      string
	logLevel    string
	cinPool     string
	cinLen      int
	docker      bool
	udpPorts    string
	consolePort string
	gns3Version string
	store       string
	underlay    string
	vxlanPort   uint16
	vxlanMTU    int
	vniRange    string
	hostTTL     time.Duration
	hostTimeout time.Duration
}

const serveLong = `Run the daemon in the foreground: reconcile the kernel with the store, then
serve the API on the TCP addresses of --listen and on the unix socket of
--socket until SIGINT or SIGTERM.

The unix socket is root's alone (mode 0600) and needs no password. The TCP
listeners need one (--auth, --auth-file or $LEVIATHAN_AUTH) unless they are
on a loopback address: serving a non-loopback address without auth is
refused unless --insecure is given.`

func serveCmd() *cobra.Command {
	var cfg serveConfig
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the daemon",
		Long:  serveLong,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("auth") && cfg.authFile == "" {
				cfg.auth = os.Getenv("LEVIATHAN_AUTH")
			}
			return serve(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.StringArrayVar(&cfg.listen, "listen", []string{"127.0.0.1:8080"}, "TCP address to serve the API on; repeat it for several")
	f.StringVar(&cfg.socket, "socket", defaultSocket, "also serve the API on this unix socket, root's only; '' for none")
	f.StringVar(&cfg.stateDir, "state-dir", "/var/lib/leviathan", "directory of the embedded store")
	f.StringVar(&cfg.hostID, "host-id", "host1", "this host's ID in /host/{hostId}/... URLs")
	f.StringVar(&cfg.fabricNetns, "fabric-netns", "leviathan", "name of the fabric network namespace leviathan owns")
	f.StringVar(&cfg.netnsPrefix, "netns-prefix", "", "prefix of the names of network namespaces created for containers")
	f.StringVar(&cfg.auth, "auth", "", "USER:PASSWORD for HTTP basic auth on TCP (default $LEVIATHAN_AUTH)")
	f.StringVar(&cfg.authFile, "auth-file", "", "read USER:PASSWORD from this file, which only its owner may read")
	f.BoolVar(&cfg.insecure, "insecure", false, "serve a non-loopback address without auth")
	f.StringVar(&cfg.tlsCert, "tls-cert", "", "TLS certificate file (with --tls-key) to serve HTTPS on TCP")
	f.StringVar(&cfg.tlsKey, "tls-key", "", "TLS key file")
	f.StringVar(&cfg.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&cfg.cinPool, "cin-pool", "", "IPv4 network CINs get their prefixes from (default: the n-th CIN gets 10.(10+n).0.0/16)")
	f.IntVar(&cfg.cinLen, "cin-prefix-len", 0, "length of the prefixes cut from --cin-pool (default 16, or the pool's own length if longer)")
	f.BoolVar(&cfg.docker, "docker", true, "use the Docker engine that DOCKER_HOST (default unix:///var/run/docker.sock) names, when it answers: Docker containers as members, and CPools")
	f.StringVar(&cfg.udpPorts, "udp-ports", vm.DefaultUDPRange.String(), "LO-HI: UDP ports of emulated VMs' tunnels (NIOs)")
	f.StringVar(&cfg.consolePort, "console-ports", vm.DefaultConsoleRange.String(), "LO-HI: TCP ports of emulated VMs' consoles, on 127.0.0.1")
	f.StringVar(&cfg.store, "store", "", "where the desired state lives: bolt (a file under --state-dir, the default) or etcd://HOST:PORT[,HOST:PORT...]/PREFIX, shared by several hosts")
	f.StringVar(&cfg.underlay, "underlay", "", "this host's address toward the other hosts: the local end of VXLAN for CENs that span hosts")
	f.Uint16Var(&cfg.vxlanPort, "vxlan-port", core.DefaultVXLANPort, "UDP port of VXLAN between hosts, the same on every host")
	f.IntVar(&cfg.vxlanMTU, "vxlan-mtu", 0, "MTU of the links of CENs that span hosts (default: the underlay interface's MTU less 50)")
	f.StringVar(&cfg.vniRange, "vni-range", core.DefaultVNIs.String(), "LO-HI: VXLAN network identifiers CENs get, the same on every host")
	f.DurationVar(&cfg.hostTTL, "host-ttl", daemon.DefaultHostTTL, "how long other hosts see this one running after it stops answering (its etcd lease)")
	f.DurationVar(&cfg.hostTimeout, "host-timeout", 30*time.Second, "how long make, destroy and membership changes wait for the other hosts involved")
	f.StringVar(&cfg.gns3Version, "gns3-version", rest.DefaultGNS3Version, "GNS3 version the compute API (/v2/compute) reports: a GNS3 controller accepts only a compute of its own version")
	cmd.MarkFlagsMutuallyExclusive("auth", "auth-file")
	// The client's global flags mean nothing to the daemon: keep them
	// out of its help.
	cmd.SetHelpFunc(func(cmd *cobra.Command, args []string) {
		cmd.InheritedFlags().VisitAll(func(f *pflag.Flag) { f.Hidden = true })
		cmd.Parent().HelpFunc()(cmd, args)
	})
	return cmd
}

// serve checks the configuration, binds every listener, and only then
// opens the store and touches the kernel: a second daemon on the same
// socket or address is refused before it changes anything.
func serve(ctx context.Context, cfg serveConfig) error {
	if len(cfg.listen) == 0 && cfg.socket == "" {
		return errors.New("serve: nothing to serve on: give --listen or --socket")
	}
	if (cfg.tlsCert == "") != (cfg.tlsKey == "") {
		return errors.New("serve: --tls-cert and --tls-key go together")
	}
	if cfg.authFile != "" {
		auth, err := readAuthFile(cfg.authFile)
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		cfg.auth = auth
	}
	if cfg.auth != "" && !strings.Contains(cfg.auth, ":") {
		return errors.New("serve: --auth wants USER:PASSWORD")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		return fmt.Errorf("serve: --log-level: %w", err)
	}
	if err := graph.ValidateID("host", cfg.hostID); err != nil {
		return fmt.Errorf("serve: --host-id: %w", err)
	}
	pool, err := cinPool(cfg)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if cfg.auth == "" && !cfg.insecure {
		for _, addr := range cfg.listen {
			lo, err := loopback(ctx, addr)
			if err != nil {
				return fmt.Errorf("serve: --listen %s: %w", addr, err)
			}
			if !lo {
				return fmt.Errorf("serve: refusing to serve %s without auth: anyone who reaches it could rewire this host; give --auth, --auth-file or $LEVIATHAN_AUTH (or --insecure if that is what you want)", addr)
			}
		}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close() // a unix listener removes its socket file
		}
	}()
	for _, addr := range cfg.listen {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("serve: listen %s: %w", addr, err)
		}
		listeners = append(listeners, l)
	}
	if cfg.socket != "" {
		l, err := listenUnix(cfg.socket)
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		listeners = append(listeners, l)
	}
	if cfg.auth == "" && cfg.insecure {
		for _, l := range listeners {
			if a, ok := l.Addr().(*net.TCPAddr); ok && !a.IP.IsLoopback() {
				log.Warn("serving without auth on a non-loopback address (--insecure)", "addr", a.String())
			}
		}
	}
	return runDaemon(ctx, cfg, pool, listeners, log)
}

// cinPool is the pool CINs get their prefixes from.
func cinPool(cfg serveConfig) (cin.Pool, error) {
	pool := cin.DefaultPool
	if cfg.cinPool == "" && cfg.cinLen == 0 {
		return pool, nil
	}
	base := pool.Base
	if cfg.cinPool != "" {
		var err error
		if base, err = netip.ParsePrefix(cfg.cinPool); err != nil {
			return pool, fmt.Errorf("--cin-pool: %w", err)
		}
	}
	pool, err := cin.NewPool(base, cfg.cinLen)
	if err != nil {
		return pool, err
	}
	if cfg.cinPool == "" && pool.Len >= 16 {
		pool.First = 10 << (pool.Len - 16) // still from 10.10.0.0 up
	}
	return pool, nil
}

// loopback says whether every address addr's host stands for is a
// loopback one (an empty host is every address).
func loopback(ctx context.Context, addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, err
	}
	if host == "" {
		return false, nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.IsLoopback(), nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return false, err
	}
	for _, ip := range ips {
		if !ip.Unmap().IsLoopback() {
			return false, nil
		}
	}
	return len(ips) > 0, nil
}

// readAuthFile reads the USER:PASSWORD line of a file that only its
// owner may read.
func readAuthFile(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("--auth-file: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("--auth-file %s: mode %04o lets other users read the password; chmod 600 it", path, perm)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--auth-file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSuffix(line, "\r")
	if !strings.Contains(line, ":") {
		return "", fmt.Errorf("--auth-file %s: want a USER:PASSWORD line", path)
	}
	return line, nil
}

func runDaemon(ctx context.Context, cfg serveConfig, pool cin.Pool, listeners []net.Listener, log *slog.Logger) error {
	start := time.Now()
	var vms daemon.VMConfig
	var err error
	if vms.UDPPorts, err = vm.ParseRange(cfg.udpPorts); err != nil {
		return fmt.Errorf("serve: --udp-ports: %w", err)
	}
	if vms.ConsolePorts, err = vm.ParseRange(cfg.consolePort); err != nil {
		return fmt.Errorf("serve: --console-ports: %w", err)
	}
	hosts := core.HostConfig{VXLANPort: cfg.vxlanPort, MTU: cfg.vxlanMTU, Timeout: cfg.hostTimeout}
	if cfg.underlay != "" {
		if hosts.Underlay, err = netip.ParseAddr(cfg.underlay); err != nil {
			return fmt.Errorf("serve: --underlay: %w", err)
		}
	}
	if hosts.VNIs, err = core.ParseVNIRange(cfg.vniRange); err != nil {
		return fmt.Errorf("serve: --vni-range: %w", err)
	}
	d, err := daemon.Open(ctx, daemon.Config{
		StateDir:    cfg.stateDir,
		Store:       cfg.store,
		Hosts:       hosts,
		HostTTL:     cfg.hostTTL,
		Version:     rest.Version,
		HostID:      cfg.hostID,
		FabricNetns: cfg.fabricNetns,
		NetnsPrefix: cfg.netnsPrefix,
		CINPool:     pool,
		Docker:      cfg.docker,
		VMs:         vms,
		Rest:        rest.Options{Auth: cfg.auth, GNS3Version: cfg.gns3Version},
		Log:         log,
	})
	if err != nil {
		return err
	}
	defer d.Close()
	log.Info("reconcile done", "took", time.Since(start).Round(time.Millisecond))
	// Requests see a context that ends at shutdown, so streams
	// (/v2/notifications) end instead of holding shutdown up.
	baseCtx, endStreams := context.WithCancel(context.Background())
	defer endStreams()
	srv := &http.Server{
		BaseContext: func(net.Listener) context.Context { return baseCtx },
		// Only root can open the socket (mode 0600): its requests need
		// no password.
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if _, ok := c.(*net.UnixConn); ok {
				return rest.TrustConn(ctx)
			}
			return ctx
		},
		Handler:           d.Handler,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    rest.ServerMaxHeaderBytes, // above rest's own limit, which answers JSON
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	// Shutdown waits (up to 15s) for requests under way, a make included,
	// to finish; websockets it neither waits for nor closes, so they are
	// closed with 1001 as it begins. Whatever still runs after it is
	// cancelled by d.Close, which waits for it to roll back.
	srv.RegisterOnShutdown(d.CloseStreams)

	errc := make(chan error, len(listeners))
	var wg sync.WaitGroup
	for _, l := range listeners {
		tls := cfg.tlsCert != "" && l.Addr().Network() == "tcp"
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if tls {
				err = srv.ServeTLS(l, cfg.tlsCert, cfg.tlsKey)
			} else {
				err = srv.Serve(l)
			}
			if !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
		log.Info("serving", "addr", l.Addr().String(), "tls", tls, "auth", cfg.auth != "" && l.Addr().Network() == "tcp")
	}
	log.Info("leviathan ready", "version", rest.Version, "host", cfg.hostID, "fabric", cfg.fabricNetns, "state", cfg.stateDir)

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case serveErr = <-errc:
		log.Error("serve failed", "err", serveErr)
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	endStreams()
	if err := srv.Shutdown(shutCtx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	wg.Wait()
	return serveErr
}

// listenUnix listens on a unix socket only root can reach, creating its
// directory if missing. A stale socket file (nothing answers on it: a
// crash left it) is replaced; a socket another server answers on, or any
// other kind of file, is an error.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("--socket %s: %w", path, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("--socket %s: exists and is not a socket", path)
		}
		c, err := net.DialTimeout("unix", path, 2*time.Second)
		switch {
		case err == nil:
			c.Close()
			return nil, fmt.Errorf("--socket %s: another leviathan is serving there; stop it first, or give this one another --socket", path)
		case errors.Is(err, syscall.ECONNREFUSED):
			if err := os.Remove(path); err != nil {
				return nil, fmt.Errorf("--socket %s: remove the stale socket: %w", path, err)
			}
		default:
			return nil, fmt.Errorf("--socket %s: %w", path, err)
		}
	}
	// The socket is created with the umask's mode: make it root's
	// alone from the start, not after a chmod.
	old := syscall.Umask(0o177)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}
