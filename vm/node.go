package vm

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/monitor"
	"github.com/leviathan-net/leviathan/netfab"
)

// VMSpec is the body of POST .../vpcs/vms and POST /v2/projects/{pid}/vms.
type VMSpec struct {
	ID   string `json:"vm_id"`
	Name string `json:"name"`
	// Type is "vpcs" ("" means vpcs too; the v2 route requires it).
	Type string `json:"vm_type"`
	// Console asks for a console port; 0 takes one from --console-ports.
	Console int `json:"console"`
	// StartupScript becomes the VM's startup.vpc, run when vpcs starts.
	StartupScript *string `json:"startup_script"`
}

// VMView is a VM as the GNS3-style API shows it.
type VMView struct {
	ID          string     `json:"vm_id"`
	Name        string     `json:"name"`
	ProjectID   string     `json:"project_id"`
	VMType      string     `json:"vm_type"`
	Status      string     `json:"status"`
	Console     int        `json:"console"`
	ConsoleHost string     `json:"console_host"`
	ConsoleType string     `json:"console_type"`
	MACAddress  string     `json:"mac_address"`
	Ports       []PortView `json:"ports"`
	Error       string     `json:"error,omitempty"`
}

// PortView is a port of a VM's adapter and what it is connected to.
type PortView struct {
	Adapter  int      `json:"adapter_number"`
	Port     int      `json:"port_number"`
	Name     string   `json:"name"`
	LinkType string   `json:"link_type"`
	NIO      *NIOView `json:"nio"`
}

func (n *node) updateView() {
	r := &n.rec
	port := PortView{Name: "Ethernet0", LinkType: "ethernet"}
	for _, nio := range r.NIOs {
		if nio.Adapter == 0 && nio.Port == 0 {
			v := nioView(nio)
			port.NIO = &v
		}
	}
	n.view.Store(&VMView{
		ID: r.ID, Name: r.Name, ProjectID: r.Project, VMType: r.Type,
		Status: n.status(), Console: r.Console, ConsoleHost: "127.0.0.1", ConsoleType: "telnet",
		MACAddress: fmt.Sprintf("00:50:79:66:68:%02x", r.MAC),
		Ports:      []PortView{port},
		Error:      r.Error,
	})
}

