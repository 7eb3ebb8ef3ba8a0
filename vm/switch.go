package vm

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/leviathan-net/leviathan/cen"
	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/monitor"
	"github.com/leviathan-net/leviathan/netfab"
)

// A GNS3 Ethernet switch or hub is leviathan CENs: one per VLAN its
// access ports use (one for a hub), each a bridge in the fabric. A port
// given a NIO is a CEN member of its own (the switch-port runtime,
// SwitchRuntime): a TAP on the bridge, relayed to the NIO's UDP tunnel.
// Containers join the same CEN with PUT /host/{h}/{c}/{cen}.
//
// CEN IDs: the node's name when it is a valid CEN ID and no CEN has it,
// else "gns3-" and the node_id's first 8 hex digits (the whole node_id
// if that is taken too). That is the CEN of VLAN 1 (and a hub's); VLAN
// N's is the same with "-vN" appended. The IDs stay when the node is
// renamed. A port's member ID is "<node_id>.<port_number>".
//
// Switches live in memory: a controller creates them again when it
// opens the project. 802.1Q trunks (dot1q, qinq) are refused: this
// kernel has no 802.1Q.

// RuntimeSwitchPort is the runtime of switch ports as CEN members.
const RuntimeSwitchPort = "gns3-port"

// SwitchPort is one entry of a switch's or hub's ports_mapping.
type SwitchPort struct {
	Name       string `json:"name"`
	PortNumber int    `json:"port_number"`
	Type       string `json:"type,omitempty"`      // switch: access, dot1q or qinq
	VLAN       int    `json:"vlan,omitempty"`      // switch
	Ethertype  string `json:"ethertype,omitempty"` // switch: qinq only
}

// SwitchView is a switch or hub as a GNS3 2.2 compute shows it, with
// the CENs it is (by VLAN; a hub's under "0").
type SwitchView struct {
	Name         string         `json:"name"`
	NodeID       string         `json:"node_id"`
	ProjectID    string         `json:"project_id"`
	PortsMapping []SwitchPort   `json:"ports_mapping"`
	Status       string         `json:"status"`
	Console      *int           `json:"console"`
	ConsoleType  string         `json:"console_type"`
	CENs         map[int]string `json:"cens"`
}

// CENs is what switches need of core (a *core.Service).
type CENs interface {
	CreateCEN(ctx context.Context, id string) (core.CENView, bool, error)
	GetCEN(ctx context.Context, id string) (core.CENView, error)
	MakeCENs(ctx context.Context, ids []string) ([]core.Result, error)
	DeleteCEN(ctx context.Context, id string) error
	AddMember(ctx context.Context, host, id, cenID string) (core.CENView, error)
	DeleteContainer(ctx context.Context, host, id string) error
}

// UseCENs gives the manager core, which it needs for switches; without
// it creating a switch is unavailable.
func (m *Manager) UseCENs(c CENs) {
	m.mu.Lock()
	m.cens = c
	m.mu.Unlock()
}

// swNode is a switch or hub. Everything is guarded by lock, which every
// request on it holds for its whole length.
type swNode struct {
	id, project, typ string // immutable
	lock             chan struct{}
	name             string
	ports            []SwitchPort
	cens             map[int]string  // by VLAN (a hub: 0)
	links            map[int]*swLink // by port number
	gone             bool
}

// swLink is a switch port with a NIO: a CEN member through a TAP.
type swLink struct {
	m      *Manager
	sw     *swNode // its lock guards nio
	port   int
	member string
	cen    string
	nio    graph.NIO
	relay  *netfab.Relay // side A: the NIO's tunnel; side B: the TAP

	mu     sync.Mutex // guards tap, impair
	tap    *netfab.TAP
	impair *netfab.Impairment // a CEN link's settings (PUT .../link)
}

// defaultPorts is what GNS3 gives a new switch or hub: 8 ports.
func defaultPorts(typ string) []SwitchPort {
	ps := make([]SwitchPort, 8)
	for i := range ps {
		ps[i] = SwitchPort{Name: "Ethernet" + strconv.Itoa(i), PortNumber: i}
		if typ == NodeTypeEthernetSwitch {
			ps[i].Type, ps[i].VLAN = "access", 1
		}
	}
	return ps
}

