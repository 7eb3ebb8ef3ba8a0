package main

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/leviathan-net/leviathan/cpool"
	"github.com/leviathan-net/leviathan/cpool/dockerrt"
	"github.com/leviathan-net/leviathan/netfab"
)

// launches is how many containers cpool launches at once (its default
// Options.Launches), and so how many the Docker-only runs launch at once.
const launches = 8

// settleTime separates the steps, so that the engine's background work
// from one (shims exiting, layers unmounted) is not counted against the
// next.
const settleTime = time.Second

// The network the pool joins, and what the script builds the same way.
const (
	launchCEN = "cp"  // also the containers' interface name
	launchCIN = "cpn" // leviathan's CIN over launchCEN
	scriptGW  = "10.77.0.1"
	scriptNet = "10.77.0."
)

// launchResult is what the launch measured.
type launchResult struct {
	// pool is POST /cpool, from sending it to its answer; lastStart is
	// from sending it to the latest StartedAt among the pool's
	// containers (Docker's clock, the same machine's).
	pool, lastStart time.Duration
	// dockerOnly is Run of as many containers through dockerrt, as many
	// at once as cpool launches, with no wiring: one before the pool and
	// one after it.
	dockerOnly [2]time.Duration
	poolDelete time.Duration
	script     scriptResult
}

// dockerTime is the Docker-only runs' mean: what Docker alone takes to run
// the pool's containers.
func (r launchResult) dockerTime() time.Duration { return (r.dockerOnly[0] + r.dockerOnly[1]) / 2 }

// scriptResult is the script's time by kind of command.
type scriptResult struct {
	run, inspect, ip time.Duration
	ipCommands       int
}

func (s scriptResult) total() time.Duration { return s.run + s.inspect + s.ip }

func measureLaunch(ctx context.Context, e *env, n int) (launchResult, error) {
	var r launchResult
	peer := e.name("peer")
	if err := e.network(ctx, launchCEN, launchCIN, peer); err != nil {
		return r, err
	}
	// One container first, so that nothing measured pays for the image's
	// first use.
	if err := e.dockerOnly(ctx, "warm", 1); err != nil {
		return r, err
	}
	for i, step := range []func() error{
		func() (err error) { r.dockerOnly[0], err = e.timedDockerOnly(ctx, "raw1", n); return err },
		func() (err error) { r.pool, r.lastStart, r.poolDelete, err = e.launchPool(ctx, n, peer); return err },
		func() (err error) { r.dockerOnly[1], err = e.timedDockerOnly(ctx, "raw2", n); return err },
		func() (err error) { r.script, err = e.launchScript(ctx, n); return err },
	} {
		if i > 0 {
			sleep(ctx, settleTime)
		}
		if err := step(); err != nil {
			return r, err
		}
	}
	return r, nil
}

// timedDockerOnly runs n containers named <prefix>what-N through dockerrt
// as cpool runs a pool's (8 at once, network none), times it, and removes
// them.
func (e *env) timedDockerOnly(ctx context.Context, what string, n int) (time.Duration, error) {
	fmt.Printf("docker only: %d containers through dockerrt.Run, %d at once ... ", n, launches)
	start := time.Now()
	err := e.dockerOnly(ctx, what, n)
	took := time.Since(start)
	if err != nil {
		fmt.Println("failed")
		return 0, err
	}
	fmt.Println(took.Round(time.Millisecond))
	return took, nil
}

func (e *env) dockerOnly(ctx context.Context, what string, n int) error {
	ids := make([]string, n)
	err := each(ctx, n, launches, func(i int) error {
		c, err := e.eng.Run(ctx, dockerrt.RunSpec{Name: e.name(what + "-" + strconv.Itoa(i+1)), Image: e.image})
		ids[i] = c.ID
		return err
	})
	if err != nil {
		return err
	}
	return removeContainers(ctx, e.eng, ids)
}

