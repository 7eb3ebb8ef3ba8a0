// Package mhtest is a lab of several leviathan hosts on one machine, for
// tests and benchmarks: an "underlay" network namespace with a bridge
// (192.0.2.254/24) and one real etcd on it, one "host" namespace per host
// with a veth eth0 on that bridge (192.0.2.N/24), and one real leviathan
// daemon per host, the module's own binary, run in its host's namespace
// as the plan of issue 12 runs it (see Host.Args).
//
// Everything a lab creates is named with one fresh random prefix
// (ktest.Prefix, "lvt-<hex>-"): its namespaces, and the
// daemons' fabric and member namespaces, which the daemons are told to
// name with it. When the test ends, the lab stops its daemons and its
// etcd by PID and removes the namespaces with its prefix, nothing else.
// Processes write to log files only, shown (their tails) when the test
// failed.
//
// A Lab and its Hosts may be used from several goroutines, except that
// Start, Kill and Stop of one host must not race each other. Methods that
// fail the test (Do, JSON, Start...) must be called from the test's own
// goroutine; Request is for other goroutines. Only tests and benchmarks
// import it.
package mhtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leviathan-net/leviathan/internal/ktest"
	"github.com/leviathan-net/leviathan/netfab"
)

// The underlay: one /24 shared by the hosts, etcd on the bridge's address.
const (
	UnderlayBridgeAddr = "192.0.2.254"
	EtcdAddr           = UnderlayBridgeAddr + ":2379"
	etcdPeerAddr       = UnderlayBridgeAddr + ":2380"
	underlayLen        = 24
)

// EtcdBin is Debian's etcd-server (3.4), which scripts/deps.sh installs.
const EtcdBin = "/usr/bin/etcd"

// Lab is a set of hosts sharing an underlay and an etcd.
type Lab struct {
	t testing.TB
	// Prefix starts the name of every namespace of the lab.
	Prefix string
	// Underlay is the path of the underlay namespace, where the bridge
	// and etcd are.
	Underlay string
	// StorePrefix is the etcd key prefix the hosts share.
	StorePrefix string
	Hosts       []*Host

	cfg     config
	dir     string // logs, state dirs, etcd's data
	sockDir string // short, for unix socket paths
	bin     string
	etcd    *proc
}

type config struct {
	bolt     bool
	hostTTL  time.Duration
	logLevel string
	extra    []string
	ready    time.Duration
}

// Option changes how a lab is set up.
type Option func(*config)

// BoltStore runs each daemon on its own default bbolt store, without the
// multi-host flags (--store, --underlay, --host-ttl): hosts that do not
// know of each other. etcd still runs. For checking the lab itself with
// a daemon that has no multi-host support.
func BoltStore() Option { return func(c *config) { c.bolt = true } }

// HostTTL sets --host-ttl (default 2s).
func HostTTL(d time.Duration) Option { return func(c *config) { c.hostTTL = d } }

// LogLevel sets the daemons' --log-level (default debug).
func LogLevel(l string) Option { return func(c *config) { c.logLevel = l } }

// Flags adds flags to every daemon's command line.
func Flags(args ...string) Option { return func(c *config) { c.extra = append(c.extra, args...) } }

// ReadyTimeout bounds how long a daemon or etcd may take to answer after
// it is started (default 30s).
func ReadyTimeout(d time.Duration) Option { return func(c *config) { c.ready = d } }

// HostID is the ID of the i-th host (from 0): hA, hB, hC...
func HostID(i int) string { return "h" + string(rune('A'+i)) }

