package rest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/leviathan-net/leviathan/graph"
)

// LEVIATHAN_TEST_STORE=etcd runs the package's tests on a real etcd store
// (one server for the package, a prefix of its own per env) instead of
// the bbolt file; unset, or "bolt", keeps bbolt.
const storeVar = "LEVIATHAN_TEST_STORE"

// etcdBin is Debian's etcd-server (3.4), which scripts/deps.sh installs.
const etcdBin = "/usr/bin/etcd"

var (
	// testEtcd is the client endpoint of the package's etcd server, ""
	// on bbolt.
	testEtcd string
	// etcdMissing, when set, is why the tests that need a store skip:
	// etcd was asked for but is not installed (outside CI).
	etcdMissing string
)

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	switch v := os.Getenv(storeVar); v {
	case "", "bolt":
		return m.Run()
	case "etcd":
	default:
		fmt.Fprintf(os.Stderr, "%s=%q: want etcd or bolt\n", storeVar, v)
		return 2
	}
	if _, err := os.Stat(etcdBin); err != nil {
		if os.Getenv("CI") == "true" {
			fmt.Fprintf(os.Stderr, "%s=etcd but %s is missing (scripts/deps.sh installs etcd-server)\n", storeVar, etcdBin)
			return 1
		}
		etcdMissing = fmt.Sprintf("%s=etcd but %s is missing: install etcd-server (scripts/deps.sh)", storeVar, etcdBin)
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "leviathan-rest-etcd-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv, err := startEtcd(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		fmt.Fprintf(os.Stderr, "etcd's log is in %s\n", dir)
		return 1
	}
	testEtcd = srv.endpoint
	code := m.Run()
	srv.stop()
	if code != 0 {
		// Kept for a look at what etcd said.
		fmt.Fprintf(os.Stderr, "etcd's log and data are in %s\n", dir)
	} else {
		os.RemoveAll(dir)
	}
	return code
}

// etcdServer is the package's etcd process.
type etcdServer struct {
	endpoint string
	cmd      *exec.Cmd
}

// startEtcd runs etcd on free ports of 127.0.0.1 with its data and log in
// dir, and returns once it answers a read.
func startEtcd(dir string) (*etcdServer, error) {
	client, err := freeLoopback()
	if err != nil {
		return nil, err
	}
	peer, err := freeLoopback()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(etcdBin,
		"--name", "rest",
		"--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", "http://"+client, "--advertise-client-urls", "http://"+client,
		"--listen-peer-urls", "http://"+peer, "--initial-advertise-peer-urls", "http://"+peer,
		"--initial-cluster", "rest=http://"+peer,
		// Import and the batch routes write many keys in one transaction,
		// as a daemon's etcd is told to allow.
		"--max-txn-ops", "4096",
		"--logger", "zap", "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	// etcd dies with this process, even when a test panics or times out
	// and TestMain never stops it. The death signal follows the thread
	// that started it, so that is the main one, locked for good.
	runtime.LockOSThread()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start etcd: %w", err)
	}
	srv := &etcdServer{endpoint: client, cmd: cmd}
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		s, err := graph.OpenEtcd(ctx, []string{client}, "ready")
		cancel()
		if err == nil {
			s.Close()
			return srv, nil
		}
		if time.Now().After(deadline) {
			srv.stop()
			log, _ := os.ReadFile(logf.Name())
			return nil, fmt.Errorf("etcd not ready after 15s: %v\n%s", err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop ends etcd by its PID: SIGTERM, then SIGKILL if it lingers.
func (s *etcdServer) stop() {
	pid := s.cmd.Process.Pid
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		syscall.Kill(pid, syscall.SIGKILL)
		<-done
	}
}

// freeLoopback returns a 127.0.0.1 address with a port free right now.
func freeLoopback() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

var nonKey = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// storePrefix is an etcd key prefix of its own for a test's env: its
// name (slashes and all made "_", so that no prefix holds another's keys)
// and a tag unique to the env.
func storePrefix(t testing.TB, tag string) string {
	return "rest/" + nonKey.ReplaceAllString(t.Name(), "_") + "." + nonKey.ReplaceAllString(tag, "_")
}

// openStore opens a test's store as the daemon does: the bbolt file in
// dir, or, on etcd, the keys under prefix wrapped in a Mirror, whose Stale
// is returned for rest.Options (nil on bbolt). Reopening the same dir or
// prefix finds what was left there.
func openStore(t testing.TB, dir, prefix string) (graph.Store, func() (bool, int64, time.Time)) {
	t.Helper()
	if etcdMissing != "" {
		t.Skip(etcdMissing)
	}
	if testEtcd == "" {
		s, err := graph.OpenBolt(dir)
		if err != nil {
			t.Fatal(err)
		}
		return s, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := graph.OpenEtcd(ctx, []string{testEtcd}, prefix)
	if err != nil {
		t.Fatal(err)
	}
	m, err := graph.NewMirror(ctx, s)
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	return m, m.Stale
}

// onEtcd reports whether the tests run on etcd.
func onEtcd() bool { return testEtcd != "" }