// launchPool times POST /cpool of n containers joined to the launch CIN
// with its gateway as their default route, checks a few of them (addressed
// and answering the peer's ping), and times DELETE /cpool.
func (e *env) launchPool(ctx context.Context, n int, peer string) (took, lastStart, del time.Duration, err error) {
	id := e.name("pool")
	file := map[string]any{"cpoolList": []map[string]any{{
		"cpoolID": id, "type": e.image, "start_with": n,
		"cins": []map[string]string{{"cinID": launchCIN, "default_route": "true"}},
	}}}
	var created struct {
		CPools []struct {
			State   string   `json:"state"`
			Error   string   `json:"error"`
			Members []string `json:"members"`
		} `json:"cpools"`
	}
	fmt.Printf("leviathan: POST /cpool of %d containers ... ", n)
	start := time.Now()
	err = e.call(ctx, http.MethodPost, "/cpool", file, &created)
	took = time.Since(start)
	if err != nil {
		fmt.Println("failed")
		return 0, 0, 0, err
	}
	fmt.Println(took.Round(time.Millisecond))
	if len(created.CPools) != 1 || created.CPools[0].State != "configured" || len(created.CPools[0].Members) != n {
		return 0, 0, 0, fmt.Errorf("POST /cpool answered %+v, want one ready pool of %d", created.CPools, n)
	}
	cs, err := e.eng.List(ctx, cpool.LabelPool, id)
	if err != nil {
		return 0, 0, 0, err
	}
	if len(cs) != n {
		return 0, 0, 0, fmt.Errorf("the engine holds %d of the pool's containers, want %d", len(cs), n)
	}
	var last time.Time
	for _, c := range cs {
		if c.StartedAt.After(last) {
			last = c.StartedAt
		}
	}
	lastStart = last.Sub(start)

	// A few members, checked through the API and by ping from the peer.
	p, err := openPinger(e.memberNetns(peer))
	if err != nil {
		return 0, 0, 0, err
	}
	defer p.close()
	members := created.CPools[0].Members
	for _, m := range spots(members) {
		addr, err := e.cinAddr(ctx, m, launchCEN)
		if err != nil {
			return 0, 0, 0, err
		}
		if _, err := p.await(ctx, addr, 10*time.Millisecond, 2*time.Second); err != nil {
			return 0, 0, 0, fmt.Errorf("pool member %s: %w", m, err)
		}
	}

	fmt.Printf("leviathan: DELETE /cpool/%s ... ", id)
	start = time.Now()
	if err := e.call(ctx, http.MethodDelete, "/cpool/"+id, nil, nil); err != nil {
		fmt.Println("failed")
		return 0, 0, 0, err
	}
	del = time.Since(start)
	fmt.Println(del.Round(time.Millisecond))
	return took, lastStart, del, nil
}

