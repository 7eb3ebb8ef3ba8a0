package netfab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

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
