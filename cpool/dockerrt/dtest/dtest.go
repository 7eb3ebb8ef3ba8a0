// Package dtest holds helpers for tests that run against a real Docker
// engine: opening the engine (or skipping, or in CI failing, when there is
// none), local test images made without a registry, and container names
// with a random per-test prefix, so that a test only ever removes its own
// containers. Only tests import it. Its functions are safe for concurrent
// use.
package dtest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leviathan-net/leviathan/cpool/dockerrt"
)

// Images the tests use. Both hold Debian's static busybox as /bin/busybox
// with a link for every applet it has (sh, sleep, ip, ping, ...).
const (
	// ImageName runs `/bin/sleep infinity`.
	ImageName = "leviathan-test/busybox:1"
	// NoCmdImageName has no command at all, so Run gives it DefaultCmd.
	NoCmdImageName = "leviathan-test/busybox-nocmd:1"
)

// Busybox is the static busybox the images are made of (Debian's
// busybox-static).
const Busybox = "/bin/busybox"

const timeout = 2 * time.Minute

// Engine opens the Docker engine of the environment (DOCKER_HOST, or the
// default socket) for t and closes it when t ends. With no engine it skips
// t, or fails it when CI=true, since CI must run these tests.
func Engine(t testing.TB) *dockerrt.Engine {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	w := &tWriter{t: t}
	e, err := dockerrt.Open(ctx, slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		const msg = "no Docker engine: run the tests through make test, which starts one"
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s (CI=true: not skipping): %v", msg, err)
		}
		t.Skipf("%s (%v)", msg, err)
	}
	t.Cleanup(func() {
		w.stop()
		e.Close()
	})
	return e
}

// tWriter sends the engine's log lines to the test's log until the test
// ends (testing forbids logging after that), and drops them after.
type tWriter struct {
	t    testing.TB
	mu   sync.Mutex // guards done, and orders lines
	done bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *tWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

var images sync.Mutex // serializes making the images

// Image returns ImageName, made in e first if it is not there yet.
func Image(t testing.TB, e *dockerrt.Engine) string {
	t.Helper()
	ensureImage(t, e, ImageName, `CMD ["/bin/sleep","infinity"]`)
	return ImageName
}

// NoCmdImage returns NoCmdImageName, made in e first if it is not there
// yet.
func NoCmdImage(t testing.TB, e *dockerrt.Engine) string {
	t.Helper()
	ensureImage(t, e, NoCmdImageName)
	return NoCmdImageName
}

func ensureImage(t testing.TB, e *dockerrt.Engine, ref string, changes ...string) {
	t.Helper()
	images.Lock()
	defer images.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ok, err := e.HasImage(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if ok {
		return
	}
	rootfs, err := BusyboxRootfs()
	if err != nil {
		t.Fatalf("make test image %s: %v", ref, err)
	}
	if err := e.ImportImage(ctx, ref, bytes.NewReader(rootfs), changes...); err != nil {
		t.Fatal(err)
	}
	t.Logf("made test image %s", ref)
}

// BusyboxRootfs returns a tar of a root file system holding Busybox as
// /bin/busybox, a link to it for every applet it lists, and an empty /tmp.
func BusyboxRootfs() ([]byte, error) {
	bin, err := os.ReadFile(Busybox)
	if err != nil {
		return nil, fmt.Errorf("%w (install busybox-static: make deps)", err)
	}
	out, err := exec.Command(Busybox, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list-full: %w", Busybox, err)
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	now := time.Now()
	dirs := map[string]bool{}
	dir := func(name string, mode int64) error {
		if dirs[name] {
			return nil
		}
		dirs[name] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, ModTime: now})
	}
	for _, d := range []string{"bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc"} {
		if err := dir(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := dir("tmp", 0o1777); err != nil {
		return nil, err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bin)), ModTime: now}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	for _, p := range strings.Fields(string(out)) {
		p = strings.Trim(p, "/")
		if p == "" || p == "bin/busybox" {
			continue
		}
		if i := strings.LastIndex(p, "/"); i > 0 {
			if err := dir(p[:i], 0o755); err != nil {
				return nil, err
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: p, Linkname: "/bin/busybox", Mode: 0o777, ModTime: now}); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Name returns a fresh container-name prefix like "lvt-1a2b3c4d-" and
// force-removes, when t ends, every container whose name starts with it.
func Name(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	p := "lvt-" + hex.EncodeToString(b) + "-"
	t.Cleanup(func() { RemoveContainers(t, p) })
	return p
}

// RemoveContainers force-removes every container whose name starts with
// prefix.
func RemoveContainers(t testing.TB, prefix string) {
	if len(prefix) < 8 {
		panic("dtest: refusing a short prefix")
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	e, err := dockerrt.Open(ctx, nil)
	if err != nil {
		t.Logf("cleanup of containers %s*: %v", prefix, err)
		return
	}
	defer e.Close()
	cs, err := e.ListNamed(ctx, prefix)
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	for _, c := range cs {
		if err := e.Remove(ctx, c.ID); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
}