// CreateVM creates a stopped VPCS VM in a project and announces it with
// vm.created.
func (m *Manager) CreateVM(ctx context.Context, pid string, spec VMSpec) (VMView, error) {
	if spec.Type != "" && spec.Type != VMTypeVPCS {
		return VMView{}, graph.Errorf(graph.ErrInvalid, "vm_type %q is not served: only %q", spec.Type, VMTypeVPCS)
	}
	if strings.TrimSpace(spec.Name) == "" {
		return VMView{}, graph.Errorf(graph.ErrInvalid, "name is required")
	}
	if spec.ID == "" {
		spec.ID = newUUID()
	} else if err := checkUUID("vm_id", spec.ID); err != nil {
		return VMView{}, err
	}
	if spec.Console != 0 && (spec.Console < 1024 || spec.Console > 65535) {
		return VMView{}, graph.Errorf(graph.ErrInvalid, "console %d: want a TCP port from 1024 to 65535", spec.Console)
	}
	if spec.StartupScript != nil {
		for i, l := range strings.Split(*spec.StartupScript, "\n") {
			if err := allowedLine(strings.TrimSuffix(l, "\r")); err != nil {
				return VMView{}, graph.Errorf(graph.ErrInvalid, "startup_script line %d: %w", i+1, err)
			}
		}
	}
	if _, err := m.checkBinary(); err != nil {
		return VMView{}, err
	}
	p, err := m.lockProject(ctx, pid)
	if err != nil {
		return VMView{}, err
	}
	defer unlock(p.lock)

	n := &node{id: spec.ID, project: pid, lock: make(chan struct{}, 1), dir: m.vmDir(pid, spec.ID)}
	n.rec = graph.VM{ID: spec.ID, Project: pid, Host: m.cfg.HostID, Name: spec.Name, Type: VMTypeVPCS, Status: graph.VMStopped}
	m.mu.Lock()
	if _, ok := m.nodes[spec.ID]; ok {
		m.mu.Unlock()
		return VMView{}, graph.Errorf(graph.ErrConflict, "VM %q exists", spec.ID)
	}
	n.rec.MAC = m.freeMAC()
	m.macs[n.rec.MAC] = spec.ID
	m.nodes[spec.ID] = n
	n.lock <- struct{}{} // before anyone else can reach n
	m.mu.Unlock()
	defer unlock(n.lock)
	// Each step registers its undo; on a failure they run in reverse,
	// before the lock goes.
	var undo []func()
	defer func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}()
	undo = append(undo, func() {
		n.gone = true
		m.mu.Lock()
		delete(m.nodes, spec.ID)
		delete(m.macs, n.rec.MAC)
		m.mu.Unlock()
	})

	if spec.Console != 0 {
		if err := m.cfg.Ports.Reserve(pid, Port{TCP, spec.Console}); err != nil {
			return VMView{}, graph.Errorf(graph.ErrConflict, "console: %w", err)
		}
		if !testBind(Port{TCP, spec.Console}, netip.Addr{}) {
			m.cfg.Ports.Free(Port{TCP, spec.Console})
			return VMView{}, graph.Errorf(graph.ErrConflict, "console port %d is in use", spec.Console)
		}
		n.rec.Console = spec.Console
	} else if n.rec.Console, err = m.cfg.Ports.AllocConsole(pid); err != nil {
		return VMView{}, graph.Errorf(graph.ErrConflict, "console: %w", err)
	}
	undo = append(undo, func() { m.cfg.Ports.Free(Port{TCP, n.rec.Console}) })
	if n.rec.LocalPort, err = m.cfg.Ports.AllocVPCS(pid); err != nil {
		return VMView{}, graph.Errorf(graph.ErrConflict, "vpcs port: %w", err)
	}
	undo = append(undo, func() {
		m.cfg.Ports.Free(Port{UDP, n.rec.LocalPort})
		m.cfg.Ports.Free(Port{UDP, n.rec.LocalPort + RelayOffset})
	})
	if n.rec.RelayPort, err = m.allocUDP(pid); err != nil {
		return VMView{}, err
	}
	undo = append(undo, func() { m.cfg.Ports.Free(Port{UDP, n.rec.RelayPort}) })
	m.mu.Lock()
	for _, port := range []int{n.rec.LocalPort, n.rec.LocalPort + RelayOffset, n.rec.RelayPort} {
		m.udpUse[port] = spec.ID
	}
	m.mu.Unlock()
	undo = append(undo, func() {
		m.mu.Lock()
		for _, port := range []int{n.rec.LocalPort, n.rec.LocalPort + RelayOffset, n.rec.RelayPort} {
			delete(m.udpUse, port)
		}
		m.mu.Unlock()
	})

	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return VMView{}, fmt.Errorf("VM directory: %w", err)
	}
	undo = append(undo, func() { os.RemoveAll(n.dir) })
	if spec.StartupScript != nil {
		if err := os.WriteFile(filepath.Join(n.dir, "startup.vpc"), []byte(*spec.StartupScript), 0o644); err != nil {
			return VMView{}, fmt.Errorf("startup script: %w", err)
		}
	}
	tun, err := m.vmTunnel(&n.rec)
	if err != nil {
		return VMView{}, graph.Errorf(graph.ErrConflict, "%w", err)
	}
	n.relay = netfab.NewRelay(tun, nil)
	undo = append(undo, func() { n.relay.Close() })
	if err := m.save(n); err != nil {
		return VMView{}, err
	}
	undo = nil
	m.publish(monitor.ActionVMCreated, n)
	return *n.view.Load(), nil
}

// vmTunnel binds leviathan's end of the VM's own tunnel: on 127.0.0.1,
// sending to the port vpcs binds.
func (m *Manager) vmTunnel(r *graph.VM) (*netfab.UDPTunnel, error) {
	return netfab.ListenUDPTunnel(
		net.JoinHostPort("127.0.0.1", strconv.Itoa(r.RelayPort)),
		net.JoinHostPort("127.0.0.1", strconv.Itoa(r.LocalPort)))
}

