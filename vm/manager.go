package vm

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/monitor"
	"github.com/leviathan-net/leviathan/netfab"
)

// VMTypeVPCS is the one type of VM served.
const VMTypeVPCS = "vpcs"

// globalOwner holds the UDP ports handed out by POST /v1/ports/udp,
// which names no project; a NIO that uses one moves it to its project.
const globalOwner = "-"

// ManagerConfig says where a Manager keeps its VMs and what it uses.
type ManagerConfig struct {
	Store graph.Store
	Bus   *monitor.Bus
	Ports *Ports
	// Dir holds a directory per project, and in it one per VM.
	Dir    string
	HostID string
	// Binary is the vpcs executable; "" means vpcs on PATH.
	Binary string
	Log    *slog.Logger
}

// Manager runs GNS3-style projects and their VPCS VMs: it persists them
// in the store, owns their vpcs processes, consoles and relays, and
// announces their changes on the bus. Requests on one VM are
// serialized; requests on different VMs run concurrently.
type Manager struct {
	cfg ManagerConfig
	log *slog.Logger

	mu       sync.Mutex
	closed   bool                // guarded by mu
	projects map[string]*project // guarded by mu
	nodes    map[string]*node    // by VM ID; guarded by mu
	udpUse   map[int]string      // UDP port → the VM that binds it (vpcs, relay or NIO); guarded by mu
	macs     map[int]string      // MAC byte → VM ID; guarded by mu
	captures map[string]*capture // by node/adapter/port; guarded by mu
	// switches are the GNS3 switches and hubs (switch.go), by node ID;
	// swLinks their ports with a NIO, by member ID. Guarded by mu.
	switches map[string]*swNode
	swLinks  map[string]*swLink
	// cens is core, for switches' CENs (set by UseCENs); guarded by mu.
	cens CENs
	wg   sync.WaitGroup // exit handlers under way
}

// project serializes the changes of a project's membership: creating
// VMs, handing out ports, deleting it.
type project struct {
	id   string
	lock chan struct{}
	gone bool // guarded by lock
}

// node is one VM. Everything but view is guarded by lock, which every
// request on the VM holds for its whole length.
type node struct {
	id, project string // immutable

	lock    chan struct{}
	rec     graph.VM
	dir     string
	relay   *netfab.Relay // side A: the VM's tunnel; side B: the NIO's
	vpcs    *VPCS         // nil when not running
	console net.Listener  // served while vpcs runs
	gone    bool
	// tap is side B of relay while the VM is a CEN member (instead of a
	// NIO); port is the VM's side of that, as netfab knows it.
	tap  *netfab.TAP
	port *tapPort
	view atomic.Pointer[VMView] // what GET shows, updated under lock
}

// lock takes a channel lock, or gives up with ctx.
func lock(ctx context.Context, l chan struct{}) error {
	select {
	case l <- struct{}{}:
		return nil
	case <-ctx.Done():
		return graph.Errorf(graph.ErrUnavailable, "busy: %w", ctx.Err())
	}
}

func unlock(l chan struct{}) { <-l }

