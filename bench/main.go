// Command bench measures how fast leviathan realizes container networks in
// the kernel, next to the shell baseline leviathan historically used (one
// `ip` process per operation), and prints a table with the targets.
//
//	go run ./bench [-cens 100] [-per 10] [-skip-shell] [-json FILE]
//	               [-cpuprofile FILE] [-settle 3s] [-log-level warn]
//
// It runs as root. leviathan is measured through its real HTTP API: the
// daemon is assembled in-process as `leviathan serve` assembles it and
// served on 127.0.0.1 by an httptest server. Every kernel object it creates
// lives in namespaces with fresh random names (lvb-fab-*, lvb-*-, and
// lvb-shfab-*, lvb-sh-*- for the baseline), which it removes on the way
// out, also on failure or Ctrl-C. It never touches a namespace it did not
// create.
//
// The work is organized as phases: CENs (every member on a bridge), then
// CINs (the CENs grouped 10 by 10 into IP networks, every member
// addressed, leviathan's addressing plan). Each system builds the phases
// in order, then tears them down in reverse, and each make and destroy is
// timed.
//
// It measures; it does not assert: the exit status is 0 whether targets are
// met or missed, and non-zero only when something failed (a non-2xx
// answer, or the kernel not holding what it should).
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
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/leviathan-net/leviathan/cin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type config struct {
	layout
	skipShell  bool
	jsonFile   string
	cpuProfile string
	logLevel   string
	settle     time.Duration
}

func run(ctx context.Context, args []string) (err error) {
	var cfg config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.IntVar(&cfg.cens, "cens", 100, "number of CENs")
	fs.IntVar(&cfg.per, "per", 10, "members per CEN (distinct containers, at least 3: a bridge)")
	fs.BoolVar(&cfg.skipShell, "skip-shell", false, "skip the shell baseline")
	fs.StringVar(&cfg.jsonFile, "json", "", "also write the results as JSON to this file")
	fs.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write a Go CPU profile of leviathan's make and destroy to this file (kernel waits do not show in it)")
	fs.StringVar(&cfg.logLevel, "log-level", "warn", "the daemon's log level: debug, info, warn or error")
	fs.DurationVar(&cfg.settle, "settle", 3*time.Second, "pause between systems for the kernel to tear down the last one's namespaces")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if cfg.cens < 1 || cfg.per < 3 {
		return errors.New("-cens must be at least 1 and -per at least 3 (a CEN of 2 is a wire, not a bridge)")
	}
	if limit := cin.Capacity(cfg.cinSubnet(0)); cfg.per > limit {
		return fmt.Errorf("-per must be at most %d: a CEN's subnet in a CIN holds that many members", limit)
	}
	if limit := cin.DefaultPool.Size() * censPerCIN; cfg.cens > limit {
		return fmt.Errorf("-cens must be at most %d: the CIN pool holds %d CINs of %d CENs", limit, cin.DefaultPool.Size(), censPerCIN)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	if os.Geteuid() != 0 {
		return errors.New("run as root: the benchmark creates network namespaces")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	// Whatever happens below, what was created goes.
	cl := &cleanup{}
	defer func() {
		if cerr := cl.run(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()

	rep := newReport(cfg)
	fmt.Printf("leviathan benchmark: %d CENs of %d members (%d containers) in %d CINs of up to %d CENs, %d CPUs\n\n",
		cfg.cens, cfg.per, cfg.members(), cfg.cins(), censPerCIN, runtime.NumCPU())

	systems := []func(context.Context, *cleanup) (*system, error){
		func(ctx context.Context, cl *cleanup) (*system, error) {
			return leviathanSystem(ctx, cfg.layout, cl, log)
		},
	}
	if !cfg.skipShell {
		systems = append(systems, func(ctx context.Context, cl *cleanup) (*system, error) {
			return shellSystem(ctx, cfg.layout, cl)
		})
	}
	for i, start := range systems {
		if i > 0 {
			// Namespaces die in the background: let the kernel finish
			// tearing the last system's down before timing the next.
			settle(ctx, cfg.settle)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		sys, err := start(ctx, cl)
		if err != nil {
			return err
		}
		var stopProfile func()
		if sys.name == sysLeviathan && cfg.cpuProfile != "" {
			if stopProfile, err = startCPUProfile(cfg.cpuProfile); err != nil {
				return err
			}
		}
		results, err := sys.run(ctx)
		if stopProfile != nil {
			stopProfile()
		}
		rep.add(results...)
		if err != nil {
			return fmt.Errorf("%s: %w", sys.name, err)
		}
		t := time.Now()
		if err := cl.run(); err != nil {
			return err
		}
		fmt.Printf("%s: cleanup took %s\n", sys.name, time.Since(t).Round(time.Millisecond))
	}

	fmt.Println()
	rep.print(os.Stdout)
	if cfg.jsonFile != "" {
		if err := rep.writeJSON(cfg.jsonFile); err != nil {
			return err
		}
	}
	return nil
}

func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