// lockVM takes the lock of VM vmID of project pid.
func (m *Manager) lockVM(ctx context.Context, pid, vmID string) (*node, error) {
	m.mu.Lock()
	n, closed := m.nodes[vmID], m.closed
	m.mu.Unlock()
	if closed {
		return nil, errClosed
	}
	if n == nil || n.project != pid {
		return nil, graph.Errorf(graph.ErrNotFound, "VM %q not found in project %q", vmID, pid)
	}
	if err := lock(ctx, n.lock); err != nil {
		return nil, err
	}
	if n.gone {
		unlock(n.lock)
		return nil, graph.Errorf(graph.ErrNotFound, "VM %q not found in project %q", vmID, pid)
	}
	return n, nil
}

// ListVMs returns the VMs of a project, ordered by ID.
func (m *Manager) ListVMs(ctx context.Context, pid string) ([]VMView, error) {
	m.mu.Lock()
	_, ok := m.projects[pid]
	m.mu.Unlock()
	if !ok {
		return nil, graph.Errorf(graph.ErrNotFound, "project %q not found", pid)
	}
	out := []VMView{}
	for _, n := range m.sortedNodes(func(n *node) bool { return n.project == pid }) {
		if v := n.view.Load(); v != nil {
			out = append(out, *v)
		}
	}
	return out, nil
}

// GetVM returns one VM as it is now: it does not wait for a request on
// the VM to end.
func (m *Manager) GetVM(ctx context.Context, pid, vmID string) (VMView, error) {
	m.mu.Lock()
	n := m.nodes[vmID]
	m.mu.Unlock()
	if n == nil || n.project != pid || n.view.Load() == nil {
		return VMView{}, graph.Errorf(graph.ErrNotFound, "VM %q not found in project %q", vmID, pid)
	}
	return *n.view.Load(), nil
}

// StartVM runs the VM's vpcs and serves its console; starting a running
// VM does nothing.
func (m *Manager) StartVM(ctx context.Context, pid, vmID string) error {
	n, err := m.lockVM(ctx, pid, vmID)
	if err != nil {
		return err
	}
	defer unlock(n.lock)
	if n.vpcs != nil {
		return nil
	}
	if err := m.startLocked(ctx, n); err != nil {
		return err
	}
	m.publish(monitor.ActionVMStarted, n)
	return nil
}

// StopVM ends the VM's vpcs; stopping a stopped VM does nothing.
func (m *Manager) StopVM(ctx context.Context, pid, vmID string) error {
	n, err := m.lockVM(ctx, pid, vmID)
	if err != nil {
		return err
	}
	defer unlock(n.lock)
	if n.vpcs == nil {
		return nil
	}
	return m.stopLocked(n)
}

// ReloadVM stops the VM if it runs, and starts it.
func (m *Manager) ReloadVM(ctx context.Context, pid, vmID string) error {
	n, err := m.lockVM(ctx, pid, vmID)
	if err != nil {
		return err
	}
	defer unlock(n.lock)
	if n.vpcs != nil {
		if err := m.stopLocked(n); err != nil {
			return err
		}
	}
	if err := m.startLocked(ctx, n); err != nil {
		return err
	}
	m.publish(monitor.ActionVMStarted, n)
	return nil
}

// DeleteVM stops the VM, lets go of its ports and removes it and its
// directory, announced with vm.deleted.
func (m *Manager) DeleteVM(ctx context.Context, pid, vmID string) error {
	n, err := m.lockVM(ctx, pid, vmID)
	if err != nil {
		return err
	}
	defer unlock(n.lock)
	return m.deleteLocked(n, false)
}