// OpenManager loads the projects and VMs in the store, ends any vpcs a
// previous run left running, holds again the ports they hold, and starts
// the VMs that were started. ctx bounds those starts.
func OpenManager(ctx context.Context, cfg ManagerConfig) (*Manager, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Binary == "" {
		cfg.Binary = "vpcs"
	}
	if cfg.Store == nil || cfg.Ports == nil || cfg.Bus == nil || cfg.Dir == "" {
		return nil, errors.New("vm manager: store, ports, bus and dir are required")
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("vm manager: %w", err)
	}
	m := &Manager{
		cfg: cfg, log: cfg.Log,
		projects: map[string]*project{},
		nodes:    map[string]*node{},
		udpUse:   map[int]string{},
		macs:     map[int]string{},
	}
	var projects []*graph.Project
	var vms []*graph.VM
	err := cfg.Store.View(func(tx graph.Tx) (err error) {
		if projects, err = graph.ListProjects(tx); err != nil {
			return err
		}
		vms, err = graph.ListVMs(tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("vm manager: load: %w", err)
	}
	for _, p := range projects {
		m.projects[p.ID] = &project{id: p.ID, lock: make(chan struct{}, 1)}
		for _, port := range p.UDPPorts {
			m.reserve(p.ID, Port{UDP, port})
		}
	}
	var start []*node
	for _, rec := range vms {
		if rec.Host != "" && rec.Host != cfg.HostID {
			continue // another host's, sharing the store: it runs there
		}
		if rec.PID != 0 {
			m.endLeftover(rec)
		}
		if m.projects[rec.Project] == nil {
			m.log.Warn("VM of no project: dropped", "vm", rec.ID, "project", rec.Project)
			continue
		}
		n := m.restore(rec)
		if rec.Status == graph.VMStarted {
			start = append(start, n)
		}
	}
	var wg sync.WaitGroup
	for _, n := range start {
		wg.Go(func() {
			unlock := m.mustLock(n)
			defer unlock()
			if err := m.startLocked(ctx, n); err != nil {
				m.failed(n, fmt.Sprintf("VPCS %q (%s) was started before the restart and does not start again: %v", n.rec.Name, n.rec.ID, err))
				return
			}
			m.publish(monitor.ActionVMStarted, n)
		})
	}
	wg.Wait()
	return m, nil
}

// restore rebuilds a VM's node from its record: ports held again, its
// relay and NIO bound. What cannot be bound is logged and left unbound.
func (m *Manager) restore(rec *graph.VM) *node {
	n := &node{id: rec.ID, project: rec.Project, lock: make(chan struct{}, 1), rec: *rec, dir: m.vmDir(rec.Project, rec.ID)}
	n.rec.PID, n.rec.Argv = 0, nil
	m.reserve(rec.Project, Port{TCP, rec.Console})
	for _, p := range []int{rec.LocalPort, rec.LocalPort + RelayOffset, rec.RelayPort} {
		m.reserve(rec.Project, Port{UDP, p})
		m.udpUse[p] = rec.ID
	}
	m.macs[rec.MAC] = rec.ID
	tun, err := m.vmTunnel(&n.rec)
	if err != nil {
		m.log.Error("VM tunnel", "vm", rec.ID, "err", err)
	}
	n.relay = netfab.NewRelay(nilIfNone(tun), nil)
	for _, nio := range rec.NIOs {
		m.reserve(rec.Project, Port{UDP, nio.LPort})
		m.udpUse[nio.LPort] = rec.ID
		if err := m.plugNIO(n, nio); err != nil {
			m.log.Error("VM NIO", "vm", rec.ID, "lport", nio.LPort, "err", err)
		}
	}
	m.nodes[rec.ID] = n
	n.updateView()
	return n
}

// nilIfNone keeps a nil *UDPTunnel from becoming a non-nil Endpoint.
func nilIfNone(t *netfab.UDPTunnel) netfab.Endpoint {
	if t == nil {
		return nil
	}
	return t
}

func (m *Manager) reserve(owner string, p Port) {
	if err := m.cfg.Ports.Reserve(owner, p); err != nil && !errors.Is(err, ErrHeld) {
		m.log.Warn("port not held again", "port", p.String(), "err", err)
	}
}

// endLeftover kills the vpcs a previous run recorded for rec if it still
// runs: only a process whose argv and working directory are exactly
// those leviathan started it with.
func (m *Manager) endLeftover(rec *graph.VM) {
	pid := rec.PID
	if !isOurVPCS(pid, rec.Argv, m.vmDir(rec.Project, rec.ID)) {
		return
	}
	m.log.Warn("ending a vpcs left by a previous run", "vm", rec.ID, "pid", pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		m.log.Error("end leftover vpcs", "pid", pid, "err", err)
		return
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if !isOurVPCS(pid, rec.Argv, m.vmDir(rec.Project, rec.ID)) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	m.log.Error("leftover vpcs does not go", "pid", pid)
}

// isOurVPCS reports whether process pid runs argv in dir (and is not a
// zombie).
func isOurVPCS(pid int, argv []string, dir string) bool {
	if pid <= 1 || len(argv) == 0 {
		return false
	}
	proc := "/proc/" + strconv.Itoa(pid)
	b, err := os.ReadFile(proc + "/cmdline")
	if err != nil || len(b) == 0 {
		return false // gone, or a zombie
	}
	got := bytes.Split(bytes.TrimSuffix(b, []byte{0}), []byte{0})
	if len(got) != len(argv) {
		return false
	}
	for i, a := range got {
		if string(a) != argv[i] {
			return false
		}
	}
	cwd, err := os.Readlink(proc + "/cwd")
	return err == nil && cwd == dir
}

// Close stops every vpcs and relay, leaving the store as it is, so that
// the next OpenManager starts the same VMs again.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	nodes := make([]*node, 0, len(m.nodes))
	for _, n := range m.nodes {
		nodes = append(nodes, n)
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() {
			unlock := m.mustLock(n)
			defer unlock()
			if n.vpcs != nil {
				if err := n.vpcs.Stop(); err != nil {
					m.log.Error("stop vpcs", "vm", n.rec.ID, "err", err)
				}
				n.console.Close()
				n.vpcs = nil
			}
			n.relay.Close()
			n.gone = true
		})
	}
	wg.Wait()
	m.closeSwitches()
	m.wg.Wait()
}

// mustLock takes a node's lock with no deadline.
func (m *Manager) mustLock(n *node) func() {
	n.lock <- struct{}{}
	return func() { unlock(n.lock) }
}

func (m *Manager) projectDir(pid string) string { return filepath.Join(m.cfg.Dir, pid) }

func (m *Manager) vmDir(pid, vmID string) string {
	return filepath.Join(m.projectDir(pid), "project-files", "vpcs", vmID)
}

// checkBinary says, as ErrUnavailable, when vpcs cannot be run.
func (m *Manager) checkBinary() (string, error) {
	bin, err := exec.LookPath(m.cfg.Binary)
	if err != nil {
		return "", graph.Errorf(graph.ErrUnavailable, "vpcs is not installed: %q not found (Debian: apt install vpcs): %w", m.cfg.Binary, err)
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return "", graph.Errorf(graph.ErrUnavailable, "vpcs: %w", err)
	}
	return bin, nil
}

// publish announces a VM's change.
// A start or stop is also a GNS3 2.2 node.updated, for a controller;
// n.lock is held.
func (m *Manager) publish(a monitor.Action, n *node) {
	evs := []monitor.Event{{Action: a, Data: n.event()}}
	if a == monitor.ActionVMStarted || a == monitor.ActionVMStopped {
		evs = append(evs, monitor.Event{Action: monitor.ActionNodeUpdated, Data: n.nodeEvent()})
	}
	m.cfg.Bus.Publish(evs...)
}

func (m *Manager) publishLog(a monitor.Action, msg string) {
	m.cfg.Bus.Publish(monitor.Event{Action: a, Data: monitor.LogEvent{Message: msg}})
}

func (n *node) event() monitor.VMEvent {
	return monitor.VMEvent{
		VMID: n.rec.ID, Name: n.rec.Name, ProjectID: n.rec.Project,
		VMType: n.rec.Type, Status: n.status(), Console: n.rec.Console,
	}
}

// status is whether vpcs runs now.
func (n *node) status() string {
	if n.vpcs != nil {
		return graph.VMStarted
	}
	return graph.VMStopped
}

// save writes the node's record and refreshes its view; n.lock is held.
func (m *Manager) save(n *node) error {
	n.updateView()
	rec := n.rec
	if err := m.cfg.Store.Update(func(tx graph.Tx) error { return graph.PutVM(tx, &rec) }); err != nil {
		return fmt.Errorf("save VM %s: %w", rec.ID, err)
	}
	return nil
}

// failed records that a VM stopped against the user's wish, and says so
// on the bus with log.error then vm.stopped; n.lock is held.
func (m *Manager) failed(n *node, msg string) {
	m.log.Error(msg)
	n.rec.Status, n.rec.PID, n.rec.Argv, n.rec.Error = graph.VMStopped, 0, nil, msg
	if err := m.save(n); err != nil {
		m.log.Error("save", "err", err)
	}
	m.publishLog(monitor.ActionLogError, msg)
	m.publish(monitor.ActionVMStopped, n)
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// checkUUID refuses an ID that is not a UUID, as GNS3 does.
func checkUUID(kind, id string) error {
	if !uuidRE.MatchString(id) {
		return graph.Errorf(graph.ErrInvalid, "%s %q: want a UUID", kind, id)
	}
	return nil
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// freeMAC picks the lowest MAC byte no VM has; m.mu is held. Past 256
// VMs they repeat.
func (m *Manager) freeMAC() int {
	for i := range 256 {
		if _, ok := m.macs[i]; !ok {
			return i
		}
	}
	return len(m.nodes) % 256
}

// sortedNodes returns the nodes matching keep, ordered by ID.
func (m *Manager) sortedNodes(keep func(*node) bool) []*node {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*node
	for _, n := range m.nodes {
		if keep(n) {
			out = append(out, n)
		}
	}
	slices.SortFunc(out, func(a, b *node) int { return strings.Compare(a.id, b.id) })
	return out
}

// VMsByStatus counts the VMs by status ("started", "stopped"), for
// metrics.
func (m *Manager) VMsByStatus() map[string]int {
	out := map[string]int{graph.VMStarted: 0, graph.VMStopped: 0}
	for _, n := range m.sortedNodes(func(*node) bool { return true }) {
		if v := n.view.Load(); v != nil {
			out[v.Status]++
		}
	}
	return out
}
