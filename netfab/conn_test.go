package netfab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// threadsIn lists the threads of the process in the namespace at path.
func threadsIn(t testing.TB, path string) []string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("net:[%d]", st.Ino)
	tasks, err := filepath.Glob("/proc/self/task/*/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	var in []string
	for _, p := range tasks {
		if l, err := os.Readlink(p); err == nil && l == want {
			in = append(in, p)
		}
	}
	return in
}

// TestDialLeavesNoThreadInNetns checks that dial gives no thread back to
// the runtime while it is in the member's namespace.
func TestDialLeavesNoThreadInNetns(t *testing.T) {
	ns := testNamespaces(t, 1)[0]
	// The threads that created the namespace may linger in it (they end
	// with their goroutines, and the main thread is parked instead).
	before := map[string]bool{}
	for _, p := range threadsIn(t, ns) {
		before[p] = true
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				c, err := dial(ns)
				if err != nil {
					t.Error(err)
					return
				}
				c.Close()
			}
		})
	}
	wg.Wait()
	for _, p := range threadsIn(t, ns) {
		if !before[p] {
			t.Errorf("dial left thread %s in %s", p, ns)
		}
	}
}

// BenchmarkDial measures opening a conn in a member namespace, which
// every operation does once per member.
func BenchmarkDial(b *testing.B) {
	ns := testNamespaces(b, 1)[0]
	for b.Loop() {
		c, err := dial(ns)
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

func TestRetryDump(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name      string
		ctx       context.Context
		errs      []error // what each call returns; nil once they run out
		wantCalls int
		wantErr   error
	}{
		{"success", context.Background(), nil, 1, nil},
		{"interrupted then done", context.Background(), []error{netlink.ErrDumpInterrupted, unix.EINTR, fmt.Errorf("dump: %w", unix.EBUSY), unix.EAGAIN}, 5, nil},
		{"not transient", context.Background(), []error{unix.EPERM}, 1, unix.EPERM},
		{"gives up", context.Background(), []error{unix.EBUSY, unix.EBUSY, unix.EBUSY, unix.EBUSY, unix.EBUSY, unix.EBUSY}, 5, unix.EBUSY},
		{"ctx ends the wait", canceled, []error{unix.EINTR, unix.EINTR}, 1, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			err := retryDump(tt.ctx, func() error {
				calls++
				if calls <= len(tt.errs) {
					return tt.errs[calls-1]
				}
				return nil
			})
			if calls != tt.wantCalls {
				t.Errorf("calls = %d, want %d", calls, tt.wantCalls)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}
