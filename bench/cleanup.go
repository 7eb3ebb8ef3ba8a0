package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/leviathan-net/leviathan/netfab"
)

// cleanup removes what the run created. Namespaces are claimed before
// they are created: their names are fresh and random, and a claim fails if
// any of them exists already, so cleanup only ever removes namespaces of
// this run. Safe for concurrent use.
type cleanup struct {
	mu      sync.Mutex // guards the fields below
	closers []func()   // run first, last added first
	netns   []string   // paths
	dirs    []string
}

func (c *cleanup) claimNetns(paths ...string) error {
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil || netfab.IsNetns(p) {
			return fmt.Errorf("%s exists already: not this run's, leaving it alone", p)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.netns = append(c.netns, paths...)
	return nil
}

func (c *cleanup) addDir(dir string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dirs = append(c.dirs, dir)
}

func (c *cleanup) addCloser(fn func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closers = append(c.closers, fn)
}

// run stops what runs, deletes the claimed namespaces (their links go with
// them) and the directories, and forgets them.
func (c *cleanup) run() error {
	c.mu.Lock()
	closers, netns, dirs := c.closers, c.netns, c.dirs
	c.closers, c.netns, c.dirs = nil, nil, nil
	c.mu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
	var errs []error
	for _, p := range netns {
		if err := netfab.DeleteNetns(p); err != nil {
			errs = append(errs, err)
		}
	}
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("cleanup: %d errors, first: %w", len(errs), errs[0])
	}
	return nil
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// settle gives the kernel time to finish tearing down the namespaces
// deleted so far: they die in the background (a batch of 1000 holds the
// namespace and RTNL locks for a few hundred milliseconds, and slows
// namespace creation for a while after), which would otherwise be counted
// against whatever is timed next.
func settle(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	fmt.Printf("settle: %s for the kernel to tear down deleted namespaces\n", d)
	sleep(ctx, d)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
