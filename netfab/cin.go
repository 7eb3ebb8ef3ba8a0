package netfab

import (
	"context"
	"fmt"
	"net/netip"
)

// Proto marks the addresses (IFA_PROTO), routes and rules (protocol)
// leviathan adds, so reconcile and destroy can tell them from anyone
// else's: an address a user put on a CEN interface is never removed.
const Proto = 76

// CIN is what the kernel should hold for one CIN on this host.
type CIN struct {
	ID string // for messages
	// Table is the CIN's routing table in the fabric: the routes between
	// its CENs' subnets and nothing else, so CINs cannot reach each other.
	Table     int
	Prefix    netip.Prefix
	Gateways  []Gateway
	Addresses []Address
}

// Gateway is a bridge CEN's gateway address, in the fabric.
type Gateway struct {
	Bridge string
	Addr   netip.Prefix // gateway address, subnet length
}

// Address is a member's address on its interface for one CEN.
type Address struct {
	Member string // for messages
	Netns  string
	IfName string
	Addr   netip.Prefix // address, subnet length
	// Route asks for the route to the CIN's prefix through this
	// interface: via Via, or on-link when Via is not valid.
	Route bool
	Via   netip.Addr
	// DefaultRoute asks for a default route via Via, added only when the
	// member has no default route already.
	DefaultRoute bool
}

func (a Address) key() string { return a.Netns + "|" + a.IfName + "|" + a.Addr.String() }
func (g Gateway) key() string { return g.Bridge + "|" + g.Addr.String() }

// ApplyCIN changes the kernel from holding prev (nil: nothing) to holding
// next (nil: nothing). Addresses of next that prev lacks or had otherwise
// are (re)applied, and so are those dirty reports (all of them when dirty
// is nil): the ones whose interface was recreated, for instance.
// Applying adopts what exists. On failure it puts prev back.
func (f *Fabric) ApplyCIN(ctx context.Context, prev, next *CIN, dirty func(Address) bool) error {
	err := f.applyCIN(ctx, prev, next, dirty)
	if err != nil && next != nil {
		if rerr := f.applyCIN(context.WithoutCancel(ctx), next, prev, nil); rerr != nil {
			return fmt.Errorf("%w (restoring the previous addressing failed too: %w)", err, rerr)
		}
	}
	return err
}

func (f *Fabric) applyCIN(ctx context.Context, prev, next *CIN, dirty func(Address) bool) error {
	var pg, ng []Gateway
	var pa, na []Address
	table := 0
	if prev != nil {
		pg, pa, table = prev.Gateways, prev.Addresses, prev.Table
	}
	if next != nil {
		ng, na, table = next.Gateways, next.Addresses, next.Table
	}
	keepA := map[string]bool{}
	for _, a := range na {
		keepA[a.key()] = true
	}
	had := map[string]Address{}
	var dropA []Address
	for _, a := range pa {
		had[a.key()] = a
		if !keepA[a.key()] {
			dropA = append(dropA, a)
		}
	}
	// What to (re)apply: new, changed, or dirty addresses. A changed one
	// loses its old routes first.
	var todo, rerouted []Address
	for _, a := range na {
		old, ok := had[a.key()]
		switch {
		case ok && old != a:
			rerouted = append(rerouted, old)
			todo = append(todo, a)
		case !ok || dirty == nil || dirty(a):
			todo = append(todo, a)
		}
	}
	keepG := map[string]bool{}
	for _, g := range ng {
		keepG[g.key()] = true
	}
	// Gateways to (re)apply: new ones, or all of them when everything is
	// to be applied. Those prev had stand, on a bridge that was kept.
	hadG := map[string]bool{}
	for _, g := range pg {
		hadG[g.key()] = true
	}
	var todoG []Gateway
	for _, g := range ng {
		if dirty == nil || !hadG[g.key()] {
			todoG = append(todoG, g)
		}
	}
	if err := f.removeAddresses(dropA, true); err != nil {
		return err
	}
	if err := f.removeAddresses(rerouted, false); err != nil {
		return err
	}
	for _, g := range pg {
		if !keepG[g.key()] {
			if err := f.removeGateway(table, g); err != nil {
				return err
			}
		}
	}
	if len(ng) == 0 && prev != nil {
		if err := f.flushTable(table); err != nil {
			return err
		}
	}
	if next == nil {
		return nil
	}
	if len(todoG) > 0 {
		if err := f.ensureCINTable(next); err != nil {
			return err
		}
	}
	for _, g := range todoG {
		if err := f.ensureGateway(next, g); err != nil {
			return err
		}
	}
	return f.ensureAddresses(ctx, next.Prefix, todo)
}