// errTrunk is the answer to a dot1q or qinq port.
var errTrunk = graph.Errorf(graph.ErrConflict, "this kernel has no 802.1Q; trunks are not supported (dot1q, qinq): use access ports, one VLAN each")

// checkPorts validates a ports_mapping and returns the VLANs it uses.
func checkPorts(typ string, ps []SwitchPort) ([]int, error) {
	seen := map[int]bool{}
	var vlans []int
	for _, p := range ps {
		if p.PortNumber < 0 || seen[p.PortNumber] {
			return nil, graph.Errorf(graph.ErrInvalid, "ports_mapping: port_number %d is negative or repeated", p.PortNumber)
		}
		seen[p.PortNumber] = true
		if typ == NodeTypeEthernetHub {
			if p.Type != "" || p.VLAN != 0 {
				return nil, graph.Errorf(graph.ErrInvalid, "ports_mapping: a hub's ports have a name and a port_number only")
			}
			continue
		}
		switch p.Type {
		case "access":
		case "dot1q", "qinq":
			return nil, fmt.Errorf("port %d (%s): %w", p.PortNumber, p.Type, errTrunk)
		default:
			return nil, graph.Errorf(graph.ErrInvalid, "ports_mapping: port %d type %q: want access", p.PortNumber, p.Type)
		}
		if p.VLAN < 1 || p.VLAN > 4094 {
			return nil, graph.Errorf(graph.ErrInvalid, "ports_mapping: port %d vlan %d: want 1 to 4094", p.PortNumber, p.VLAN)
		}
		if !slices.Contains(vlans, p.VLAN) {
			vlans = append(vlans, p.VLAN)
		}
	}
	if typ == NodeTypeEthernetHub {
		vlans = []int{0}
	}
	slices.Sort(vlans)
	return vlans, nil
}

// cenIDs is the rule above for one base.
func cenIDs(base string, vlans []int) map[int]string {
	ids := map[int]string{}
	for _, v := range vlans {
		ids[v] = base
		if v > 1 {
			ids[v] = base + "-v" + strconv.Itoa(v)
		}
	}
	return ids
}

