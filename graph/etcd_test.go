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
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leviathan-net/leviathan/internal/proctest"
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

// pause stops the server's process (SIGSTOP): it holds its connections
// and answers nothing, as a host cut off by a partition looks to others.
// The test resumes it (SIGCONT) when it ends, if it did not.
func (s *etcdServer) pause(t *testing.T) {
	t.Helper()
	t.Cleanup(func() { s.resume(t) })
	if err := proctest.Stop(s.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
}

// resume continues a paused server.
func (s *etcdServer) resume(t *testing.T) {
	t.Helper()
	if s.cmd.ProcessState != nil {
		return
	}
	if err := proctest.Continue(s.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
}

// TestEtcdLeaseExpires checks that the key of an announcer that dies
// without revoking its lease goes about a ttl later, and that watchers see
// it go.
func TestEtcdLeaseExpires(t *testing.T) {
	t.Parallel()
	kit := etcdKit(startEtcd(t))
	s := kit.open(t)
	other := kit.twin(t, s).(*EtcdStore) // the announcer's process
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r0, err := s.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w := s.Watch(ctx, r0)
	const ttl = 2 * time.Second
	done := make(chan error, 1)
	go func() { done <- AnnounceHost(ctx, other, "hB", ttl) }()
	if ch := nextChange(t, w, BucketAlive, "hB"); ch.Deleted {
		t.Fatalf("announced key: %+v", ch)
	}
	// Let a keep-alive or two pass: the key outlives its first ttl.
	time.Sleep(ttl + ttl/2)
	if !alive(t, s)["hB"] {
		t.Fatalf("announced key gone after %v while kept alive", ttl+ttl/2)
	}

	// Its client goes without revoking the lease, as a process killed.
	other.cli.Close()
	killed := time.Now()
	if err := <-done; !errors.Is(err, errStoreClosed) {
		t.Errorf("Announce on a closed store returned %v, want errStoreClosed", err)
	}
	if ch := nextChange(t, w, BucketAlive, "hB"); !ch.Deleted {
		t.Fatalf("after the announcer's end: %+v, want its deletion", ch)
	}
	took := time.Since(killed)
	t.Logf("leased key went %v after its announcer", took)
	if took > ttl+1500*time.Millisecond {
		t.Errorf("leased key went %v after its announcer, want within about the ttl (%v)", took, ttl)
	}
}

// TestEtcdAnnounceAfterPause checks that a key whose lease was lost while
// etcd did not answer is put again once it does, and then kept.
func TestEtcdAnnounceAfterPause(t *testing.T) {
	t.Parallel()
	srv := startEtcd(t)
	s := etcdKit(srv).open(t).(*EtcdStore)
	s.timeout = time.Second
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r0, err := s.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w := s.Watch(ctx, r0)
	const ttl = time.Second // etcd grants its minimum, 2s
	actx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Announce(actx, BucketAlive, "hA", []byte("A"), ttl) }()
	if ch := nextChange(t, w, BucketAlive, "hA"); ch.Deleted {
		t.Fatalf("announced key: %+v", ch)
	}

	srv.pause(t)
	time.Sleep(3500 * time.Millisecond) // past the granted ttl
	srv.resume(t)
	resumed := time.Now()
	// The lease expired during the pause: the key is deleted (unless it
	// was put again first) and put again.
	for {
		ch := nextChange(t, w, BucketAlive, "hA")
		t.Logf("%v after the pause: %+v", time.Since(resumed).Round(time.Millisecond), ch)
		if !ch.Deleted {
			break
		}
	}
	if took := time.Since(resumed); took > 3*time.Second {
		t.Errorf("key put again %v after etcd answered again", took)
	}
	time.Sleep(3 * time.Second) // past the ttl again: kept alive
	if !alive(t, s)["hA"] {
		t.Fatal("key put again after the pause is not kept alive")
	}
	stop()
	if err := <-done; err != nil {
		t.Errorf("Announce returned %v, want nil", err)
	}
	if ch := nextChange(t, w, BucketAlive, "hA"); !ch.Deleted {
		t.Errorf("after the end: %+v, want a deletion", ch)
	}
}

// TestEtcdPaused checks that with etcd paused (its connections open,
// nothing answered) an Update fails with ErrUnavailable after the request
// timeout rather than hanging, and that it works again once etcd does.
func TestEtcdPaused(t *testing.T) {
	t.Parallel()
	srv := startEtcd(t)
	s := etcdKit(srv).open(t).(*EtcdStore)
	if s.timeout != etcdRequestTimeout {
		t.Fatalf("timeout %v, want the default", s.timeout)
	}
	mustUpdate(t, s, putFn(bucketCENs, "a", "1"))
	srv.pause(t)
	for _, tc := range []struct {
		name string
		fn   func(Tx) error
	}{
		{"read-modify-write", func(tx Tx) error { return increment(tx, bucketCENs, "a") }},
		{"blind write", putFn(bucketCENs, "b", "blind")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := s.Update(tc.fn)
			took := time.Since(start)
			if !errors.Is(err, ErrUnavailable) {
				t.Errorf("Update with etcd paused: %v, want ErrUnavailable", err)
			}
			if took > etcdRequestTimeout+2*time.Second {
				t.Errorf("Update with etcd paused took %v", took)
			}
		})
	}
	srv.resume(t)
	mustUpdate(t, s, func(tx Tx) error { return increment(tx, bucketCENs, "a") })
	// A write that timed out was sent: etcd may apply it when it answers
	// again. Callers cannot tell "not done" from "done late".
	t.Logf("after the pause: %v", dump(t, s, bucketCENs))
}

