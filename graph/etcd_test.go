package graph

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcdBin is Debian's etcd-server (3.4), which CI installs.
const etcdBin = "/usr/bin/etcd"

// etcdServer is a real etcd process for one test.
type etcdServer struct {
	endpoint string
	cmd      *exec.Cmd
}

// startEtcd runs an etcd server on random free ports of 127.0.0.1 with a
// throwaway data dir, stopped when the test ends.
func startEtcd(t *testing.T) *etcdServer {
	t.Helper()
	if _, err := os.Stat(etcdBin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing (scripts/deps.sh installs etcd-server)", etcdBin)
		}
		t.Skipf("%s is missing: install etcd-server (scripts/deps.sh) to test the etcd store", etcdBin)
	}
	dir := t.TempDir()
	client := "http://" + freeAddr(t)
	peer := "http://" + freeAddr(t)
	logf, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(etcdBin,
		"--name", "test",
		"--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "test="+peer,
		"--logger", "zap", "--log-level", "error")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	srv := &etcdServer{endpoint: client[len("http://"):], cmd: cmd}
	t.Cleanup(srv.stop)

	// Ready when it answers a read.
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		s, err := OpenEtcd(ctx, []string{srv.endpoint}, "ready")
		cancel()
		if err == nil {
			s.Close()
			return srv
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("etcd not ready after 15s: %v\n%s", err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop kills the server by its PID and waits for it.
func (s *etcdServer) stop() {
	if s.cmd.ProcessState != nil {
		return
	}
	syscall.Kill(s.cmd.Process.Pid, syscall.SIGKILL)
	s.cmd.Wait()
}

// freeAddr returns a 127.0.0.1 address with a port free right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

var nonKey = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

func etcdKit(srv *etcdServer) storeKit {
	open := func(t *testing.T, prefix string) *EtcdStore {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := OpenEtcd(ctx, []string{srv.endpoint}, prefix)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	return storeKit{
		// Each test has a prefix of its own on the one server.
		open: func(t *testing.T) Store { return open(t, "test/"+nonKey.ReplaceAllString(t.Name(), "_")) },
		twin: func(t *testing.T, s Store) Store { return open(t, s.(*EtcdStore).prefix) },
		forget: func(t *testing.T, s Store) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			rev, err := s.Revision(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.(*EtcdStore).cli.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
				t.Fatalf("compact: %v", err)
			}
		},
		retries: true,
	}
}

func TestEtcdStore(t *testing.T) { testStore(t, etcdKit(startEtcd(t))) }

func TestEtcdUnavailable(t *testing.T) {
	srv := startEtcd(t)
	s := etcdKit(srv).open(t)
	s.(*EtcdStore).timeout = time.Second
	mustUpdate(t, s, putFn(bucketCENs, "a", "1"))
	srv.stop()

	start := time.Now()
	err := s.Update(func(tx Tx) error { return increment(tx, bucketCENs, "a") })
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Update with etcd gone: %v, want ErrUnavailable", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Update with etcd gone took %v", took)
	}
	err = s.Update(putFn(bucketCENs, "b", "blind write"))
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("blind Update with etcd gone: %v, want ErrUnavailable", err)
	}

	// Opening fails the same way, within the open's context.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start = time.Now()
	if _, err := OpenEtcd(ctx, []string{srv.endpoint}, "p"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("OpenEtcd with etcd gone: %v, want ErrUnavailable", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("OpenEtcd with etcd gone took %v", took)
	}
}

// TestEtcdManyReads checks that an Update reading more keys than etcd
// compares in one Txn still commits, and still notices a conflict.
func TestEtcdManyReads(t *testing.T) {
	s := etcdKit(startEtcd(t)).open(t)
	const n = 3 * etcdMaxCompares
	for i := range n {
		mustUpdate(t, s, putFn(bucketContainers, fmt.Sprintf("h/c%03d", i), "0"))
	}
	runs := 0
	mustUpdate(t, s, func(tx Tx) error {
		runs++
		for i := range n {
			if _, err := tx.Get(bucketContainers, fmt.Sprintf("h/c%03d", i)); err != nil {
				return err
			}
		}
		if runs == 1 {
			// Another writer changes one of the keys read.
			other, err := OpenEtcd(context.Background(), []string{s.(*EtcdStore).cli.Endpoints()[0]}, s.(*EtcdStore).prefix)
			if err != nil {
				return err
			}
			defer other.Close()
			if err := other.Update(putFn(bucketContainers, "h/c100", "1")); err != nil {
				return err
			}
		}
		return tx.Put(bucketCINs, "sum", []byte(strconv.Itoa(runs)))
	})
	if runs != 2 {
		t.Errorf("fn ran %d times, want 2", runs)
	}
	if d := cmp.Diff(map[string]string{"sum": "2"}, dump(t, s, bucketCINs)); d != "" {
		t.Errorf("cins (-want +got):\n%s", d)
	}
}