// pickCENs chooses a switch's CEN IDs and creates them, made: the first
// base whose IDs are all valid and free.
func (m *Manager) pickCENs(ctx context.Context, cs CENs, name, nodeID string, vlans []int) (map[int]string, error) {
	hex := strings.ReplaceAll(nodeID, "-", "")
	for _, base := range []string{name, "gns3-" + hex[:8], "gns3-" + nodeID} {
		ids := cenIDs(base, vlans)
		ok := true
		for _, id := range ids {
			if cen.ValidateCENID(id) != nil {
				ok = false
				break
			}
			if _, err := cs.GetCEN(ctx, id); !errors.Is(err, graph.ErrNotFound) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		var made []string
		undo := func() {
			for _, id := range made {
				cs.DeleteCEN(context.WithoutCancel(ctx), id)
			}
		}
		for _, id := range ids {
			_, created, err := cs.CreateCEN(ctx, id)
			if err != nil {
				undo()
				return nil, err
			}
			if !created { // taken meanwhile
				undo()
				return nil, graph.Errorf(graph.ErrConflict, "CEN %q was created meanwhile: try again", id)
			}
			made = append(made, id)
		}
		if _, err := cs.MakeCENs(ctx, made); err != nil {
			undo()
			return nil, err
		}
		return ids, nil
	}
	return nil, graph.Errorf(graph.ErrConflict, "switch %s: no free CEN ID (%q and gns3-%s are taken)", nodeID, name, nodeID)
}

func (m *Manager) switchByID(id string) *swNode {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.switches[id]
}

// lockSwitch takes the lock of switch id of project pid.
func (m *Manager) lockSwitch(ctx context.Context, pid, id, typ string) (*swNode, error) {
	sw := m.switchByID(id)
	if sw == nil || sw.project != pid || (typ != "" && sw.typ != typ) {
		return nil, graph.Errorf(graph.ErrNotFound, "node %q not found in project %q", id, pid)
	}
	if err := lock(ctx, sw.lock); err != nil {
		return nil, err
	}
	if sw.gone {
		unlock(sw.lock)
		return nil, graph.Errorf(graph.ErrNotFound, "node %q not found in project %q", id, pid)
	}
	return sw, nil
}

func (sw *swNode) view() SwitchView {
	return SwitchView{
		Name: sw.name, NodeID: sw.id, ProjectID: sw.project, PortsMapping: slices.Clone(sw.ports),
		Status: graph.VMStarted, ConsoleType: "none", CENs: maps.Clone(sw.cens),
	}
}

func (sw *swNode) event() monitor.NodeEvent {
	return monitor.NodeEvent{NodeID: sw.id, ProjectID: sw.project, Name: sw.name, Status: graph.VMStarted, ConsoleType: "none"}
}

// CreateSwitch creates an Ethernet switch or hub (typ) and its CENs.
// Like GNS3's, it is started from the first.
func (m *Manager) CreateSwitch(ctx context.Context, pid, typ string, spec NodeSpec) (SwitchView, error) {
	if spec.ID == "" {
		spec.ID = newUUID()
	} else if err := checkUUID("node_id", spec.ID); err != nil {
		return SwitchView{}, err
	}
	if spec.Name == nil || strings.TrimSpace(*spec.Name) == "" {
		return SwitchView{}, graph.Errorf(graph.ErrInvalid, "name is required")
	}
	if spec.ConsoleType != nil && *spec.ConsoleType != "none" {
		return SwitchView{}, graph.Errorf(graph.ErrInvalid, "console_type %q: a switch or hub here has no console (none)", *spec.ConsoleType)
	}
	ports := spec.PortsMapping
	if ports == nil {
		ports = defaultPorts(typ)
	}
	vlans, err := checkPorts(typ, ports)
	if err != nil {
		return SwitchView{}, err
	}
	m.mu.Lock()
	cs := m.cens
	m.mu.Unlock()
	if cs == nil {
		return SwitchView{}, graph.Errorf(graph.ErrUnavailable, "switches are not served: no CENs")
	}
	p, err := m.lockProject(ctx, pid)
	if err != nil {
		return SwitchView{}, err
	}
	defer unlock(p.lock)
	sw := &swNode{id: spec.ID, project: pid, typ: typ, lock: make(chan struct{}, 1), name: *spec.Name, ports: ports, links: map[int]*swLink{}}
	m.mu.Lock()
	_, isVM := m.nodes[spec.ID]
	_, isSw := m.switches[spec.ID]
	if isVM || isSw {
		m.mu.Unlock()
		return SwitchView{}, graph.Errorf(graph.ErrConflict, "node %q exists", spec.ID)
	}
	if m.switches == nil {
		m.switches = map[string]*swNode{}
	}
	m.switches[spec.ID] = sw
	sw.lock <- struct{}{}
	m.mu.Unlock()
	defer unlock(sw.lock)
	if sw.cens, err = m.pickCENs(ctx, cs, sw.name, sw.id, vlans); err != nil {
		sw.gone = true
		m.mu.Lock()
		delete(m.switches, spec.ID)
		m.mu.Unlock()
		return SwitchView{}, err
	}
	m.log.Info("switch created", "node", sw.id, "type", typ, "cens", sw.cens)
	m.cfg.Bus.Publish(monitor.Event{Action: monitor.ActionNodeUpdated, Data: sw.event()})
	return sw.view(), nil
}

// Switch returns a switch or hub.
func (m *Manager) Switch(ctx context.Context, pid, typ, id string) (SwitchView, error) {
	sw, err := m.lockSwitch(ctx, pid, id, typ)
	if err != nil {
		return SwitchView{}, err
	}
	defer unlock(sw.lock)
	return sw.view(), nil
}

// Switches lists a project's switches (or hubs), by node ID.
func (m *Manager) Switches(ctx context.Context, pid, typ string) ([]SwitchView, error) {
	if _, err := m.GetProject(ctx, pid); err != nil {
		return nil, err
	}
	m.mu.Lock()
	var ids []string
	for id, sw := range m.switches {
		if sw.project == pid && sw.typ == typ {
			ids = append(ids, id)
		}
	}
	m.mu.Unlock()
	slices.Sort(ids)
	out := []SwitchView{}
	for _, id := range ids {
		if v, err := m.Switch(ctx, pid, typ, id); err == nil {
			out = append(out, v)
		}
	}
	return out, nil
}

// UpdateSwitch renames a switch (its CENs keep their IDs) or changes
// its ports_mapping: ports that keep their VLAN keep their links; a
// mapping that needs another set of VLANs, or moves a linked port, is
// refused while links stand.
func (m *Manager) UpdateSwitch(ctx context.Context, pid, typ, id string, spec NodeSpec) (SwitchView, error) {
	sw, err := m.lockSwitch(ctx, pid, id, typ)
	if err != nil {
		return SwitchView{}, err
	}
	defer unlock(sw.lock)
	if spec.PortsMapping != nil {
		vlans, err := checkPorts(typ, spec.PortsMapping)
		if err != nil {
			return SwitchView{}, err
		}
		for _, v := range vlans {
			if _, ok := sw.cens[v]; !ok {
				return SwitchView{}, graph.Errorf(graph.ErrConflict, "ports_mapping: VLAN %d is new to switch %q: delete and create the switch to change its VLANs", v, sw.name)
			}
		}
		for num, l := range sw.links {
			i := slices.IndexFunc(spec.PortsMapping, func(p SwitchPort) bool { return p.PortNumber == num })
			if i < 0 || sw.cens[vlanOf(typ, spec.PortsMapping[i])] != l.cen {
				return SwitchView{}, graph.Errorf(graph.ErrConflict, "ports_mapping: port %d has a link: delete it before moving or removing the port", num)
			}
		}
		sw.ports = spec.PortsMapping
	}
	if spec.Name != nil && strings.TrimSpace(*spec.Name) != "" {
		sw.name = *spec.Name
	}
	m.cfg.Bus.Publish(monitor.Event{Action: monitor.ActionNodeUpdated, Data: sw.event()})
	return sw.view(), nil
}

func vlanOf(typ string, p SwitchPort) int {
	if typ == NodeTypeEthernetHub {
		return 0
	}
	return p.VLAN
}

// SwitchStatus is start, stop, suspend and reload of a switch: it is
// always started, as GNS3's are; the controller is told so again.
func (m *Manager) SwitchStatus(ctx context.Context, pid, typ, id string) error {
	sw, err := m.lockSwitch(ctx, pid, id, typ)
	if err != nil {
		return err
	}
	defer unlock(sw.lock)
	m.cfg.Bus.Publish(monitor.Event{Action: monitor.ActionNodeUpdated, Data: sw.event()})
	return nil
}

// DeleteSwitch deletes a switch: its links, then its CENs.
func (m *Manager) DeleteSwitch(ctx context.Context, pid, typ, id string) error {
	sw, err := m.lockSwitch(ctx, pid, id, typ)
	if err != nil {
		return err
	}
	defer unlock(sw.lock)
	return m.deleteSwitchLocked(ctx, sw)
}

func (m *Manager) deleteSwitchLocked(ctx context.Context, sw *swNode) error {
	var errs []error
	for _, num := range slices.Sorted(maps.Keys(sw.links)) {
		errs = append(errs, m.unlink(ctx, sw, num))
	}
	m.mu.Lock()
	cs := m.cens
	m.mu.Unlock()
	for _, v := range slices.Sorted(maps.Keys(sw.cens)) {
		if err := cs.DeleteCEN(ctx, sw.cens[v]); err != nil && !errors.Is(err, graph.ErrNotFound) {
			errs = append(errs, fmt.Errorf("switch %q: %w", sw.name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	sw.gone = true
	m.mu.Lock()
	delete(m.switches, sw.id)
	m.mu.Unlock()
	m.stopCapturesOf(sw.id)
	m.log.Info("switch deleted", "node", sw.id, "cens", sw.cens)
	return nil
}

// deleteSwitchesOf deletes a project's switches; the project's lock is
// held.
func (m *Manager) deleteSwitchesOf(ctx context.Context, pid string) error {
	m.mu.Lock()
	var sws []*swNode
	for _, sw := range m.switches {
		if sw.project == pid {
			sws = append(sws, sw)
		}
	}
	m.mu.Unlock()
	var errs []error
	for _, sw := range sws {
		if err := lock(ctx, sw.lock); err != nil {
			return err
		}
		if !sw.gone {
			errs = append(errs, m.deleteSwitchLocked(ctx, sw))
		}
		unlock(sw.lock)
	}
	return errors.Join(errs...)
}

// switchPort finds a port of a switch's ports_mapping; sw.lock is held.
func (sw *swNode) switchPort(adapter, port int) (SwitchPort, error) {
	i := slices.IndexFunc(sw.ports, func(p SwitchPort) bool { return p.PortNumber == port })
	if adapter != 0 || i < 0 {
		return SwitchPort{}, graph.Errorf(graph.ErrNotFound, "%s %q has no adapter %d port %d", sw.typ, sw.name, adapter, port)
	}
	return sw.ports[i], nil
}

// SetSwitchNIO connects a switch port to a UDP tunnel (POST), or changes
// its tunnel (PUT, mustExist): the same lport changes remote, filters
// and suspension live; another lport replaces the link.
func (m *Manager) SetSwitchNIO(ctx context.Context, pid, typ, id string, adapter, port int, spec NIOSpec, mustExist bool) (NIOView, error) {
	if _, err := spec.check(); err != nil {
		return NIOView{}, err
	}
	sw, err := m.lockSwitch(ctx, pid, id, typ)
	if err != nil {
		return NIOView{}, err
	}
	defer unlock(sw.lock)
	sp, err := sw.switchPort(adapter, port)
	if err != nil {
		return NIOView{}, err
	}
	if sp.Type == "dot1q" || sp.Type == "qinq" {
		return NIOView{}, errTrunk
	}
	nio := graph.NIO{Adapter: adapter, Port: port, Type: spec.Type, LPort: spec.LPort, RHost: spec.RHost, RPort: spec.RPort,
		Filters: maps.Clone(spec.Filters), Suspend: spec.Suspend}
	l := sw.links[port]
	if l == nil && mustExist {
		return NIOView{}, graph.Errorf(graph.ErrNotFound, "%s %q has no NIO on adapter %d port %d", sw.typ, sw.name, adapter, port)
	}
	if l != nil && l.nio.LPort == nio.LPort {
		tun, _ := l.relay.Endpoint(netfab.SideA).(*netfab.UDPTunnel)
		if tun != nil {
			if err := tun.SetRemote(net.JoinHostPort(nio.RHost, strconv.Itoa(nio.RPort))); err != nil {
				return NIOView{}, graph.Errorf(graph.ErrInvalid, "NIO: %w", err)
			}
		}
		l.nio = nio
		if err := l.apply(); err != nil {
			return NIOView{}, err
		}
		return nioView(nio), nil
	}
	if l != nil {
		if err := m.unlink(ctx, sw, port); err != nil {
			return NIOView{}, err
		}
	}
	if err := m.link(ctx, sw, sp, nio); err != nil {
		return NIOView{}, err
	}
	return nioView(nio), nil
}

// link makes a switch port a member of its CEN through a TAP, relayed to
// the NIO's tunnel; sw.lock is held. Each step's undo is registered as it
// is done.
func (m *Manager) link(ctx context.Context, sw *swNode, sp SwitchPort, nio graph.NIO) (err error) {
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	member := sw.id + "." + strconv.Itoa(sp.PortNumber)
	release, err := m.claimUDP(sw.project, member, nio.LPort)
	if err != nil {
		return err
	}
	undo = append(undo, release)
	tun, err := netfab.ListenUDPTunnel(net.JoinHostPort(bindAddr(nio.RHost), strconv.Itoa(nio.LPort)), net.JoinHostPort(nio.RHost, strconv.Itoa(nio.RPort)))
	if err != nil {
		return graph.Errorf(graph.ErrConflict, "NIO lport %d: %w", nio.LPort, err)
	}
	l := &swLink{m: m, sw: sw, port: sp.PortNumber, member: member, cen: sw.cens[vlanOf(sw.typ, sp)], nio: nio, relay: netfab.NewRelay(tun, nil)}
	undo = append(undo, func() { l.relay.Close() })
	if err := l.apply(); err != nil {
		return err
	}
	m.mu.Lock()
	if m.swLinks == nil {
		m.swLinks = map[string]*swLink{}
	}
	m.swLinks[member] = l
	cs := m.cens
	m.mu.Unlock()
	undo = append(undo, func() {
		m.mu.Lock()
		delete(m.swLinks, member)
		m.mu.Unlock()
	})
	if _, err := cs.AddMember(ctx, m.cfg.HostID, member, l.cen); err != nil {
		cs.DeleteContainer(context.WithoutCancel(ctx), m.cfg.HostID, member)
		return fmt.Errorf("switch %q port %d: %w", sw.name, sp.PortNumber, err)
	}
	sw.links[sp.PortNumber] = l
	m.log.Info("switch port linked", "node", sw.id, "port", sp.PortNumber, "cen", l.cen, "lport", nio.LPort)
	return nil
}

// unlink takes a switch port's link down: the member leaves its CEN and
// is forgotten (its TAP goes), the relay closes and the lport is freed.
// sw.lock is held.
func (m *Manager) unlink(ctx context.Context, sw *swNode, port int) error {
	l := sw.links[port]
	if l == nil {
		return nil
	}
	m.mu.Lock()
	cs := m.cens
	m.mu.Unlock()
	if err := cs.DeleteContainer(ctx, m.cfg.HostID, l.member); err != nil && !errors.Is(err, graph.ErrNotFound) {
		return fmt.Errorf("switch %q port %d: %w", sw.name, port, err)
	}
	m.stopCapturesOf(captureKey(sw.id, 0, port))
	l.mu.Lock()
	l.detachTAP()
	l.mu.Unlock()
	l.relay.Close()
	m.mu.Lock()
	delete(m.swLinks, l.member)
	m.mu.Unlock()
	m.releaseUDP(sw.project, l.nio.LPort)
	delete(sw.links, port)
	return nil
}

// DeleteSwitchNIO disconnects a switch port.
func (m *Manager) DeleteSwitchNIO(ctx context.Context, pid, typ, id string, adapter, port int) error {
	sw, err := m.lockSwitch(ctx, pid, id, typ)
	if err != nil {
		return err
	}
	defer unlock(sw.lock)
	if _, err := sw.switchPort(adapter, port); err != nil {
		return err
	}
	if sw.links[port] == nil {
		return graph.Errorf(graph.ErrNotFound, "%s %q has no NIO on adapter %d port %d", sw.typ, sw.name, adapter, port)
	}
	return m.unlink(ctx, sw, port)
}

// errNoLink is a capture asked of a switch port with no NIO.
var errNoLink = graph.Errorf(graph.ErrConflict, "the port has no link to capture")

// switchPortRelay is the relay of a switch port's link.
func (m *Manager) switchPortRelay(ctx context.Context, sw *swNode, adapter, port int) (*netfab.Relay, error) {
	if err := lock(ctx, sw.lock); err != nil {
		return nil, err
	}
	defer unlock(sw.lock)
	if _, err := sw.switchPort(adapter, port); err != nil {
		return nil, err
	}
	l := sw.links[port]
	if l == nil {
		return nil, fmt.Errorf("%s %q port %d: %w", sw.typ, sw.name, port, errNoLink)
	}
	return l.relay, nil
}

// apply sets the relay's filters and suspension: the NIO's, else a CEN
// link's settings; suspended when either says so.
func (l *swLink) apply() error {
	f, err := NIOSpec{Type: l.nio.Type, LPort: l.nio.LPort, RHost: l.nio.RHost, RPort: l.nio.RPort, Filters: l.nio.Filters}.check()
	if err != nil {
		return err
	}
	l.mu.Lock()
	imp := l.impair
	l.mu.Unlock()
	down := l.nio.Suspend
	if imp != nil {
		if f == (netfab.Filters{}) {
			f = imp.Filters
		}
		down = down || imp.Down
	}
	for _, d := range []netfab.Direction{netfab.AToB, netfab.BToA} {
		if err := l.relay.SetFilters(d, f); err != nil {
			return graph.Errorf(graph.ErrInvalid, "NIO filters: %w", err)
		}
	}
	l.relay.Suspend(down)
	return nil
}

// AttachTAP implements netfab.TAPPort: the TAP becomes side B of the
// port's relay.
func (l *swLink) AttachTAP(t *netfab.TAP) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	old, err := l.relay.SetEndpoint(netfab.SideB, t)
	if err != nil {
		t.Close()
		return err
	}
	if old != nil && old != netfab.Endpoint(l.tap) {
		old.Close()
	}
	if l.tap != nil && l.tap != t {
		l.tap.Close()
	}
	l.tap = t
	return nil
}

// DetachTAP implements netfab.TAPPort.
func (l *swLink) DetachTAP() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.detachTAP()
}

// detachTAP closes the TAP; l.mu is held.
func (l *swLink) detachTAP() {
	if l.tap == nil {
		return
	}
	if cur := l.relay.Endpoint(netfab.SideB); cur == netfab.Endpoint(l.tap) {
		l.relay.SetEndpoint(netfab.SideB, nil)
	}
	l.tap.Close()
	l.tap = nil
}

// SetImpairment implements netfab.TAPPort: a CEN link's settings (nil
// clears them), merged with the NIO's as apply does: the NIO's filters
// take precedence, and either may suspend the link.
func (l *swLink) SetImpairment(i *netfab.Impairment) error {
	l.mu.Lock()
	l.impair = i
	l.mu.Unlock()
	return l.apply()
}

// SwitchRuntime is switch ports as a runtime of core's: a port with a
// NIO is a member ID ("<node_id>.<port>") reached through a TAP on its
// CEN's bridge. It has no address to set.
type SwitchRuntime struct{ m *Manager }

// SwitchRuntime returns the switch ports as a runtime for core.
func (m *Manager) SwitchRuntime() *SwitchRuntime { return &SwitchRuntime{m: m} }

var _ core.TAPRuntime = (*SwitchRuntime)(nil)

// Name implements core.Runtime.
func (r *SwitchRuntime) Name() string { return RuntimeSwitchPort }

func (r *SwitchRuntime) link(id string) *swLink {
	r.m.mu.Lock()
	defer r.m.mu.Unlock()
	return r.m.swLinks[id]
}

// Lookup implements core.Runtime: only a port with a link is one.
func (r *SwitchRuntime) Lookup(ctx context.Context, id string) (core.Sandbox, bool, error) {
	if r.link(id) == nil {
		return core.Sandbox{}, false, nil
	}
	return core.Sandbox{Runtime: RuntimeSwitchPort, Running: true}, true, nil
}

// Owns implements core.Runtime.
func (r *SwitchRuntime) Owns(c *graph.Container) bool { return c.Runtime == RuntimeSwitchPort }

// Observe implements core.Runtime: a port whose link is gone (deleted,
// or lost with a restart: switches live in memory) does not run.
func (r *SwitchRuntime) Observe(ctx context.Context, ctrs []*graph.Container) ([]core.Sandbox, error) {
	out := make([]core.Sandbox, len(ctrs))
	for i, c := range ctrs {
		out[i] = core.Sandbox{Runtime: RuntimeSwitchPort, Running: true}
		if r.link(c.ID) == nil {
			out[i] = core.Sandbox{Runtime: RuntimeSwitchPort, Error: "the switch port's link is gone"}
		}
	}
	return out, nil
}

// Release implements core.Runtime.
func (r *SwitchRuntime) Release(ctx context.Context, c *graph.Container) error { return nil }

// TAPPort implements core.TAPRuntime.
func (r *SwitchRuntime) TAPPort(c *graph.Container) netfab.TAPPort {
	if l := r.link(c.ID); l != nil {
		return l
	}
	return goneVM{c.ID}
}

// SetAddress implements core.TAPRuntime: a switch port has no address.
func (r *SwitchRuntime) SetAddress(ctx context.Context, c *graph.Container, addr netip.Prefix, gw netip.Addr) error {
	return nil
}

// closeSwitches closes every switch link's relay and TAP (the daemon
// stops); the CENs stay in the store.
func (m *Manager) closeSwitches() {
	m.mu.Lock()
	ls := slices.Collect(maps.Values(m.swLinks))
	m.mu.Unlock()
	for _, l := range ls {
		l.mu.Lock()
		l.detachTAP()
		l.mu.Unlock()
		l.relay.Close()
	}
}
