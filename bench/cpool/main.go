// Command cpool measures leviathan's Docker side and prints a table with
// the targets:
//
//   - launch: a CPool of 50 containers launched and wired through POST
//     /cpool, next to what a script does (`docker run -d --network none`
//     50 times, then one `ip` process per wiring operation), and the share
//     of leviathan's time that is its own wiring rather than Docker
//     running the containers;
//   - rejoin: a Docker member stopped and started 20 times, and the time
//     from `docker start` returning to its CIN address answering a ping
//     from a netns member of its CEN; in a CEN of 2 (a wire) and of 3 (a
//     bridge).
//
// Usage:
//
//	go run ./bench/cpool [-n 50] [-restarts 20] [-timeout 10m] [-log-level warn]
//
// It runs as root, against the Docker engine of the environment
// (DOCKER_HOST): `make bench` starts one through scripts/with-dockerd.sh.
// leviathan is assembled in-process as `leviathan serve` assembles it
// (internal/daemon, with Docker) and served on 127.0.0.1 by an httptest
// server. Everything the run makes carries one fresh random prefix,
// lvb-cp-<hex>-: its containers' names, its namespaces' names (leviathan's
// fabric and members, and the script's fabric), and its image's name
// (lvb-cp-<hex>/busybox, made with `docker import` of busybox-static, so
// no registry is needed). On the way out, also on failure or Ctrl-C, it
// stops leviathan, then removes every container and namespace with that
// prefix and the image; it never touches anything else. Traffic stays
// inside those namespaces and containers.
//
// It measures; it does not assert: the exit status is 0 whether targets are
// met or missed, and non-zero only when something failed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench/cpool:", err)
		os.Exit(1)
	}
}

type config struct {
	n        int           // containers in the pool
	restarts int           // restarts of the Docker member
	interval time.Duration // between pings while waiting for a rejoin
	timeout  time.Duration // bounds the whole run
	logLevel string
}

func run(ctx context.Context, args []string) (err error) {
	var cfg config
	fs := flag.NewFlagSet("cpool", flag.ContinueOnError)
	fs.IntVar(&cfg.n, "n", 50, "containers in the pool, and in the script's run")
	fs.IntVar(&cfg.restarts, "restarts", 20, "stops and starts of the Docker member")
	fs.DurationVar(&cfg.interval, "interval", 5*time.Millisecond, "ping interval while waiting for a restarted member (5-10ms)")
	fs.DurationVar(&cfg.timeout, "timeout", 10*time.Minute, "bound on the whole run (cleanup comes after it)")
	fs.StringVar(&cfg.logLevel, "log-level", "warn", "the daemon's log level: debug, info, warn or error")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if cfg.n < 1 || cfg.n > 200 || cfg.restarts < 1 || cfg.interval <= 0 {
		return errors.New("-n must be 1 to 200 (the addresses of one CEN), -restarts at least 1, -interval positive")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	if os.Geteuid() != 0 {
		return errors.New("run as root: the benchmark creates network namespaces and wires containers")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()

	// Whatever happens below, what was made goes.
	cl := &cleanup{}
	defer func() {
		if cerr := cl.run(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	env, err := setUp(ctx, cl, log)
	if err != nil {
		return err
	}
	fmt.Printf("leviathan CPool benchmark: a pool of %d containers, %d restarts of a Docker member, %d CPUs, Docker %s\n\n",
		cfg.n, cfg.restarts, runtime.NumCPU(), env.dockerVersion)

	var rep report
	rep.n = cfg.n
	if rep.launch, err = measureLaunch(ctx, env, cfg.n); err != nil {
		return fmt.Errorf("launch: %w", err)
	}
	// The member with one peer, a wire, then with two, a bridge: on a
	// wire both ends are made again, on a bridge only the member's.
	for i, peers := range []int{1, 2} {
		r, err := measureRejoin(ctx, env, fmt.Sprintf("rj%d", i+1), peers, cfg.restarts, cfg.interval)
		if err != nil {
			return fmt.Errorf("rejoin: %w", err)
		}
		rep.rejoin = append(rep.rejoin, r)
	}
	fmt.Println()
	rep.print(os.Stdout)
	return nil
}
