package main

import (
	"context"
	"fmt"
	"time"

	"github.com/leviathan-net/leviathan/cpool/dockerrt"
)

// rejoinWithin bounds the wait for a restarted member, and for leviathan
// to see it stopped: past it the run fails.
const rejoinWithin = 10 * time.Second

// rejoinResult is what the restarts of one member measured, one entry per
// restart.
type rejoinResult struct {
	topology string
	// rejoin is from `docker start` returning to the member's CIN
	// address answering the peer's ping (0 when it answered before);
	// early counts the restarts where it answered before.
	rejoin []time.Duration
	early  int
	// fromInvoke is from running `docker start` to the answer.
	fromInvoke []time.Duration
	// start is `docker start` itself (the command line, to its return).
	start []time.Duration
	// leave is from `docker stop` returning to the API saying the member
	// stopped.
	leave []time.Duration
	// stopErrors counts the stops after which the API showed the stopped
	// member with an error (its exit reason, or a wiring error); firstError
	// is the first.
	stopErrors int
	firstError string
}

// measureRejoin makes a Docker member and peers netns members in a CEN
// (named cen) with a CIN over it, then stops and starts the Docker member
// restarts times with the Docker command line, timing each return to the
// network by ping from the first peer. With one peer the CEN is a wire,
// with more a bridge.
func measureRejoin(ctx context.Context, e *env, cen string, peers, restarts int, interval time.Duration) (rejoinResult, error) {
	r := rejoinResult{topology: fmt.Sprintf("CEN of %d, a wire", peers+1)}
	if peers > 1 {
		r.topology = fmt.Sprintf("CEN of %d, a bridge", peers+1)
	}
	name := e.name(cen)
	members := []string{name}
	for i := range peers {
		members = append(members, e.name(fmt.Sprintf("%s-peer%d", cen, i+1)))
	}
	peer := members[1]
	if _, err := e.eng.Run(ctx, dockerrt.RunSpec{Name: name, Image: e.image}); err != nil {
		return r, err
	}
	if err := e.network(ctx, cen, cen+"n", members...); err != nil {
		return r, err
	}
	addr, err := e.cinAddr(ctx, name, cen)
	if err != nil {
		return r, err
	}
	p, err := openPinger(e.memberNetns(peer))
	if err != nil {
		return r, err
	}
	defer p.close()
	if _, err := p.await(ctx, addr, 10*time.Millisecond, rejoinWithin); err != nil {
		return r, fmt.Errorf("before any restart: %w", err)
	}

	fmt.Printf("rejoin, %s: docker stop -t 0 and docker start of %s (%s), %d times, pinged every %s from %s:\n  ", r.topology, name, addr, restarts, interval, peer)
	for i := range restarts {
		if _, err := e.dockerOut(ctx, "stop", "-t", "0", name); err != nil {
			return r, err
		}
		stopped := time.Now()
		v, err := e.awaitState(ctx, name, "stopped")
		if err != nil {
			return r, err
		}
		r.leave = append(r.leave, time.Since(stopped))
		if v.Error != "" {
			if r.stopErrors == 0 {
				r.firstError = v.Error
			}
			r.stopErrors++
		}

		// Pinging starts with docker start, so that an answer that comes
		// before the command returns is seen as such.
		type answer struct {
			at  time.Time
			err error
		}
		pctx, cancel := context.WithCancel(ctx)
		answers := make(chan answer, 1)
		t := time.Now()
		go func() {
			at, err := p.await(pctx, addr, interval, rejoinWithin)
			answers <- answer{at, err}
		}()
		_, err = e.dockerOut(ctx, "start", name)
		started := time.Now()
		if err != nil {
			cancel()
			<-answers
			return r, err
		}
		a := <-answers
		cancel()
		if a.err != nil {
			return r, fmt.Errorf("restart %d: %w", i+1, a.err)
		}
		r.start = append(r.start, started.Sub(t))
		r.fromInvoke = append(r.fromInvoke, a.at.Sub(t))
		after := max(0, a.at.Sub(started))
		if after == 0 {
			r.early++
		}
		r.rejoin = append(r.rejoin, after)
		fmt.Printf("%s ", after.Round(time.Millisecond))
	}
	fmt.Println()
	return r, nil
}

// awaitState polls the API until container id is in state, and returns
// what it says then.
func (e *env) awaitState(ctx context.Context, id, state string) (containerJSON, error) {
	deadline := time.Now().Add(rejoinWithin)
	for {
		v, err := e.container(ctx, id)
		if err != nil {
			return v, err
		}
		if v.State == state {
			return v, nil
		}
		if time.Now().After(deadline) {
			return v, fmt.Errorf("container %s is %q after %s, want %q", id, v.State, rejoinWithin, state)
		}
		sleep(ctx, 5*time.Millisecond)
	}
}
