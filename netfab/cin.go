package netfab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/leviathan-net/leviathan/cin"
)

// Proto marks the addresses (IFA_PROTO), routes and rules (protocol)
// leviathan adds, so reconcile and destroy can tell them from anyone
// else's: an address a user put on a CEN interface is never removed.
const Proto = 76

// RulePriority is the priority of the fabric's per-CIN rules; the
// fabric's local table rule moves behind them so that a CIN cannot even
// reach another CIN's gateways.
const (
	RulePriority      = 1000
	LocalRulePriority = 32000
)

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

// ensureCINTable prepares the fabric for routing c: the local table rule
// behind the per-CIN rules, and c's table ending in "unreachable".
func (f *Fabric) ensureCINTable(c *CIN) error {
	rules, err := f.c.h.RuleList(unix.AF_INET)
	if err != nil {
		return fmt.Errorf("list rules: %w", err)
	}
	for _, r := range rules {
		if r.Table == unix.RT_TABLE_LOCAL && r.Priority == 0 {
			nr := netlink.NewRule()
			nr.Table, nr.Priority, nr.Family = unix.RT_TABLE_LOCAL, LocalRulePriority, unix.AF_INET
			if err := f.c.h.RuleAdd(nr); err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("move the local rule: %w", err)
			}
			if err := f.c.h.RuleDel(&r); err != nil {
				return fmt.Errorf("move the local rule: %w", err)
			}
		}
	}
	err = f.c.h.RouteReplace(&netlink.Route{Table: c.Table, Type: unix.RTN_UNREACHABLE, Protocol: Proto, Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}})
	if err != nil {
		return fmt.Errorf("CIN %s: table %d: %w", c.ID, c.Table, err)
	}
	return nil
}

func (f *Fabric) ensureGateway(c *CIN, g Gateway) error {
	l, err := f.c.linkByName(g.Bridge)
	if err != nil || l == nil {
		return fmt.Errorf("CIN %s: bridge %q: %w", c.ID, g.Bridge, errOr(err, unix.ENODEV))
	}
	idx := l.Attrs().Index
	if err := f.c.addAddr(idx, g.Addr); err != nil {
		return fmt.Errorf("CIN %s: gateway %s on %q: %w", c.ID, g.Addr, g.Bridge, err)
	}
	if err := f.c.setForwarding(idx, true); err != nil {
		return fmt.Errorf("CIN %s: forwarding on %q: %w", c.ID, g.Bridge, err)
	}
	subnet := g.Addr.Masked()
	routes := []*netlink.Route{
		{Table: c.Table, LinkIndex: idx, Dst: ipnet(subnet), Scope: netlink.SCOPE_LINK, Protocol: Proto, Src: g.Addr.Addr().AsSlice()},
		{Table: c.Table, LinkIndex: idx, Dst: ipnet(netip.PrefixFrom(g.Addr.Addr(), 32)), Type: unix.RTN_LOCAL, Scope: netlink.SCOPE_HOST, Protocol: Proto},
	}
	for _, r := range routes {
		if err := f.c.h.RouteReplace(r); err != nil {
			return fmt.Errorf("CIN %s: route %s in table %d: %w", c.ID, r.Dst, c.Table, err)
		}
	}
	rule := netlink.NewRule()
	rule.Family, rule.Table, rule.Priority, rule.IifName, rule.Protocol = unix.AF_INET, c.Table, RulePriority, g.Bridge, Proto
	if err := f.c.h.RuleAdd(rule); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("CIN %s: rule for %q: %w", c.ID, g.Bridge, err)
	}
	return nil
}

func (f *Fabric) removeGateway(table int, g Gateway) error {
	rule := netlink.NewRule()
	rule.Family, rule.Table, rule.Priority, rule.IifName = unix.AF_INET, table, RulePriority, g.Bridge
	if err := f.c.h.RuleDel(rule); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete rule for %q: %w", g.Bridge, err)
	}
	l, err := f.c.linkByName(g.Bridge)
	if err != nil || l == nil {
		return err // no bridge: its address and routes went with it
	}
	// No rule sends the bridge's traffic to a CIN table any more: it must
	// not be forwarded by the fabric's main table either.
	if err := f.c.setForwarding(l.Attrs().Index, false); err != nil {
		return fmt.Errorf("forwarding off on %q: %w", g.Bridge, err)
	}
	return f.c.delAddr(l.Attrs().Index, g.Addr)
}

