package mhtest_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/leviathan-net/leviathan/internal/ktest"
	"github.com/leviathan-net/leviathan/internal/mhtest"
	"github.com/leviathan-net/leviathan/netfab"
)

func TestMain(m *testing.M) { os.Exit(mhtest.Run(m)) }

// TestLab checks the lab itself with daemons that need no multi-host
// flags (each on its own bbolt store): every daemon runs in its host's
// namespace and answers on its socket, the underlay connects the hosts
// and etcd, Kill, Stop, Start, Partition and Heal do what they say, and
// nothing of the lab is left when its test ends.
func TestLab(t *testing.T) {
	var (
		prefix string
		pids   []int
	)
	t.Run("lab", func(t *testing.T) {
		lab := mhtest.New(t, 3, mhtest.BoltStore())
		prefix = lab.Prefix
		pids = append(pids, lab.EtcdPID())

		t.Run("daemons", func(t *testing.T) {
			for i, h := range lab.Hosts {
				if want := mhtest.HostID(i); h.ID != want {
					t.Errorf("host %d: ID %q, want %q", i, h.ID, want)
				}
				var v struct{ Version string }
				if s, body := h.JSON("GET", "/v2/version", nil, &v); s != 200 || v.Version == "" {
					t.Errorf("%s: GET /v2/version: %d %s", h.ID, s, body)
				}
				if got, want := netnsOf(t, h.PID()), inode(t, h.Netns); !slices.Contains(got, want) {
					t.Errorf("%s: the daemon's threads are in netns inodes %d, none its host's %d (fabric: %d)", h.ID, got, want, inode(t, h.Fabric()))
				}
				if !netfab.IsNetns(h.Fabric()) || !strings.HasPrefix(h.FabricNetns, lab.Prefix) {
					t.Errorf("%s: fabric %s: not a namespace with the lab's prefix", h.ID, h.Fabric())
				}
				pids = append(pids, h.PID())
			}
		})

		t.Run("underlay", func(t *testing.T) {
			a, b := lab.Hosts[0], lab.Hosts[1]
			for _, addr := range []string{b.Underlay, lab.Hosts[2].Underlay, mhtest.UnderlayBridgeAddr} {
				if !ktest.Ping(t, a.Netns, addr) {
					t.Errorf("%s does not reach %s", a.ID, addr)
				}
			}
			n, err := lab.EtcdKVRequests()
			if err != nil {
				t.Fatalf("etcd metrics: %v", err)
			}
			t.Logf("etcd KV requests so far: %d", n)

			b.Partition()
			if ktest.Ping(t, a.Netns, b.Underlay) {
				t.Errorf("%s reaches %s after Partition", a.ID, b.ID)
			}
			if ktest.Ping(t, b.Netns, mhtest.UnderlayBridgeAddr) {
				t.Errorf("%s reaches etcd's address after Partition", b.ID)
			}
			b.Heal()
			if !ktest.Ping(t, a.Netns, b.Underlay) {
				t.Errorf("%s does not reach %s after Heal", a.ID, b.ID)
			}
		})

		t.Run("restart", func(t *testing.T) {
			b, c := lab.Hosts[1], lab.Hosts[2]
			old := b.PID()
			b.Kill()
			if b.Running() || alive(old) {
				t.Fatalf("%s: PID %d still runs after Kill", b.ID, old)
			}
			if _, _, err := b.Request("GET", "/v2/version", nil); err == nil {
				t.Errorf("%s answers after Kill", b.ID)
			}
			b.Start() // replaces the stale socket
			pids = append(pids, b.PID())

			c.Stop()
			if _, err := os.Stat(c.Socket); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s: socket left after Stop: %v", c.ID, err)
			}
			c.Start()
			pids = append(pids, c.PID())
			for _, h := range []*mhtest.Host{b, c} {
				if s, _ := h.Do("GET", "/v2/version", nil); s != 200 {
					t.Errorf("%s after restart: GET /v2/version: %d", h.ID, s)
				}
			}
			// The log holds every run.
			logb, _ := os.ReadFile(b.LogPath)
			if n := strings.Count(string(logb), "=== "); n != 2 {
				t.Errorf("%s: %d runs in its log, want 2", b.ID, n)
			}
		})

		t.Run("args", func(t *testing.T) {
			h := lab.Hosts[0]
			want := []string{"--host-id", "hA", "--fabric-netns", lab.Prefix + "fA", "--netns-prefix", lab.Prefix + "A-"}
			if got := h.Args()[:len(want)]; strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("args %q, want them to start with %q", got, want)
			}
			if got, want := h.MemberNetns("a1"), "/run/netns/"+lab.Prefix+"A-a1"; got != want {
				t.Errorf("MemberNetns: %q, want %q", got, want)
			}
			b, _ := json.Marshal(h.Args())
			if strings.Contains(string(b), "--store") {
				t.Errorf("BoltStore: the daemon got a --store: %s", b)
			}
		})
	})

	// The lab's test has ended: its processes and namespaces are gone.
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("PID %d still runs after the lab's test", pid)
		}
	}
	ents, _ := os.ReadDir(netfab.NetnsDir)
	for _, e := range ents {
		if prefix != "" && strings.HasPrefix(e.Name(), prefix) {
			t.Errorf("namespace %s left after the lab's test", e.Name())
		}
	}
}

func alive(pid int) bool {
	return pid > 0 && syscall.Kill(pid, 0) == nil
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// netnsOf is the namespaces of pid's threads, by inode. Not only the
// first thread's: that one may be parked in another namespace for good
// (a Go program's main thread is never ended, even when a goroutine
// locked to it in another namespace ends).
func netnsOf(t *testing.T, pid int) []uint64 {
	t.Helper()
	tasks, err := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "ns", "net"))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of PID %d: %v", pid, err)
	}
	var out []uint64
	for _, p := range tasks {
		if ino := inode(t, p); !slices.Contains(out, ino) {
			out = append(out, ino)
		}
	}
	return out
}