// A change of more keys than the server takes in one transaction is
// refused as one, with what to do about it, and leaves nothing.
func TestEtcdTooManyWrites(t *testing.T) {
	s := etcdKit(startEtcd(t)).open(t)
	err := s.Update(func(tx Tx) error {
		for i := range 200 {
			if err := tx.Put(bucketContainers, fmt.Sprintf("h/c%03d", i), []byte("0")); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "--max-txn-ops") {
		t.Fatalf("Update of 200 keys: %v, want invalid, naming --max-txn-ops", err)
	}
	n := 0
	if err := s.View(func(tx Tx) error {
		return tx.ForEach(bucketContainers, func(string, []byte) error { n++; return nil })
	}); err != nil || n != 0 {
		t.Errorf("after the refused Update: %d keys (%v), want none", n, err)
	}
}

// A transaction that reads many keys of one bucket reads the bucket
// whole once, and still sees its own writes and conflicts with a writer
// that changed a key it read.
func TestEtcdManyGets(t *testing.T) {
	s := etcdKit(startEtcd(t)).open(t)
	const n = 4 * etcdGetsBeforeList
	mustUpdate(t, s, func(tx Tx) error {
		for i := range n {
			if err := tx.Put(bucketContainers, fmt.Sprintf("h/c%03d", i), []byte(fmt.Sprint(i))); err != nil {
				return err
			}
		}
		return nil
	})
	runs := 0
	mustUpdate(t, s, func(tx Tx) error {
		runs++
		if err := tx.Put(bucketContainers, "h/c001", []byte("mine")); err != nil {
			return err
		}
		for i := range n {
			v, err := tx.Get(bucketContainers, fmt.Sprintf("h/c%03d", i))
			want := fmt.Sprint(i)
			switch {
			case i == 1:
				want = "mine"
			case i == n-1 && runs > 1:
				want = "theirs"
			}
			if err != nil || string(v) != want {
				return fmt.Errorf("get %d: %q, %v; want %q", i, v, err, want)
			}
		}
		if v, err := tx.Get(bucketContainers, "h/none"); v != nil || err != nil {
			return fmt.Errorf("a missing key: %q, %v", v, err)
		}
		if runs == 1 {
			// Another writer changes a key read from the listing.
			o, err := OpenEtcd(context.Background(), []string{s.(*EtcdStore).cli.Endpoints()[0]}, s.(*EtcdStore).prefix)
			if err != nil {
				return err
			}
			defer o.Close()
			return o.Update(putFn(bucketContainers, fmt.Sprintf("h/c%03d", n-1), "theirs"))
		}
		return nil
	})
	if runs != 2 {
		t.Errorf("the transaction ran %d times, want 2 (a conflict on a key read from the listing)", runs)
	}
}
