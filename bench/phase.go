package main

import (
	"context"
	"fmt"
	"time"
)

// The systems compared.
const (
	sysLeviathan = "leviathan"
	sysShell     = "shell"
)

// layout is the benchmark's shape: cens CENs of per members each, every
// member a distinct container.
type layout struct {
	cens, per int
}

func (l layout) members() int { return l.cens * l.per }

// cenID names CEN i (from 0); it is also the bridge's and the members'
// interface name, so it fits in 15 bytes.
func (l layout) cenID(i int) string { return fmt.Sprintf("cen%d", i+1) }

// containerID names member j of CEN i.
func (l layout) containerID(i, j int) string { return fmt.Sprintf("c%d-%d", i+1, j+1) }

// spots are a few members, spread over the layout, whose namespaces are
// checked one by one after each operation: (CEN, member) pairs.
func (l layout) spots() [][2]int {
	n := l.members()
	seen := map[int]bool{}
	var out [][2]int
	for _, k := range []int{0, 1, n / 3, n / 2, n - 1} {
		if k < 0 || k >= n || seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, [2]int{k / l.per, k % l.per})
	}
	return out
}

// A phase is one layer of the network each system builds: CENs, then
// CINs, which address the CENs' members. Systems build phases in this
// order and tear them down in reverse (CINs before the CENs they use).
type phase struct {
	name string
	// members is how many members the phase's operations serve, for the
	// per-member figures.
	members func(layout) int
	// targets are what the phase's figures are held to.
	targets []target
	// leviathan and shell return the phase's stage on each system.
	leviathan func(layout, *daemon) stage
	shell     func(layout, *shellEnv) stage
}

var phases = []phase{cenPhase(), cinPhase()}

// stage is one phase on one system. make and destroy are timed, and may
// split their time into parts (import, make; or kind of command); the
// checks that follow each are not timed.
type stage struct {
	make, destroy             func(ctx context.Context, p *parts) error
	checkMade, checkDestroyed func(ctx context.Context) error
}

// system is one way of realizing the phases: leviathan or the shell
// baseline. stages are the phases' stages, in the order of phases.
type system struct {
	name   string
	layout layout
	stages []stage
}

// result is one timed operation.
type result struct {
	Phase   string
	Op      string // "make" or "destroy"
	System  string
	Members int
	Total   time.Duration
	Parts   *parts
}

// run builds every phase, then tears them down in reverse, timing each
// operation and checking the kernel after it. It returns what it timed,
// also on failure.
func (s *system) run(ctx context.Context) ([]result, error) {
	var out []result
	do := func(i int, op string, fn func(context.Context, *parts) error, check func(context.Context) error) error {
		ph := phases[i]
		fmt.Printf("%s: %s %s ... ", s.name, ph.name, op)
		p := newParts()
		start := time.Now()
		err := fn(ctx, p)
		took := time.Since(start)
		if err != nil {
			fmt.Println("failed")
			return fmt.Errorf("%s %s: %w", ph.name, op, err)
		}
		out = append(out, result{Phase: ph.name, Op: op, System: s.name, Members: ph.members(s.layout), Total: took, Parts: p})
		fmt.Printf("%s%s\n", took.Round(time.Millisecond), p.String())
		if err := check(ctx); err != nil {
			return fmt.Errorf("after %s %s: %w", ph.name, op, err)
		}
		return nil
	}
	for i, st := range s.stages {
		if err := do(i, "make", st.make, st.checkMade); err != nil {
			return out, err
		}
	}
	for i := len(s.stages) - 1; i >= 0; i-- {
		st := s.stages[i]
		if err := do(i, "destroy", st.destroy, st.checkDestroyed); err != nil {
			return out, err
		}
	}
	return out, nil
}

// parts splits an operation's time by what it spent it on.
type parts struct {
	names []string // in first-seen order
	d     map[string]time.Duration
	last  time.Time
}

func newParts() *parts { return &parts{d: map[string]time.Duration{}, last: time.Now()} }

// add counts d against name.
func (p *parts) add(name string, d time.Duration) {
	if _, ok := p.d[name]; !ok {
		p.names = append(p.names, name)
	}
	p.d[name] += d
}

// lap counts the time since the last lap (or the start) against name.
func (p *parts) lap(name string) {
	now := time.Now()
	p.add(name, now.Sub(p.last))
	p.last = now
}

// time runs fn and counts its time against name.
func (p *parts) time(name string, fn func() error) error {
	start := time.Now()
	err := fn()
	p.add(name, time.Since(start))
	p.last = time.Now()
	return err
}

func (p *parts) String() string {
	if p == nil || len(p.names) < 2 {
		return ""
	}
	s := " ("
	for i, n := range p.names {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s %s", n, p.d[n].Round(time.Millisecond))
	}
	return s + ")"
}
