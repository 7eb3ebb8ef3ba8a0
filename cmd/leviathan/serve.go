package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/leviathan-net/leviathan/cin"
	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/internal/daemon"
	"github.com/leviathan-net/leviathan/rest"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

type serveConfig struct {
	listen      listFlag
	socket      string
	stateDir    string
	hostID      string
	fabricNetns string
	netnsPrefix string
	auth        string
	tlsCert     string
	tlsKey      string
	logLevel    string
	cinPool     string
	cinLen      int
	docker      bool
}

func serve(ctx context.Context, args []string) error {
	var cfg serveConfig
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.Var(&cfg.listen, "listen", "TCP address to serve the API on; repeatable (default 127.0.0.1:8080)")
	fs.StringVar(&cfg.socket, "socket", "", "also serve the API on this unix socket")
	fs.StringVar(&cfg.stateDir, "state-dir", "/var/lib/leviathan", "directory of the embedded store")
	fs.StringVar(&cfg.hostID, "host-id", "host1", "this host's ID in /host/{hostId}/... URLs")
	fs.StringVar(&cfg.fabricNetns, "fabric-netns", "leviathan", "name of the fabric network namespace leviathan owns")
	fs.StringVar(&cfg.netnsPrefix, "netns-prefix", "", "prefix of the names of network namespaces created for containers")
	fs.StringVar(&cfg.auth, "auth", os.Getenv("LEVIATHAN_AUTH"), "USER:PASSWORD for HTTP basic auth (or $LEVIATHAN_AUTH)")
	fs.StringVar(&cfg.tlsCert, "tls-cert", "", "TLS certificate file (with --tls-key) to serve HTTPS")
	fs.StringVar(&cfg.tlsKey, "tls-key", "", "TLS key file")
	fs.StringVar(&cfg.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&cfg.cinPool, "cin-pool", "", "IPv4 network CINs get their prefixes from (default: the n-th CIN gets 10.(10+n).0.0/16)")
	fs.BoolVar(&cfg.docker, "docker", true, "use the Docker engine that DOCKER_HOST (default unix:///var/run/docker.sock) names, when it answers: Docker containers as members, and CPools")
	fs.IntVar(&cfg.cinLen, "cin-prefix-len", 0, "length of the prefixes cut from --cin-pool (default 16, or the pool's own length if longer)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected arguments %q", fs.Args())
	}
	if len(cfg.listen) == 0 {
		cfg.listen = listFlag{"127.0.0.1:8080"}
	}
	if (cfg.tlsCert == "") != (cfg.tlsKey == "") {
		return errors.New("serve: --tls-cert and --tls-key go together")
	}
	if cfg.auth != "" && !strings.Contains(cfg.auth, ":") {
		return errors.New("serve: --auth wants USER:PASSWORD")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		return fmt.Errorf("serve: --log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	return runDaemon(ctx, cfg, log)
}

func runDaemon(ctx context.Context, cfg serveConfig, log *slog.Logger) error {
	pool := cin.DefaultPool
	if cfg.cinPool != "" || cfg.cinLen != 0 {
		base := pool.Base
		if cfg.cinPool != "" {
			var err error
			if base, err = netip.ParsePrefix(cfg.cinPool); err != nil {
				return fmt.Errorf("serve: --cin-pool: %w", err)
			}
		}
		var err error
		if pool, err = cin.NewPool(base, cfg.cinLen); err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		if cfg.cinPool == "" && pool.Len >= 16 {
			pool.First = 10 << (pool.Len - 16) // still from 10.10.0.0 up
		}
	}
	if err := graph.ValidateID("host", cfg.hostID); err != nil {
		return fmt.Errorf("serve: --host-id: %w", err)
	}
	start := time.Now()
	d, err := daemon.Open(ctx, daemon.Config{
		StateDir:    cfg.stateDir,
		HostID:      cfg.hostID,
		FabricNetns: cfg.fabricNetns,
		NetnsPrefix: cfg.netnsPrefix,
		CINPool:     pool,
		Docker:      cfg.docker,
		Rest:        rest.Options{Auth: cfg.auth},
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
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
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

	var listeners []net.Listener
	closeAll := func() {
		for _, l := range listeners {
			l.Close()
		}
	}
	for _, addr := range cfg.listen {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			closeAll()
			return fmt.Errorf("listen %s: %w", addr, err)
		}
		listeners = append(listeners, l)
	}
	if cfg.socket != "" {
		l, err := listenUnix(cfg.socket)
		if err != nil {
			closeAll()
			return err
		}
		listeners = append(listeners, l)
	}

	errc := make(chan error, len(listeners))
	var wg sync.WaitGroup
	for _, l := range listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if cfg.tlsCert != "" && l.Addr().Network() == "tcp" {
				err = srv.ServeTLS(l, cfg.tlsCert, cfg.tlsKey)
			} else {
				err = srv.Serve(l)
			}
			if !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
		log.Info("serving", "addr", l.Addr().String(), "tls", cfg.tlsCert != "" && l.Addr().Network() == "tcp")
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
	if cfg.socket != "" {
		os.Remove(cfg.socket)
	}
	return serveErr
}

// listenUnix listens on a unix socket only root can reach, replacing a
// stale socket file but never another kind of file.
func listenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("--socket %s: exists and is not a socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("--socket %s: another server is listening there", path)
		}
		os.Remove(path)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}
