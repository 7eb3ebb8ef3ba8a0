package dockerrt_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/leviathan-net/leviathan/cpool/dockerrt"
	"github.com/leviathan-net/leviathan/cpool/dockerrt/dtest"
)

// links returns the names of the interfaces of the network namespace of
// process pid, from /proc/<pid>/net/dev.
func links(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/net/dev")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		if name, _, ok := strings.Cut(s.Text(), ":"); ok {
			names = append(names, strings.TrimSpace(name))
		}
	}
	return names
}

func cmdline(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}

func TestRun(t *testing.T) {
	e := dtest.Engine(t)
	prefix := dtest.Name(t)
	tests := []struct {
		name    string
		image   string
		cmd     []string
		wantCmd []string
	}{
		{"image's command", dtest.Image(t, e), nil, []string{"/bin/sleep", "infinity"}},
		{"own command", dtest.Image(t, e), []string{"/bin/sleep", "1000"}, []string{"/bin/sleep", "1000"}},
		{"image with no command", dtest.NoCmdImage(t, e), nil, dockerrt.DefaultCmd},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			labels := map[string]string{"leviathan.cpool": "pool1", "leviathan.test": tt.name}
			name := prefix + strconv.Itoa(i)
			before := time.Now().Add(-time.Second)
			c := run(t, e, dockerrt.RunSpec{Name: name, Image: tt.image, Cmd: tt.cmd, Labels: labels})
			if !c.Running || c.Pid <= 0 {
				t.Fatalf("Run: %+v, want it running with a PID", c)
			}
			if c.Name != name || c.Image != tt.image || len(c.ID) != 64 {
				t.Errorf("Run: name %q image %q ID %q, want %q %q and a full ID", c.Name, c.Image, c.ID, name, tt.image)
			}
			if diff := cmp.Diff(labels, c.Labels); diff != "" {
				t.Errorf("labels (-want +got):\n%s", diff)
			}
			if c.StartedAt.Before(before) || !c.FinishedAt.IsZero() {
				t.Errorf("StartedAt %v FinishedAt %v, want started now, never finished", c.StartedAt, c.FinishedAt)
			}
			if want := "/proc/" + strconv.Itoa(c.Pid) + "/ns/net"; c.Netns() != want {
				t.Errorf("Netns() = %q, want %q", c.Netns(), want)
			}
			if _, err := os.Stat(c.Netns()); err != nil {
				t.Error(err)
			}
			// Network mode none: nothing but lo, and not the host's
			// namespace.
			if got := links(t, c.Pid); !cmp.Equal(got, []string{"lo"}) {
				t.Errorf("the container's interfaces: %v, want only lo", got)
			}
			host, _ := os.Readlink("/proc/self/ns/net")
			if ns, _ := os.Readlink(c.Netns()); ns == host {
				t.Errorf("the container is in this process's network namespace %s", ns)
			}
			if diff := cmp.Diff(tt.wantCmd, cmdline(t, c.Pid)); diff != "" {
				t.Errorf("its command (-want +got):\n%s", diff)
			}
		})
	}
}

// DefaultCmd ends at once, with status 0, on SIGTERM.
func TestDefaultCmdStopsOnTERM(t *testing.T) {
	e := dtest.Engine(t)
	name := dtest.Name(t) + "a"
	c := run(t, e, dockerrt.RunSpec{Name: name, Image: dtest.NoCmdImage(t, e)})
	start := time.Now()
	if err := syscall.Kill(c.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	c = waitExited(t, e, name)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("it took %v to stop on SIGTERM", d)
	}
	if c.ExitCode != 0 || c.Pid != 0 || c.Netns() != "" || c.FinishedAt.IsZero() {
		t.Errorf("after SIGTERM: %+v, want exit code 0, no PID, no netns, a finish time", c)
	}
}