// flushTable removes a CIN's table and the rules pointing at it.
func (f *Fabric) flushTable(table int) error {
	routes, err := f.c.h.RouteListFiltered(unix.AF_INET, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("list table %d: %w", table, err)
	}
	for _, r := range routes {
		if err := f.c.h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("delete route %s from table %d: %w", r.Dst, table, err)
		}
	}
	rules, err := f.c.h.RuleList(unix.AF_INET)
	if err != nil {
		return err
	}
	for _, r := range rules {
		if r.Table == table && r.Protocol == Proto {
			if err := f.c.h.RuleDel(&r); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("delete rule for table %d: %w", table, err)
			}
		}
	}
	return nil
}

// byNetns groups addresses by namespace, in a stable order.
func byNetns(as []Address) ([]string, map[string][]Address) {
	m := map[string][]Address{}
	for _, a := range as {
		m[a.Netns] = append(m[a.Netns], a)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys, m
}

func (f *Fabric) ensureAddresses(ctx context.Context, prefix netip.Prefix, as []Address) error {
	order, m := byNetns(as)
	for _, ns := range order {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := withConn(ns, func(c *conn) error {
			for _, a := range m[ns] {
				if err := c.ensureAddress(prefix, a); err != nil {
					return &MemberError{Member: a.Member, Err: err}
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *conn) ensureAddress(prefix netip.Prefix, a Address) error {
	l, err := c.linkByName(a.IfName)
	if err != nil || l == nil {
		return fmt.Errorf("interface %q: %w", a.IfName, errOr(err, unix.ENODEV))
	}
	idx := l.Attrs().Index
	if err := c.addAddr(idx, a.Addr); err != nil {
		return fmt.Errorf("address %s on %q: %w", a.Addr, a.IfName, err)
	}
	if a.Route {
		r := &netlink.Route{LinkIndex: idx, Dst: ipnet(prefix), Protocol: Proto}
		if a.Via.IsValid() {
			r.Gw = a.Via.AsSlice()
		} else {
			r.Scope = netlink.SCOPE_LINK
		}
		if err := c.ensureRoute(r); err != nil {
			return fmt.Errorf("route to %s: %w", prefix, err)
		}
	}
	if a.DefaultRoute && a.Via.IsValid() {
		// Only when the container has no default route of any metric:
		// never replace or outrank its own.
		have, err := c.h.RouteListFiltered(unix.AF_INET, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return fmt.Errorf("default route: %w", err)
		}
		for _, h := range have {
			if h.Dst == nil || h.Dst.IP.IsUnspecified() && isZeroMask(h.Dst.Mask) {
				return nil
			}
		}
		r := &netlink.Route{LinkIndex: idx, Gw: a.Via.AsSlice(), Protocol: Proto}
		if err := c.h.RouteAdd(r); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("default route: %w", err)
		}
	}
	return nil
}

func isZeroMask(m net.IPMask) bool {
	ones, _ := m.Size()
	return ones == 0
}

// ensureRoute adds r, or replaces a route to the same destination that is
// leviathan's; a foreign one is left alone.
func (c *conn) ensureRoute(r *netlink.Route) error {
	err := c.h.RouteAdd(r)
	if !errors.Is(err, unix.EEXIST) {
		return err
	}
	have, err := c.h.RouteListFiltered(unix.AF_INET, &netlink.Route{Dst: r.Dst, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if err != nil {
		return err
	}
	for _, h := range have {
		if h.Protocol == Proto && (h.LinkIndex != r.LinkIndex || !h.Gw.Equal(r.Gw)) {
			return c.h.RouteReplace(r)
		}
	}
	return nil
}

// removeAddresses removes leviathan's routes through the addresses'
// interfaces and, when addrs is set, the addresses themselves.
func (f *Fabric) removeAddresses(as []Address, addrs bool) error {
	order, m := byNetns(as)
	for _, ns := range order {
		if !IsNetns(ns) {
			continue // gone with its namespace
		}
		err := withConn(ns, func(c *conn) error {
			for _, a := range m[ns] {
				l, err := c.linkByName(a.IfName)
				if err != nil {
					return err
				}
				if l == nil {
					continue // gone with its interface
				}
				if err := c.delOwnRoutes(l.Attrs().Index); err != nil {
					return err
				}
				if !addrs {
					continue
				}
				if err := c.delAddr(l.Attrs().Index, a.Addr); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// delOwnRoutes removes leviathan's routes through an interface.
func (c *conn) delOwnRoutes(index int) error {
	rs, err := c.h.RouteListFiltered(unix.AF_INET, &netlink.Route{LinkIndex: index, Protocol: Proto}, netlink.RT_FILTER_OIF|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return err
	}
	for _, r := range rs {
		if err := c.h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("delete route %s: %w", r.Dst, err)
		}
	}
	return nil
}

// addAddr adds an address marked as leviathan's; one that is there
// already is not an error.
func (c *conn) addAddr(index int, p netip.Prefix) error {
	req := c.request(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	req.AddData(ifaddrmsg(index, p))
	a := p.Addr().AsSlice()
	req.AddData(nl.NewRtAttr(unix.IFA_LOCAL, a))
	req.AddData(nl.NewRtAttr(unix.IFA_ADDRESS, a))
	bcast := netip.PrefixFrom(p.Addr(), p.Bits()).Masked().Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		bcast[i/8] |= 1 << (7 - i%8)
	}
	req.AddData(nl.NewRtAttr(unix.IFA_BROADCAST, bcast[:]))
	req.AddData(nl.NewRtAttr(ifaProto, []byte{Proto}))
	if err := c.exec(req); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

func (c *conn) delAddr(index int, p netip.Prefix) error {
	req := c.request(unix.RTM_DELADDR, 0)
	req.AddData(ifaddrmsg(index, p))
	req.AddData(nl.NewRtAttr(unix.IFA_LOCAL, p.Addr().AsSlice()))
	if err := c.exec(req); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete address %s: %w", p, err)
	}
	return nil
}

// ifaProto is IFA_PROTO (Linux 5.18), which x/sys does not name.
const ifaProto = 11

func ifaddrmsg(index int, p netip.Prefix) *nl.IfAddrmsg {
	m := nl.NewIfAddrmsg(unix.AF_INET)
	m.Prefixlen = uint8(p.Bits())
	m.Index = uint32(index)
	return m
}

// setForwarding sets an interface's IPv4 forwarding (its
// net.ipv4.conf.IF.forwarding) through netlink, without touching any
// namespace-wide sysctl.
func (c *conn) setForwarding(index int, on bool) error {
	req := c.request(unix.RTM_SETLINK, 0)
	m := nl.NewIfInfomsg(unix.AF_UNSPEC)
	m.Index = int32(index)
	req.AddData(m)
	spec := nl.NewRtAttr(unix.IFLA_AF_SPEC, nil)
	inet := spec.AddRtAttr(unix.AF_INET, nil)
	conf := inet.AddRtAttr(1 /* IFLA_INET_CONF */, nil)
	v := uint32(0)
	if on {
		v = 1
	}
	conf.AddRtAttr(1 /* IPV4_DEVCONF_FORWARDING */, nl.Uint32Attr(v))
	req.AddData(spec)
	return c.exec(req)
}

// ownAddrs lists the addresses marked as leviathan's in the conn's
// namespace, by interface index.
func (c *conn) ownAddrs(ctx context.Context) (map[int][]netip.Prefix, error) {
	out := map[int][]netip.Prefix{}
	err := retryDump(ctx, func() error {
		clear(out)
		req := c.request(unix.RTM_GETADDR, unix.NLM_F_DUMP)
		req.Flags &^= unix.NLM_F_ACK
		req.AddData(nl.NewIfAddrmsg(unix.AF_INET))
		msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWADDR)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			msg := nl.DeserializeIfAddrmsg(m)
			attrs, err := nl.ParseRouteAttr(m[msg.Len():])
			if err != nil {
				return err
			}
			var addr netip.Addr
			own := false
			for _, a := range attrs {
				switch a.Attr.Type {
				case unix.IFA_LOCAL:
					addr, _ = netip.AddrFromSlice(a.Value)
				case ifaProto:
					own = len(a.Value) == 1 && a.Value[0] == Proto
				}
			}
			if own && addr.IsValid() {
				out[int(msg.Index)] = append(out[int(msg.Index)], netip.PrefixFrom(addr, int(msg.Prefixlen)))
			}
		}
		return nil
	})
	return out, err
}

func ipnet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}

// ReconcileCINs makes the kernel hold exactly the desired CINs' addressing:
// it removes leviathan's own addresses, routes and rules (by their
// protocol mark and table range) that no desired CIN explains, in the
// fabric and in the given member namespaces, then applies each desired
// CIN. Run it after Reconcile, which recreates interfaces.
func (f *Fabric) ReconcileCINs(ctx context.Context, desired []*CIN, namespaces []string) (ReconcileReport, error) {
	rep := ReconcileReport{Failed: map[string]error{}}
	tables := map[int]bool{}
	rulesWanted := map[string]bool{} // "table|iif"
	addrsWanted := map[string]map[string]bool{}
	want := func(ns, ifname string, p netip.Prefix) {
		if addrsWanted[ns] == nil {
			addrsWanted[ns] = map[string]bool{}
		}
		addrsWanted[ns][ifname+"|"+p.String()] = true
	}
	for _, c := range desired {
		if len(c.Gateways) > 0 {
			tables[c.Table] = true
		}
		for _, g := range c.Gateways {
			rulesWanted[fmt.Sprintf("%d|%s", c.Table, g.Bridge)] = true
			want(f.path, g.Bridge, g.Addr)
		}
		for _, a := range c.Addresses {
			want(a.Netns, a.IfName, a.Addr)
		}
	}

	rules, err := f.c.h.RuleList(unix.AF_INET)
	if err != nil {
		return rep, fmt.Errorf("reconcile: list rules: %w", err)
	}
	for _, r := range rules {
		if r.Protocol == Proto && !rulesWanted[fmt.Sprintf("%d|%s", r.Table, r.IifName)] {
			if err := f.c.h.RuleDel(&r); err != nil && !errors.Is(err, unix.ENOENT) {
				return rep, fmt.Errorf("reconcile: delete rule: %w", err)
			}
			rep.Removed++
		}
	}
	routes, err := f.c.h.RouteListFiltered(unix.AF_INET, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return rep, fmt.Errorf("reconcile: list routes: %w", err)
	}
	for _, r := range routes {
		if cin.IsOwnTable(r.Table) && !tables[r.Table] {
			if err := f.c.h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
				return rep, fmt.Errorf("reconcile: delete route: %w", err)
			}
			rep.Removed++
		}
	}

	errs := eachNetns(append([]string{f.path}, namespaces...), func(ns string, c *conn) error {
		own, err := c.ownAddrs(ctx)
		if err != nil {
			return err
		}
		ls, err := c.links(ctx)
		if err != nil {
			return err
		}
		names := linkNames(ls)
		for idx, ps := range own {
			for _, p := range ps {
				if addrsWanted[ns][names[idx]+"|"+p.String()] {
					continue
				}
				if err := c.delOwnRoutes(idx); err != nil {
					return err
				}
				if err := c.delAddr(idx, p); err != nil {
					return err
				}
				rep.Removed++
			}
		}
		return nil
	})

	if err := applyEach(ctx, desired, func(c *CIN) string { return c.ID }, func(c *CIN) error { return f.ApplyCIN(ctx, nil, c, nil) }, rep.Failed); err != nil {
		return rep, err
	}
	return rep, errs
}