// New sets up a lab of hosts (1 to 26) and starts etcd and every daemon,
// each ready (GET /v2/version answers 200) when it returns. It skips the
// test unless it runs as root, or when etcd or nsenter is missing, which
// fails it instead when $CI is "true".
func New(t testing.TB, hosts int, opts ...Option) *Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("multi-host lab: needs root (run as root, as CI does) to create network namespaces")
	}
	for _, bin := range []string{EtcdBin, "nsenter", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			msg := fmt.Sprintf("multi-host lab: %s is missing (scripts/deps.sh test installs etcd-server, util-linux and iproute2)", bin)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	if hosts < 1 || hosts > 26 {
		t.Fatalf("mhtest.New: %d hosts, want 1 to 26", hosts)
	}
	cfg := config{hostTTL: 2 * time.Second, logLevel: "debug", ready: 30 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	l := &Lab{t: t, cfg: cfg, dir: t.TempDir(), bin: Binary(t)}
	sockDir, err := os.MkdirTemp("", "lvmh-")
	if err != nil {
		t.Fatal(err)
	}
	l.sockDir = sockDir
	t.Cleanup(func() { os.RemoveAll(sockDir) })

	// Cleanups run last first: the namespaces go after the processes
	// that use them have stopped.
	l.Prefix = ktest.Prefix(t)
	l.StorePrefix = strings.TrimSuffix(l.Prefix, "-")
	l.Underlay = netfab.NetnsPath(l.Prefix + "underlay")
	for i := range hosts {
		id := HostID(i)
		l.Hosts = append(l.Hosts, &Host{
			lab:         l,
			ID:          id,
			Underlay:    fmt.Sprintf("192.0.2.%d", i+1),
			Netns:       netfab.NetnsPath(l.Prefix + id),
			FabricNetns: l.Prefix + "f" + id[1:],
			NetnsPrefix: l.Prefix + id[1:] + "-",
			StateDir:    filepath.Join(l.dir, id),
			Socket:      filepath.Join(sockDir, id+".sock"),
			LogPath:     filepath.Join(l.dir, id+".log"),
			link:        id, // the veth end on the underlay bridge
		})
	}
	l.wire()
	l.startEtcd()
	for _, h := range l.Hosts {
		h.launch()
	}
	t.Cleanup(l.stopHosts) // before etcd is stopped, below it
	for _, h := range l.Hosts {
		h.waitReady()
	}
	return l
}

// Host returns the host with the given ID, failing the test if none.
func (l *Lab) Host(id string) *Host {
	for _, h := range l.Hosts {
		if h.ID == id {
			return h
		}
	}
	l.t.Fatalf("mhtest: no host %q", id)
	return nil
}

// wire creates the underlay namespace with its bridge and each host's
// namespace with its eth0 on that bridge.
func (l *Lab) wire() {
	t := l.t
	t.Helper()
	paths := []string{l.Underlay}
	for _, h := range l.Hosts {
		paths = append(paths, h.Netns)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := netfab.CreateNetns(ctx, paths, 4); err != nil {
		t.Fatalf("mhtest: %v", err)
	}
	u := filepath.Base(l.Underlay)
	ip(t, "-n", u, "link", "add", "br0", "type", "bridge")
	ip(t, "-n", u, "addr", "add", fmt.Sprintf("%s/%d", UnderlayBridgeAddr, underlayLen), "dev", "br0")
	ip(t, "-n", u, "link", "set", "br0", "up")
	for _, h := range l.Hosts {
		// Both ends made in place: nothing passes through the
		// machine's own namespace.
		hn := filepath.Base(h.Netns)
		ip(t, "-n", u, "link", "add", h.link, "master", "br0", "type", "veth", "peer", "name", "eth0", "netns", hn)
		ip(t, "-n", u, "link", "set", h.link, "up")
		ip(t, "-n", hn, "addr", "add", fmt.Sprintf("%s/%d", h.Underlay, underlayLen), "dev", "eth0")
		ip(t, "-n", hn, "link", "set", "eth0", "up")
	}
}

func (l *Lab) stopHosts() {
	for _, h := range l.Hosts {
		h.stopAtEnd()
	}
	if l.t.Failed() {
		for _, h := range l.Hosts {
			l.t.Logf("%s", tail(h.LogPath, "leviathan "+h.ID))
		}
	}
}

// ip runs "ip ARGS..." and fails the test on error.
func ip(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// tailBytes is how much of a log a failed test shows.
const tailBytes = 24 << 10

// tail is the end of the log at path, headed by its name.
func tail(path, name string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("--- %s log: %v", name, err)
	}
	head := fmt.Sprintf("--- %s log (%s, %d bytes)", name, path, len(b))
	if len(b) > tailBytes {
		b = b[len(b)-tailBytes:]
		if i := strings.IndexByte(string(b), '\n'); i >= 0 {
			b = b[i+1:]
		}
		head += ", its end"
	}
	return head + ":\n" + string(b) + "--- end of " + name + " log"
}