// startLocked runs vpcs with its console; n.lock is held.
func (m *Manager) startLocked(ctx context.Context, n *node) error {
	bin, err := m.checkBinary()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(n.rec.Console)))
	if err != nil {
		return graph.Errorf(graph.ErrConflict, "VPCS %q console: %w", n.rec.Name, err)
	}
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		ln.Close()
		return fmt.Errorf("VM directory: %w", err)
	}
	var v *VPCS
	v, err = New(Config{
		Binary: bin, Dir: n.dir,
		LocalPort: n.rec.LocalPort, RemotePort: n.rec.RelayPort,
		MAC:    uint8(n.rec.MAC),
		OnExit: func(e Exit) { m.exited(n, v, e) },
		Log:    m.log.With("vm", n.rec.ID),
	})
	if err != nil {
		ln.Close()
		return graph.Errorf(graph.ErrConflict, "VPCS %q: %w", n.rec.Name, err)
	}
	if err := v.Start(ctx); err != nil {
		ln.Close()
		return graph.Errorf(graph.ErrConflict, "VPCS %q: %w", n.rec.Name, err)
	}
	go func() {
		if err := v.ServeConsole(ln); err != nil {
			m.log.Debug("console ended", "vm", n.rec.ID, "err", err)
		}
	}()
	n.vpcs, n.console = v, ln
	n.rec.Status, n.rec.Error = graph.VMStarted, ""
	n.rec.PID, n.rec.Argv = v.PID(), append([]string{bin}, v.args()...)
	if n.rec.Address != "" {
		m.applyAddress(n) // a CIN's address, lost with the last vpcs
	}
	return m.save(n)
}

// stopLocked ends vpcs and announces vm.stopped; n.lock is held.
func (m *Manager) stopLocked(n *node) error {
	v := n.vpcs
	n.vpcs = nil
	err := v.Stop()
	n.console.Close()
	n.rec.Status, n.rec.PID, n.rec.Argv = graph.VMStopped, 0, nil
	if err != nil {
		n.rec.Error = err.Error()
	}
	if serr := m.save(n); err == nil {
		err = serr
	}
	m.publish(monitor.ActionVMStopped, n)
	return err
}

// deleteLocked removes the VM, and its directory unless keepDir; n.lock
// is held.
func (m *Manager) deleteLocked(n *node, keepDir bool) error {
	if n.vpcs != nil {
		if err := m.stopLocked(n); err != nil {
			m.log.Warn("stop VM being deleted", "vm", n.rec.ID, "err", err)
		}
	}
	if err := m.cfg.Store.Update(func(tx graph.Tx) error { return graph.DeleteVM(tx, n.rec.ID) }); err != nil {
		return err
	}
	n.gone = true
	n.detachTAP()
	n.relay.Close()
	r := n.rec
	m.mu.Lock()
	delete(m.nodes, r.ID)
	delete(m.macs, r.MAC)
	m.mu.Unlock()
	for _, nio := range r.NIOs {
		m.releaseUDP(r.Project, nio.LPort)
	}
	for _, p := range []Port{{TCP, r.Console}, {UDP, r.LocalPort}, {UDP, r.LocalPort + RelayOffset}, {UDP, r.RelayPort}} {
		m.mu.Lock()
		if p.Proto == UDP {
			delete(m.udpUse, p.Num)
		}
		m.cfg.Ports.Free(p)
		m.mu.Unlock()
	}
	m.stopCapturesOf(r.ID)
	if !keepDir {
		if err := os.RemoveAll(n.dir); err != nil {
			m.log.Warn("remove VM directory", "vm", r.ID, "err", err)
		}
	}
	m.publish(monitor.ActionVMDeleted, n)
	return nil
}

// exited is told when a vpcs ends. An end nobody asked for stops the VM
// and is announced with log.error, then vm.stopped.
func (m *Manager) exited(n *node, v *VPCS, e Exit) {
	if e.Stopped {
		return
	}
	m.wg.Add(1)
	defer m.wg.Done()
	unlock := m.mustLock(n)
	defer unlock()
	if n.vpcs != v || n.gone {
		return
	}
	n.vpcs = nil
	n.console.Close()
	m.failed(n, fmt.Sprintf("VPCS %q (%s) stopped unexpectedly: %s", n.rec.Name, n.rec.ID, e))
}