// cinAddr is the CIN address of container id on CEN cen, as the API says.
func (e *env) cinAddr(ctx context.Context, id, cen string) (netip.Addr, error) {
	v, err := e.container(ctx, id)
	if err != nil {
		return netip.Addr{}, err
	}
	for _, i := range v.Interfaces {
		if i.CEN == cen && i.IP != nil {
			pfx, err := netip.ParsePrefix(*i.IP)
			if err != nil {
				return netip.Addr{}, fmt.Errorf("container %s: address %q: %w", id, *i.IP, err)
			}
			return pfx.Addr(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("container %s has no CIN address on %s: %+v", id, cen, v)
}

// spots are the first, middle and last of ss.
func spots(ss []string) []string {
	if len(ss) <= 3 {
		return ss
	}
	return []string{ss[0], ss[len(ss)/2], ss[len(ss)-1]}
}

// launchScript does what a script would: `docker run -d --network none`
// n times, one after the other, then for each container `docker inspect`
// for its PID and one ip process per wiring operation, as leviathan wires
// a pool member: a veth made in a fabric namespace, its container end
// moved into the container's namespace, the fabric end put on the CEN's
// bridge and brought up; inside, the end renamed, addressed, brought up,
// and a default route through the bridge's gateway. The fabric namespace
// with its bridge and gateway is made first, untimed, as leviathan's CEN
// and CIN are. It checks that a few containers answer a ping from the
// fabric, and removes the containers.
func (e *env) launchScript(ctx context.Context, n int) (r scriptResult, err error) {
	ip, err := exec.LookPath("ip")
	if err != nil {
		return r, fmt.Errorf("%w (install iproute2)", err)
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return r, fmt.Errorf("%w (install util-linux)", err)
	}
	fab := e.prefix + "sh"
	for _, args := range [][]string{
		{"netns", "add", fab},
		{"-n", fab, "link", "add", launchCEN, "type", "bridge"},
		{"-n", fab, "link", "set", launchCEN, "up"},
		{"-n", fab, "addr", "add", scriptGW + "/24", "dev", launchCEN},
	} {
		if _, err := command(ctx, ip, args...); err != nil {
			return r, err
		}
	}

	fmt.Printf("script: docker run -d --network none, %d times ... ", n)
	ids := make([]string, 0, n)
	defer func() {
		// The containers go whatever happened; the namespace goes with
		// the run's.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if rerr := removeContainers(rctx, e.eng, ids); rerr != nil && err == nil {
			err = rerr
		}
	}()
	start := time.Now()
	for i := range n {
		id, err := e.dockerOut(ctx, "run", "-d", "--network", "none", "--name", e.name("cli-"+strconv.Itoa(i+1)), e.image)
		if err != nil {
			fmt.Println("failed")
			return r, err
		}
		ids = append(ids, id)
	}
	r.run = time.Since(start)
	fmt.Println(r.run.Round(time.Millisecond))

	fmt.Printf("script: docker inspect and ip per operation, %d containers ... ", n)
	for i, id := range ids {
		t := time.Now()
		pid, err := e.dockerOut(ctx, "inspect", "-f", "{{.State.Pid}}", id)
		r.inspect += time.Since(t)
		if err != nil {
			fmt.Println("failed")
			return r, err
		}
		host, peer := "lvbh"+strconv.Itoa(i), "lvbc"+strconv.Itoa(i)
		inside := []string{"--net=/proc/" + pid + "/ns/net", ip}
		t = time.Now()
		for _, argv := range [][]string{
			{ip, "-n", fab, "link", "add", host, "type", "veth", "peer", "name", peer},
			{ip, "-n", fab, "link", "set", peer, "netns", pid},
			{ip, "-n", fab, "link", "set", host, "master", launchCEN},
			{ip, "-n", fab, "link", "set", host, "up"},
			append([]string{nsenter}, append(inside, "link", "set", peer, "name", launchCEN)...),
			append([]string{nsenter}, append(inside, "addr", "add", scriptAddr(i)+"/24", "dev", launchCEN)...),
			append([]string{nsenter}, append(inside, "link", "set", launchCEN, "up")...),
			append([]string{nsenter}, append(inside, "route", "add", "default", "via", scriptGW)...),
		} {
			if _, err := command(ctx, argv[0], argv[1:]...); err != nil {
				fmt.Println("failed")
				return r, err
			}
			r.ipCommands++
		}
		r.ip += time.Since(t)
	}
	fmt.Printf("%s (inspect %s, ip %s)\n", (r.inspect + r.ip).Round(time.Millisecond), r.inspect.Round(time.Millisecond), r.ip.Round(time.Millisecond))

	p, err := openPinger(netfab.NetnsPath(fab))
	if err != nil {
		return r, err
	}
	defer p.close()
	for _, i := range []int{0, n / 2, n - 1} {
		addr := netip.MustParseAddr(scriptAddr(i))
		if _, err := p.await(ctx, addr, 10*time.Millisecond, 2*time.Second); err != nil {
			return r, fmt.Errorf("script's container %d: %w", i+1, err)
		}
	}
	return r, nil
}

// scriptAddr is the script's address for container i (from 0).
func scriptAddr(i int) string { return scriptNet + strconv.Itoa(10+i) }

// command runs argv (no shell) and fails with its output when it fails.
func command(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
