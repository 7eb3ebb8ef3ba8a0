package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/internal/ktest"
	"github.com/leviathan-net/leviathan/monitor"
	"github.com/leviathan-net/leviathan/netfab"
	"github.com/leviathan-net/leviathan/vm"
)

// gns3Env is an env whose server also serves the GNS3-style API, with a
// real VM manager running the real vpcs.
type gns3Env struct {
	*env
	mgr          *vm.Manager
	ports        *vm.Ports
	udp, console vm.Range
	binary       string // vpcs unless a test wants it missing
}

func newGNS3Env(t *testing.T, binary string) *gns3Env {
	t.Helper()
	ktest.NeedRoot(t)
	if binary == "" {
		if _, err := exec.LookPath("vpcs"); err != nil {
			t.Skip("vpcs not installed (scripts/deps.sh installs it)")
		}
	}
	e := &gns3Env{env: &env{t: t, prefix: ktest.Prefix(t), dir: t.TempDir()}, binary: binary}
	e.storeKey = storePrefix(t, e.prefix)
	// Ranges of their own per test, so that tests running at the same
	// time on this machine do not race for the same first ports.
	lo := 20000 + 500*rand.IntN(20)
	e.udp, e.console = vm.Range{Lo: lo, Hi: lo + 499}, vm.Range{Lo: lo - 14000, Hi: lo - 14000 + 499}
	e.start()
	t.Cleanup(func() {
		e.stop()
		netfab.DeleteNetns(netfab.NetnsPath(e.prefix + "fabric"))
	})
	return e
}

func (e *gns3Env) start() {
	t := e.t
	t.Helper()
	var err error
	e.store, e.stale = openStore(t, e.dir, e.storeKey)
	fabName := e.prefix + "fabric"
	if e.fab, err = netfab.OpenFabric(context.Background(), fabName); err != nil {
		t.Fatal(err)
	}
	// Ports are held in memory only: a restart starts from a fresh
	// allocator, as a new daemon does. The VMs come first, as in the
	// daemon: they are a runtime of core's, whose reconcile wires them.
	ports, err := vm.NewPorts(e.udp, e.console)
	if err != nil {
		t.Fatal(err)
	}
	bus := monitor.NewBus()
	e.mgr, err = vm.OpenManager(context.Background(), vm.ManagerConfig{
		Store: e.store, Bus: bus, Ports: ports,
		Dir: e.dir + "/projects", HostID: "host1", Binary: e.binary,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.svc, err = core.New(core.Options{
		HostID:   "host1",
		Store:    e.store,
		Fabric:   e.fab,
		Bus:      bus,
		Runtimes: []core.Runtime{e.mgr.Runtime(), e.mgr.SwitchRuntime(), &core.NetnsRuntime{Prefix: e.prefix, Fabric: fabName, NS: e.fab}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.mgr.UseCENs(e.svc)
	e.ports = ports
	e.opts.VMs = e.mgr
	if e.stale != nil {
		e.opts.Stale = e.stale
	}
	e.srv = httptest.NewServer(New(context.Background(), e.svc, e.opts))
}

// stop ends the server and the VM manager (its vpcs processes stop, its
// records stay), as a daemon that shuts down does.
func (e *gns3Env) stop() {
	if e.srv == nil {
		return
	}
	e.srv.Close()
	e.mgr.Close()
	e.fab.Close()
	e.store.Close()
	e.srv = nil
}

func (e *gns3Env) restart() {
	e.stop()
	e.start()
}

// in returns the env for a subtest.
func (e *gns3Env) in(t *testing.T) *gns3Env {
	c := *e
	c.env = e.env.in(t)
	return &c
}

// vmRecord reads a VM's record from the store.
func (e *gns3Env) vmRecord(id string) *graph.VM {
	e.t.Helper()
	var v *graph.VM
	if err := e.store.View(func(tx graph.Tx) (err error) {
		v, err = graph.GetVM(tx, id)
		return err
	}); err != nil {
		e.t.Fatal(err)
	}
	return v
}

// running reports whether process pid exists and is no zombie.
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// "pid (comm) S ...": the state follows the last ')'.
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// waitGone waits for a process to be gone.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); running(pid); {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still runs", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// console is a telnet-style client of a VM's console over real TCP.
type console struct {
	t      *testing.T
	c      net.Conn
	out    bytes.Buffer // everything read, telnet commands and CRs removed
	prompt string       // "VPCS> ", or the pcname's
}

func dialConsole(t *testing.T, port int) *console {
	t.Helper()
	return dialConsolePrompt(t, port, "VPCS> ")
}

// dialConsolePrompt dials a console whose prompt is not VPCS's own (a
// startup script set pcname).
func dialConsolePrompt(t *testing.T, port int, prompt string) *console {
	t.Helper()
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	k := &console{t: t, c: c, prompt: prompt}
	k.waitFor(0, prompt)
	return k
}

// waitFor reads until what was read after offset from contains want,
// and returns that part.
func (k *console) waitFor(from int, want string) string {
	k.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	buf := make([]byte, 4096)
	for !strings.Contains(k.out.String()[from:], want) {
		k.c.SetReadDeadline(deadline)
		n, err := k.c.Read(buf)
		k.out.Write(stripTelnet(buf[:n]))
		if err != nil {
			k.t.Fatalf("console: waiting for %q: %v; got %q", want, err, k.out.String()[from:])
		}
	}
	return k.out.String()[from:]
}

// stripTelnet drops telnet commands (IAC and the two bytes after it,
// which is all the console sends) and CRs.
func stripTelnet(b []byte) []byte {
	var out []byte
	for i := 0; i < len(b); i++ {
		switch {
		case b[i] == 0xff:
			i += 2
		case b[i] != '\r':
			out = append(out, b[i])
		}
	}
	return out
}

// run types a command and returns its output, up to the next prompt.
func (k *console) run(cmd string) string {
	k.t.Helper()
	from := k.out.Len()
	if _, err := k.c.Write([]byte(cmd + "\r\n")); err != nil {
		k.t.Fatal(err)
	}
	out := k.waitFor(from, cmd+"\n")
	start := strings.Index(out, cmd+"\n") + len(cmd) + 1
	out = k.waitFor(from+start, k.prompt)
	return strings.TrimSuffix(out, k.prompt)
}

var pingTime = regexp.MustCompile(`icmp_seq=\d+ ttl=\d+ time=([0-9.]+) ms`)

// ping pings addr count times and returns the round trip of each reply.
func (k *console) ping(addr string, count int) []time.Duration {
	k.t.Helper()
	var rtts []time.Duration
	for _, m := range pingTime.FindAllStringSubmatch(k.run(fmt.Sprintf("ping %s -c %d", addr, count)), -1) {
		ms, _ := strconv.ParseFloat(m[1], 64)
		rtts = append(rtts, time.Duration(ms*float64(time.Millisecond)))
	}
	return rtts
}

// vmBody is what the tests read of a VM.
type vmBody struct {
	ID        string `json:"vm_id"`
	Name      string `json:"name"`
	ProjectID string `json:"project_id"`
	Console   int    `json:"console"`
	Status    string `json:"status"`
}

// kill sends SIGKILL to a process of the test's own making.
func kill(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
}

// decode unmarshals a JSON string or fails the test.
func decode(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
}
