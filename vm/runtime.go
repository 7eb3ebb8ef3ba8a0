package vm

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/netfab"
)

// addressTimeout bounds setting a VM's address through its console.
const addressTimeout = 30 * time.Second

// Runtime is the emulated VMs as a runtime of core's: a VM's ID is a
// member ID, and a VM in a CEN is reached through a TAP on the CEN's
// bridge that the VM's relay joins to its tunnel, where a NIO would
// otherwise be. A VPCS has one adapter: it is in a CEN or has a NIO, not
// both. In a made CIN its address is set through its console.
type Runtime struct{ m *Manager }

// Runtime returns the manager's VMs as a runtime for core.
func (m *Manager) Runtime() *Runtime { return &Runtime{m: m} }

var _ core.TAPRuntime = (*Runtime)(nil)

// Name implements core.Runtime.
func (r *Runtime) Name() string { return graph.RuntimeVPCS }

func (r *Runtime) node(id string) *node {
	r.m.mu.Lock()
	defer r.m.mu.Unlock()
	return r.m.nodes[id]
}

// Lookup implements core.Runtime: an ID that names a VM is one; a VM
// whose adapter holds a NIO cannot be a member as well.
func (r *Runtime) Lookup(ctx context.Context, id string) (core.Sandbox, bool, error) {
	n := r.node(id)
	if n == nil {
		return core.Sandbox{}, false, nil
	}
	defer r.m.mustLock(n)()
	if n.gone {
		return core.Sandbox{}, false, nil
	}
	if err := n.nioConflict(); err != nil {
		return core.Sandbox{}, false, err
	}
	return core.Sandbox{Runtime: graph.RuntimeVPCS, Running: true}, true, nil
}

func (n *node) nioConflict() error {
	if len(n.rec.NIOs) > 0 {
		nio := n.rec.NIOs[0]
		return graph.Errorf(graph.ErrConflict, "VM %q has one adapter, and a NIO holds it (lport %d, to %s:%d): delete the NIO before putting the VM in a CEN", n.id, nio.LPort, nio.RHost, nio.RPort)
	}
	return nil
}

// Owns implements core.Runtime.
func (r *Runtime) Owns(c *graph.Container) bool { return c.Runtime == graph.RuntimeVPCS }

// Observe implements core.Runtime: a VM that exists is there to be
// wired, running or not (its relay stands either way); a deleted one is
// not.
func (r *Runtime) Observe(ctx context.Context, ctrs []*graph.Container) ([]core.Sandbox, error) {
	out := make([]core.Sandbox, len(ctrs))
	for i, c := range ctrs {
		out[i] = core.Sandbox{Runtime: graph.RuntimeVPCS, Running: true}
		if n := r.node(c.ID); n == nil {
			out[i] = core.Sandbox{Runtime: graph.RuntimeVPCS, Error: "the VM is gone (deleted)"}
		}
	}
	return out, nil
}

// Release implements core.Runtime: forgetting a member leaves its VM.
func (r *Runtime) Release(ctx context.Context, c *graph.Container) error { return nil }

// TAPPort implements core.TAPRuntime: the same value for a VM every
// time, so netfab knows a TAP it attached.
func (r *Runtime) TAPPort(c *graph.Container) netfab.TAPPort {
	n := r.node(c.ID)
	if n == nil {
		return goneVM{c.ID}
	}
	r.m.mu.Lock()
	defer r.m.mu.Unlock()
	if n.port == nil {
		n.port = &tapPort{m: r.m, n: n}
	}
	return n.port
}

// SetAddress implements core.TAPRuntime: the address is recorded, and
// typed into the VM's console (in the background: vpcs checks for a
// duplicate for about 3 seconds) now if it runs, and whenever it starts.
func (r *Runtime) SetAddress(ctx context.Context, c *graph.Container, addr netip.Prefix, gw netip.Addr) error {
	n := r.node(c.ID)
	if n == nil {
		return nil
	}
	a, g := "", ""
	if addr.IsValid() {
		a = addr.String()
	}
	if gw.IsValid() {
		g = gw.String()
	}
	unlock := r.m.mustLock(n)
	if n.gone || n.rec.Address == a && n.rec.Gateway == g {
		unlock()
		return nil
	}
	n.rec.Address, n.rec.Gateway = a, g
	err := r.m.save(n)
	running := n.vpcs != nil
	unlock()
	if running {
		r.m.applyAddress(n)
	}
	return err
}

// applyAddress types a VM's recorded address into its console, in the
// background, with the VM's lock held meanwhile.
func (m *Manager) applyAddress(n *node) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer m.mustLock(n)()
		v := n.vpcs
		if v == nil || n.gone {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), addressTimeout)
		defer cancel()
		var err error
		if n.rec.Address == "" {
			_, err = v.Exec(ctx, "clear ip")
		} else {
			p, perr := netip.ParsePrefix(n.rec.Address)
			gw, _ := netip.ParseAddr(n.rec.Gateway)
			if err = perr; err == nil {
				err = v.SetIP(ctx, p, gw)
			}
		}
		if err != nil {
			m.log.Warn("setting a VM's CIN address", "vm", n.id, "address", n.rec.Address, "err", err)
		}
	}()
}

// tapPort is a VM's side of its TAP on a CEN's bridge.
type tapPort struct {
	m *Manager
	n *node
}

// AttachTAP implements netfab.TAPPort: the TAP becomes side B of the
// VM's relay.
func (p *tapPort) AttachTAP(t *netfab.TAP) error {
	defer p.m.mustLock(p.n)()
	if p.n.gone {
		return graph.Errorf(graph.ErrNotFound, "VM %q is gone", p.n.id)
	}
	if err := p.n.nioConflict(); err != nil {
		return err
	}
	old, err := p.n.relay.SetEndpoint(netfab.SideB, t)
	if err != nil {
		return err
	}
	if old != nil {
		old.Close()
	}
	p.n.tap = t
	return nil
}

// DetachTAP implements netfab.TAPPort.
func (p *tapPort) DetachTAP() {
	defer p.m.mustLock(p.n)()
	p.n.detachTAP()
}

// detachTAP takes the TAP off the relay and closes it; n.lock is held.
func (n *node) detachTAP() {
	if n.tap == nil {
		return
	}
	if cur := n.relay.Endpoint(netfab.SideB); cur == netfab.Endpoint(n.tap) {
		n.relay.SetEndpoint(netfab.SideB, nil)
	}
	n.tap.Close()
	n.tap = nil
}

// SetImpairment implements netfab.TAPPort: the link's filters in both
// directions of the relay, and down as a suspended relay.
func (p *tapPort) SetImpairment(i *netfab.Impairment) error {
	defer p.m.mustLock(p.n)()
	var f netfab.Filters
	down := false
	if i != nil {
		f, down = i.Filters, i.Down
	}
	for _, d := range []netfab.Direction{netfab.AToB, netfab.BToA} {
		if err := p.n.relay.SetFilters(d, f); err != nil {
			return fmt.Errorf("VM %q: %w", p.n.id, err)
		}
	}
	p.n.relay.Suspend(down)
	return nil
}

// goneVM is the port of a VM that no longer exists: nothing to attach.
type goneVM struct{ id string }

func (g goneVM) AttachTAP(t *netfab.TAP) error {
	t.Close()
	return graph.Errorf(graph.ErrNotFound, "VM %q is gone", g.id)
}
func (goneVM) DetachTAP()                             {}
func (goneVM) SetImpairment(*netfab.Impairment) error { return nil }
