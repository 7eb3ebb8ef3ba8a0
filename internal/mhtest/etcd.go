package mhtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// startEtcd runs one etcd in the underlay namespace on the bridge's
// address, its data in the lab's temporary directory, and waits until it
// is healthy.
func (l *Lab) startEtcd() {
	t := l.t
	t.Helper()
	client, peer := "http://"+EtcdAddr, "http://"+etcdPeerAddr
	logPath := filepath.Join(l.dir, "etcd.log")
	p, err := startProc(l.Underlay, logPath, EtcdBin,
		"--name", "lab",
		"--data-dir", filepath.Join(l.dir, "etcd"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "lab="+peer,
		// A CEN file's import is one transaction: its containers and
		// CENs (docs/manual.md, "Several hosts").
		"--max-txn-ops", "4096",
		"--logger", "zap", "--log-level", "warn")
	if err != nil {
		t.Fatalf("mhtest: %v", err)
	}
	l.etcd = p
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s", tail(logPath, "etcd"))
		}
	})
	deadline := time.Now().Add(l.cfg.ready)
	for {
		body, err := l.EtcdGet("/health")
		if err == nil && strings.Contains(body, `"health":"true"`) {
			return
		}
		if p.exited() {
			t.Fatalf("mhtest: etcd exited (%v)\n%s", p.err, tail(logPath, "etcd"))
		}
		if time.Now().After(deadline) {
			t.Fatalf("mhtest: etcd not healthy after %s: %q %v\n%s", l.cfg.ready, body, err, tail(logPath, "etcd"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// EtcdGet fetches path from etcd's client port (/health, /metrics,
// /version). That port is on the underlay only, so the connection is
// made from a thread in the underlay namespace.
func (l *Lab) EtcdGet(path string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialIn(ctx, l.Underlay, network, addr)
		},
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+EtcdAddr+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("etcd GET %s: %s", path, resp.Status)
	}
	return string(b), err
}

// EtcdKVRequests is the number of requests etcd's KV service (Range, Put,
// DeleteRange, Txn, Compact) has handled since it started, from its
// grpc_server_handled_total counters: the difference over an operation
// is the operation's round trips to the store (leases and watches are
// other services).
func (l *Lab) EtcdKVRequests() (int64, error) {
	m, err := l.EtcdGet("/metrics")
	if err != nil {
		return 0, err
	}
	return sumCounter(m, "grpc_server_handled_total", `grpc_service="etcdserverpb.KV"`)
}

// sumCounter adds the values of the samples of metric whose labels
// contain label, in Prometheus' text format.
func sumCounter(text, metric, label string) (int64, error) {
	var sum int64
	found := false
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, metric+"{") || !strings.Contains(line, label) {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		sum += int64(v)
		found = true
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("no %s{%s} in etcd's metrics", metric, label)
	}
	return sum, nil
}

// dialIn dials addr (an IP literal and port) with a socket of the
// namespace at nsPath: the socket is made on a thread moved into it,
// which is never returned to the runtime (the goroutine ends locked, so
// its thread ends with it) and so never runs anything else there.
func dialIn(ctx context.Context, nsPath, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked, on purpose
		fd, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{err: fmt.Errorf("open netns %s: %w", nsPath, err)}
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			ch <- result{err: fmt.Errorf("enter netns %s: %w", nsPath, err)}
			return
		}
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// EtcdPID is the etcd process's ID.
func (l *Lab) EtcdPID() int { return l.etcd.cmd.Process.Pid }
