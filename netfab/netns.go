package netfab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// NetnsDir is where named network namespaces live, as iproute2 keeps them.
var NetnsDir = "/run/netns"

// NetnsPath is the path of the named network namespace name.
func NetnsPath(name string) string { return filepath.Join(NetnsDir, name) }

// IsNetns reports whether path is a mounted network namespace.
func IsNetns(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}

// CreateNetns creates, as iproute2's "ip netns add" would, every named
// network namespace in paths that does not exist yet, with its loopback
// up. Paths must lie in NetnsDir. The work is spread over up to workers
// threads that are discarded afterwards, so no thread of the process is
// ever left in another namespace.
func CreateNetns(ctx context.Context, paths []string, workers int) error {
	var todo []string
	for _, p := range paths {
		if !IsNetns(p) {
			todo = append(todo, p)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	if err := prepareNetnsDir(); err != nil {
		return err
	}
	if workers < 1 {
		workers = 1
	}
	if workers > len(todo) {
		workers = len(todo)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	chunk := (len(todo) + workers - 1) / workers
	for i := 0; i < len(todo); i += chunk {
		part := todo[i:min(i+chunk, len(todo))]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := createNetnsOnFreshThread(ctx, part); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// createNetnsOnFreshThread runs on a goroutine that locks its thread and
// never unlocks it: the runtime then ends the thread with the goroutine,
// taking whatever namespace it was left in along.
func createNetnsOnFreshThread(ctx context.Context, paths []string) error {
	runtime.LockOSThread()
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := createNetnsHere(p); err != nil {
			return err
		}
	}
	return nil
}

// createNetnsHere moves the calling (locked) thread into a new network
// namespace and pins it at path.
func createNetnsHere(path string) (err error) {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o444)
	if err != nil {
		return fmt.Errorf("create netns %s: %w", path, err)
	}
	f.Close()
	defer func() {
		if err != nil {
			os.Remove(path)
		}
	}()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("create netns %s: unshare: %w", path, err)
	}
	// lo goes up before the mount: a namespace is at its path only once
	// complete, since CreateNetns skips one that is there. A crash before
	// the mount leaves nothing but the empty file, which the next
	// CreateNetns mounts over.
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("create netns %s: netlink: %w", path, err)
	}
	defer h.Close()
	if err := h.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1}}); err != nil {
		return fmt.Errorf("create netns %s: set lo up: %w", path, err)
	}
	self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
	if err := unix.Mount(self, path, "none", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("create netns %s: bind mount: %w", path, err)
	}
	return nil
}

var netnsDirOnce struct {
	sync.Mutex
	done bool
}

// prepareNetnsDir makes NetnsDir a shared mount point, as iproute2 does, so
// namespace mounts propagate to other mount namespaces.
func prepareNetnsDir() error {
	netnsDirOnce.Lock()
	defer netnsDirOnce.Unlock()
	if netnsDirOnce.done {
		return nil
	}
	if err := os.MkdirAll(NetnsDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", NetnsDir, err)
	}
	err := unix.Mount("", NetnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) {
		// Not a mount point yet: bind it onto itself first.
		if err = unix.Mount(NetnsDir, NetnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err == nil {
			err = unix.Mount("", NetnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		}
	}
	if err != nil {
		return fmt.Errorf("make %s a shared mount: %w", NetnsDir, err)
	}
	netnsDirOnce.done = true
	return nil
}

// DeleteNetns removes a named network namespace created by CreateNetns (or
// "ip netns add"). Its links go with it. A missing one is not an error.
func DeleteNetns(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete netns %s: unmount: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete netns %s: %w", path, err)
	}
	return nil
}

// inNetns runs fn on a thread moved into the namespace at path; the
// thread is discarded afterwards, never returned to the runtime, so no
// other goroutine can run in that namespace by accident.
func inNetns(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", path, err)
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", path, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// atNetns runs fn on a locked thread moved into the namespace at path
// for as long as fn takes, which is cheaper than inNetns's fresh thread
// when fn is short (opening sockets). It is CNI's ns.Do: fn runs on a
// goroutine of its own whose thread goes back to the runtime only once it
// is back in its namespace; if moving it back fails, the thread stays
// locked and ends with the goroutine, so no other goroutine ever runs in
// the wrong namespace. That failure is not fn's, and is not reported.
func atNetns(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- switchedRun(path, fn)
	}()
	return <-errc
}

// switchedRun does atNetns's work on a locked thread; it unlocks the
// thread only when it leaves it in the namespace it found it in.
func switchedRun(path string, fn func() error) error {
	home, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread() // not moved yet
		return fmt.Errorf("open own netns: %w", err)
	}
	defer unix.Close(home)
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	err = unix.Setns(fd, unix.CLONE_NEWNET)
	unix.Close(fd)
	if err != nil {
		// A failed setns leaves the thread where it was, but a thread
		// whose namespace is in doubt is not given back.
		return fmt.Errorf("enter netns %s: %w", path, err)
	}
	defer func() {
		if unix.Setns(home, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
	}()
	return fn()
}

// setSysctls writes /proc/sys values in the namespace at path: values of
// that namespace only, never the host's.
func setSysctls(path string, kv map[string]string) error {
	return inNetns(path, func() error {
		for k, v := range kv {
			if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
				return fmt.Errorf("sysctl %s in %s: %w", k, path, err)
			}
		}
		return nil
	})
}
