package vm

import (
	"context"
	"maps"
	"net"
	"net/netip"
	"strconv"

	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/netfab"
)

// NIOTypeUDP is the one kind of NIO served: a GNS3 UDP tunnel.
const NIOTypeUDP = "nio_udp"

// NIOSpec is the body of POST and PUT .../adapters/0/ports/0/nio.
type NIOSpec struct {
	Type  string `json:"type"`
	LPort int    `json:"lport"`
	RHost string `json:"rhost"`
	RPort int    `json:"rport"`
	// Filters impair the link, each way, as GNS3 gives them:
	// {"packet_loss": [P], "delay": [MS, JITTER_MS], "frequency_drop":
	// [N], "corrupt": [P]} (and "duplicate": [P]).
	Filters map[string][]int `json:"filters"`
	Suspend bool             `json:"suspend"`
}

// NIOView is a NIO as the API shows it; GET adds its relay's counters.
type NIOView struct {
	Type    string           `json:"type"`
	LPort   int              `json:"lport"`
	RHost   string           `json:"rhost"`
	RPort   int              `json:"rport"`
	Filters map[string][]int `json:"filters"`
	Suspend bool             `json:"suspend"`
	Stats   *NIOStats        `json:"stats,omitempty"`
}

// NIOStats count the frames through the relay between the VM and its NIO.
type NIOStats struct {
	FromVM netfab.RelayStats `json:"from_vm"`
	ToVM   netfab.RelayStats `json:"to_vm"`
}

func nioView(n graph.NIO) NIOView {
	f := n.Filters
	if f == nil {
		f = map[string][]int{}
	}
	return NIOView{Type: n.Type, LPort: n.LPort, RHost: n.RHost, RPort: n.RPort, Filters: f, Suspend: n.Suspend}
}

// checkAdapter refuses any adapter and port but 0/0: a VPCS has one.
func checkAdapter(adapter, port int) error {
	if adapter != 0 || port != 0 {
		return graph.Errorf(graph.ErrNotFound, "adapter %d port %d: a VPCS has one adapter with one port, 0/0", adapter, port)
	}
	return nil
}

// check validates a NIO spec and returns its filters.
func (s NIOSpec) check() (netfab.Filters, error) {
	if s.Type != NIOTypeUDP {
		return netfab.Filters{}, graph.Errorf(graph.ErrInvalid, "NIO type %q is not served: only %q", s.Type, NIOTypeUDP)
	}
	if s.LPort < 1 || s.LPort > 65535 || s.RPort < 1 || s.RPort > 65535 {
		return netfab.Filters{}, graph.Errorf(graph.ErrInvalid, "NIO lport %d, rport %d: want UDP ports from 1 to 65535", s.LPort, s.RPort)
	}
	if s.RHost == "" {
		return netfab.Filters{}, graph.Errorf(graph.ErrInvalid, "NIO rhost is required")
	}
	if _, err := net.ResolveUDPAddr("udp4", net.JoinHostPort(s.RHost, strconv.Itoa(s.RPort))); err != nil {
		return netfab.Filters{}, graph.Errorf(graph.ErrInvalid, "NIO rhost %q: %w", s.RHost, err)
	}
	f, err := netfab.FiltersFromGNS3(s.Filters)
	if err != nil {
		return netfab.Filters{}, graph.Errorf(graph.ErrInvalid, "NIO filters: %w", err)
	}
	return f, nil
}

// SetNIO connects port 0/0 of a VM to a UDP tunnel, or changes the
// tunnel it has, while the VM runs or not: frames follow at once. The
// same lport keeps the socket and changes its remote, filters and
// suspension; a new lport replaces the tunnel, and the old lport is let
// go. With mustExist (PUT) a port with no NIO is ErrNotFound.
func (m *Manager) SetNIO(ctx context.Context, pid, vmID string, adapter, port int, spec NIOSpec, mustExist bool) (NIOView, error) {
	if err := checkAdapter(adapter, port); err != nil {
		return NIOView{}, err
	}
	if _, err := spec.check(); err != nil {
		return NIOView{}, err
	}
	n, err := m.lockVM(ctx, pid, vmID)
	if err != nil {
		return NIOView{}, err
	}
	defer unlock(n.lock)
	if err := m.cenConflict(n); err != nil {
		return NIOView{}, err
	}
	i := n.nioIndex(adapter, port)
	if i < 0 && mustExist {
		return NIOView{}, graph.Errorf(graph.ErrNotFound, "VM %q has no NIO on adapter %d port %d", vmID, adapter, port)
	}
	nio := graph.NIO{
		Adapter: adapter, Port: port, Type: spec.Type,
		LPort: spec.LPort, RHost: spec.RHost, RPort: spec.RPort,
		Filters: maps.Clone(spec.Filters), Suspend: spec.Suspend,
	}
	var old *graph.NIO
	if i >= 0 {
		old = &n.rec.NIOs[i]
	}
	if old == nil || old.LPort != nio.LPort {
		undo, err := m.claimUDP(pid, vmID, nio.LPort)
		if err != nil {
			return NIOView{}, err
		}
		if err := m.plugNIO(n, nio); err != nil {
			undo()
			return NIOView{}, err
		}
		if old != nil {
			m.releaseUDP(pid, old.LPort)
		}
	} else if err := m.plugNIO(n, nio); err != nil {
		return NIOView{}, err
	}
	if i >= 0 {
		n.rec.NIOs[i] = nio
	} else {
		n.rec.NIOs = append(n.rec.NIOs, nio)
	}
	if err := m.save(n); err != nil {
		return NIOView{}, err
	}
	return nioView(nio), nil
}