func TestRunExitsAtOnce(t *testing.T) {
	e := dtest.Engine(t)
	name := dtest.Name(t) + "a"
	run(t, e, dockerrt.RunSpec{Name: name, Image: dtest.Image(t, e),
		Cmd: []string{"/bin/sh", "-c", "echo one; echo two >&2; echo three; exit 3"}})
	c := waitExited(t, e, name)
	if c.Running || c.ExitCode != 3 || c.Pid != 0 || c.Netns() != "" {
		t.Errorf("exited: %+v, want not running, exit code 3, no PID, no netns", c)
	}
	tests := []struct {
		n    int
		want []string // the lines, stdout and stderr in any order
	}{
		{0, []string{"one", "three", "two"}},
		{10, []string{"one", "three", "two"}},
		{1, []string{"three"}},
	}
	for _, tt := range tests {
		t.Run("last "+strconv.Itoa(tt.n), func(t *testing.T) {
			logs, err := e.Logs(context.Background(), name, tt.n)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Fields(logs)
			if tt.n == 1 && len(got) == 1 && (got[0] == "two" || got[0] == "three") {
				return // the engine orders the two streams by time
			}
			slices.Sort(got)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Logs(%d) = %q (-want +got):\n%s", tt.n, logs, diff)
			}
		})
	}
}

func TestRunFails(t *testing.T) {
	e := dtest.Engine(t)
	prefix := dtest.Name(t)
	img := dtest.Image(t, e)
	run(t, e, dockerrt.RunSpec{Name: prefix + "taken", Image: img})
	tests := []struct {
		name string
		spec dockerrt.RunSpec
		err  error // nil: any error
	}{
		{"no such image", dockerrt.RunSpec{Name: prefix + "a", Image: "leviathan-test/nothing:1"}, dockerrt.ErrNoImage},
		{"name in use", dockerrt.RunSpec{Name: prefix + "taken", Image: img}, dockerrt.ErrNameInUse},
		{"no such command", dockerrt.RunSpec{Name: prefix + "b", Image: img, Cmd: []string{"/nothing"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := e.Run(context.Background(), tt.spec)
			if err == nil {
				t.Fatalf("Run: %+v, want an error", c)
			}
			if tt.err != nil && !errors.Is(err, tt.err) {
				t.Errorf("Run: %v, want %v", err, tt.err)
			}
			t.Logf("Run: %v", err)
			// What it made, it removed.
			if tt.spec.Name != prefix+"taken" {
				if c, err := e.Lookup(context.Background(), tt.spec.Name); !errors.Is(err, dockerrt.ErrNoContainer) {
					t.Errorf("after a failed Run, Lookup(%q) = %+v, %v; want ErrNoContainer", tt.spec.Name, c, err)
				}
			}
		})
	}
}

func TestRemove(t *testing.T) {
	e := dtest.Engine(t)
	name := dtest.Name(t) + "a"
	c := run(t, e, dockerrt.RunSpec{Name: name, Image: dtest.Image(t, e)})
	for i, ref := range []string{c.ID, c.ID, name, "0123456789ab0123456789ab"} {
		if err := e.Remove(context.Background(), ref); err != nil {
			t.Errorf("Remove #%d (%s): %v", i+1, ref, err)
		}
	}
	if _, err := e.Lookup(context.Background(), c.ID); !errors.Is(err, dockerrt.ErrNoContainer) {
		t.Errorf("after Remove, Lookup: %v, want ErrNoContainer", err)
	}
	if _, err := e.Logs(context.Background(), c.ID, 10); !errors.Is(err, dockerrt.ErrNoContainer) {
		t.Errorf("after Remove, Logs: %v, want ErrNoContainer", err)
	}
}

// A container whose removal is under way (a request of a daemon killed
// since, say) is removed as far as Remove is concerned: it waits for the
// engine to finish instead of failing with the engine's conflict.
func TestRemoveWhileRemoving(t *testing.T) {
	e := dtest.Engine(t)
	name := dtest.Name(t)
	for i := range 3 {
		c := run(t, e, dockerrt.RunSpec{Name: fmt.Sprintf("%s%d", name, i), Image: dtest.Image(t, e)})
		errs := make([]error, 4)
		var wg sync.WaitGroup
		for j := range errs {
			wg.Go(func() { errs[j] = e.Remove(context.Background(), c.ID) })
		}
		wg.Wait()
		for j, err := range errs {
			if err != nil {
				t.Errorf("container %d, concurrent Remove #%d: %v", i, j+1, err)
			}
		}
		if _, err := e.Lookup(context.Background(), c.ID); !errors.Is(err, dockerrt.ErrNoContainer) {
			t.Errorf("after Remove, Lookup: %v, want ErrNoContainer", err)
		}
	}
}
