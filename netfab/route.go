package netfab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// RulePriority is the priority of the fabric's per-CIN rules; the
// fabric's local table rule moves behind them so that a CIN cannot even
// reach another CIN's gateways.
const (
	RulePriority      = 1000
	LocalRulePriority = 32000
)

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

func ipnet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}