func (n *node) nioIndex(adapter, port int) int {
	for i, nio := range n.rec.NIOs {
		if nio.Adapter == adapter && nio.Port == port {
			return i
		}
	}
	return -1
}

// plugNIO makes nio side B of the VM's relay: a socket on nio.LPort is
// bound unless side B has it already, in which case only its remote
// changes; then the filters (both ways) and suspension are set. n.lock
// is held.
func (m *Manager) plugNIO(n *node, nio graph.NIO) error {
	f, err := NIOSpec{Type: nio.Type, LPort: nio.LPort, RHost: nio.RHost, RPort: nio.RPort, Filters: nio.Filters}.check()
	if err != nil {
		return err
	}
	remote := net.JoinHostPort(nio.RHost, strconv.Itoa(nio.RPort))
	cur, _ := n.relay.Endpoint(netfab.SideB).(*netfab.UDPTunnel)
	if cur != nil && int(cur.LocalAddr().Port()) == nio.LPort {
		if err := cur.SetRemote(remote); err != nil {
			return graph.Errorf(graph.ErrInvalid, "NIO: %w", err)
		}
	} else {
		tun, err := netfab.ListenUDPTunnel(net.JoinHostPort(bindAddr(nio.RHost), strconv.Itoa(nio.LPort)), remote)
		if err != nil {
			return graph.Errorf(graph.ErrConflict, "NIO lport %d: %w", nio.LPort, err)
		}
		old, err := n.relay.SetEndpoint(netfab.SideB, tun)
		if err != nil {
			tun.Close()
			return err
		}
		if old != nil {
			old.Close()
		}
	}
	for _, d := range []netfab.Direction{netfab.AToB, netfab.BToA} {
		if err := n.relay.SetFilters(d, f); err != nil {
			return graph.Errorf(graph.ErrInvalid, "NIO filters: %w", err)
		}
	}
	n.relay.Suspend(nio.Suspend)
	return nil
}

// bindAddr is where a NIO's socket listens: on 127.0.0.1 for a peer on
// this host, else on every address, since a peer elsewhere sends to
// whichever address reaches this host.
func bindAddr(rhost string) string {
	if a, err := netip.ParseAddr(rhost); (err == nil && a.IsLoopback()) || rhost == "localhost" {
		return "127.0.0.1"
	}
	return "0.0.0.0"
}

// GetNIO returns the NIO of a VM's port, with its relay's counters.
func (m *Manager) GetNIO(ctx context.Context, pid, vmID string, adapter, port int) (NIOView, error) {
	if err := checkAdapter(adapter, port); err != nil {
		return NIOView{}, err
	}
	n, err := m.lockVM(ctx, pid, vmID)
	if err != nil {
		return NIOView{}, err
	}
	defer unlock(n.lock)
	i := n.nioIndex(adapter, port)
	if i < 0 {
		return NIOView{}, graph.Errorf(graph.ErrNotFound, "VM %q has no NIO on adapter %d port %d", vmID, adapter, port)
	}
	v := nioView(n.rec.NIOs[i])
	v.Stats = &NIOStats{FromVM: n.relay.Stats(netfab.AToB), ToVM: n.relay.Stats(netfab.BToA)}
	return v, nil
}

// DeleteNIO disconnects a VM's port and lets go of its lport.
func (m *Manager) DeleteNIO(ctx context.Context, pid, vmID string, adapter, port int) error {
	if err := checkAdapter(adapter, port); err != nil {
		return err
	}
	n, err := m.lockVM(ctx, pid, vmID)
	if err != nil {
		return err
	}
	defer unlock(n.lock)
	i := n.nioIndex(adapter, port)
	if i < 0 {
		return graph.Errorf(graph.ErrNotFound, "VM %q has no NIO on adapter %d port %d", vmID, adapter, port)
	}
	nio := n.rec.NIOs[i]
	old, err := n.relay.SetEndpoint(netfab.SideB, nil)
	if err != nil {
		return err
	}
	if old != nil {
		old.Close()
	}
	for _, d := range []netfab.Direction{netfab.AToB, netfab.BToA} {
		n.relay.SetFilters(d, netfab.Filters{})
	}
	n.relay.Suspend(false)
	n.rec.NIOs = append(n.rec.NIOs[:i:i], n.rec.NIOs[i+1:]...)
	m.releaseUDP(pid, nio.LPort)
	return m.save(n)
}

// cenConflict refuses a NIO to a VM that is a CEN member: a VPCS has one
// adapter, and the CEN holds it. n.lock is held.
func (m *Manager) cenConflict(n *node) error {
	var in []string
	err := m.cfg.Store.View(func(tx graph.Tx) error {
		cs, err := graph.ListCENs(tx)
		for _, c := range cs {
			if c.HasMember(n.rec.Member()) {
				in = append(in, c.ID)
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	if len(in) > 0 || n.tap != nil {
		return graph.Errorf(graph.ErrConflict, "VM %q has one adapter, and CEN %s holds it: take the VM out (DELETE /host/%s/%s/%s) before giving it a NIO", n.id, graph.QuoteList(in), n.rec.Host, n.id, first(in))
	}
	return nil
}

func first(ss []string) string {
	if len(ss) == 0 {
		return "{cenId}"
	}
	return ss[0]
}
