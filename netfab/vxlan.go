package netfab

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/leviathan-net/leviathan/graph"
)

// VXLANSpec joins a CEN's segment on this host to its segments on other
// hosts: a VXLAN device on the CEN's bridge, sending from Local and
// flooding to each of Peers (head-end replication, no multicast). The
// device does not learn where remote MACs live: frames for them go to
// every peer, and a host that is not a peer is never sent anything.
type VXLANSpec struct {
	VNI  uint32 // the CEN's VXLAN network identifier (24 bits)
	Port uint16 // UDP port, this host's and its peers' (4789 by IANA)
	// Local is this host's underlay address, an address of the namespace
	// that carries the underlay: the fabric's, or the one given to
	// SetUnderlay.
	Local netip.Addr
	// Peers are the underlay addresses of the other hosts with members of
	// the CEN. Local among them is ignored.
	Peers []netip.Addr
	// MTU, when not 0, is set on every link of the CEN on this host:
	// bridge, VXLAN device, both ends of members' veths, TAPs. It should
	// be the underlay's MTU less the VXLAN overhead (50 bytes over IPv4,
	// 70 over IPv6); a larger one is refused with an *MTUError.
	MTU int
}

// VXLAN encapsulation overhead: outer IP, UDP, VXLAN and inner Ethernet
// headers.
const (
	vxlanOverhead4 = 20 + 8 + 8 + 14
	vxlanOverhead6 = 40 + 8 + 8 + 14
)

func (v *VXLANSpec) overhead() int {
	if v.Local.Is4() {
		return vxlanOverhead4
	}
	return vxlanOverhead6
}

// validate checks what the kernel would refuse, or take and then fail on.
func (v *VXLANSpec) validate() error {
	switch {
	case v.VNI >= 1<<24:
		return graph.Errorf(graph.ErrInvalid, "VNI %d is not a 24-bit number", v.VNI)
	case v.Port == 0:
		return graph.Errorf(graph.ErrInvalid, "no VXLAN UDP port")
	case !v.Local.IsValid() || v.Local.IsUnspecified() || v.Local.Is4In6():
		return graph.Errorf(graph.ErrInvalid, "underlay address %v is not an IPv4 or IPv6 address", v.Local)
	case v.MTU != 0 && v.MTU < 68:
		return graph.Errorf(graph.ErrInvalid, "MTU %d is below the minimum of 68", v.MTU)
	}
	for _, p := range v.Peers {
		if !p.IsValid() || p.Is4() != v.Local.Is4() || p.Is4In6() {
			return graph.Errorf(graph.ErrInvalid, "peer %v is not an address of the underlay's family (local %v)", p, v.Local)
		}
	}
	return nil
}

// peers are the peers to flood to, without Local and duplicates.
func (v *VXLANSpec) peers() map[netip.Addr]bool {
	m := make(map[netip.Addr]bool, len(v.Peers))
	for _, p := range v.Peers {
		if p != v.Local {
			m[p] = true
		}
	}
	return m
}

// MTUError says that a CEN's MTU does not fit in its underlay.
type MTUError struct {
	CEN      string
	MTU      int        // the CEN's configured MTU
	Underlay int        // the MTU toward Peer
	Dev      string     // the underlay's link toward Peer
	Peer     netip.Addr // the peer it was found for
	Overhead int        // VXLAN's overhead on this underlay
}

func (e *MTUError) Error() string {
	return fmt.Sprintf("CEN %s: MTU %d needs an underlay MTU of at least %d, but the underlay toward %s (%s) has MTU %d: set the CEN's MTU to %d or less",
		e.CEN, e.MTU, e.MTU+e.Overhead, e.Peer, e.Dev, e.Underlay, e.Underlay-e.Overhead)
}

// VXLANName names a CEN's VXLAN device: "lx~" and 12 hex digits of a hash
// of the CEN's ID, like a member's host end ("lv~").
func VXLANName(cenID string) string {
	sum := sha256.Sum256([]byte("vxlan\x00" + cenID + "\x00"))
	return "lx~" + hex.EncodeToString(sum[:])[:12]
}

// checkVXLAN validates c's VXLAN spec and its underlay: Local must be an
// address of the namespace that carries the underlay, with a route there
// to every peer, and the MTU, when set, must fit on each of those routes.
// It only reads.
func (f *Fabric) checkVXLAN(c *CEN) error {
	v := c.VXLAN
	if err := v.validate(); err != nil {
		return fmt.Errorf("CEN %s: %w", c.ID, err)
	}
	uc, where := f.c, "the fabric namespace"
	if u := f.underlay(); u != nil {
		uc, where = u.c, "the underlay namespace "+u.path
	}
	devMTU := map[int]int{}
	devName := map[int]string{}
	for p := range v.peers() {
		rs, err := uc.h.RouteGetWithOptions(p.AsSlice(), &netlink.RouteGetOptions{SrcAddr: v.Local.AsSlice()})
		if err == nil && len(rs) == 0 {
			err = unix.ENETUNREACH
		}
		if err != nil {
			// The kernel says "unreachable" for a source that is not
			// local too.
			return fmt.Errorf("CEN %s: underlay route from %s (an address of %s) to peer %s: %w", c.ID, v.Local, where, p, err)
		}
		if v.MTU == 0 {
			continue
		}
		r := rs[0]
		mtu, ok := devMTU[r.LinkIndex]
		if !ok {
			l, err := uc.h.LinkByIndex(r.LinkIndex)
			if err != nil {
				return fmt.Errorf("CEN %s: underlay link toward %s: %w", c.ID, p, err)
			}
			mtu = l.Attrs().MTU
			devMTU[r.LinkIndex], devName[r.LinkIndex] = mtu, l.Attrs().Name
		}
		if r.MTU > 0 && r.MTU < mtu {
			mtu = r.MTU // a route's own MTU
		}
		if v.MTU+v.overhead() > mtu {
			return &MTUError{CEN: c.ID, MTU: v.MTU, Underlay: mtu, Dev: devName[r.LinkIndex], Peer: p, Overhead: v.overhead()}
		}
	}
	return nil
}

// buildVXLAN gives c's bridge (index br) its VXLAN port, adopting one
// that exists as c wants it and recreating one that does not (VNI, port
// and local address cannot change in place), then sets its flood list
// and the MTU of the CEN's links. A device it creates on a bridge it did
// not is undone through u.
func (f *Fabric) buildVXLAN(ctx context.Context, c *CEN, br int, bridgeCreated bool, u *undo) error {
	name := VXLANName(c.ID)
	index, made, err := f.ensureVXLAN(c, br)
	if err != nil {
		return err
	}
	if made && !bridgeCreated {
		u.push(func() error { return f.c.delLink(name) })
	}
	if err := f.syncFDB(ctx, c.ID, index, c.VXLAN.peers()); err != nil {
		return err
	}
	return f.ensureMTU(ctx, c, br)
}

// ensureVXLAN returns the ifindex of c's VXLAN device, made reports
// whether it was created now.
func (f *Fabric) ensureVXLAN(c *CEN, br int) (index int, made bool, err error) {
	name := VXLANName(c.ID)
	l, err := f.c.linkByName(name)
	if err != nil {
		return 0, false, fmt.Errorf("CEN %s: VXLAN %q: %w", c.ID, name, err)
	}
	if l != nil {
		a := l.Attrs()
		if a.Group != c.Group {
			return 0, false, graph.Errorf(graph.ErrConflict, "CEN %s: the fabric namespace has a %s %q that is not this CEN's", c.ID, l.Type(), name)
		}
		ok, err := f.vxlanIs(l, c.VXLAN)
		if err != nil {
			return 0, false, fmt.Errorf("CEN %s: VXLAN %q: %w", c.ID, name, err)
		}
		if ok {
			if a.MasterIndex != br || a.Flags&net.FlagUp == 0 {
				if err := f.c.setUpMaster(name, br); err != nil {
					return 0, false, fmt.Errorf("CEN %s: %w", c.ID, err)
				}
			}
			return a.Index, false, nil
		}
		if err := f.c.delLink(name); err != nil {
			return 0, false, fmt.Errorf("CEN %s: replace VXLAN: %w", c.ID, err)
		}
	}
	err = f.addVXLAN(end{Name: name, Group: c.Group, NsFd: -1, Master: br, MTU: c.mtu()}, c.VXLAN)
	if errors.Is(err, unix.EEXIST) {
		// The name is free (checked above): another device of the
		// underlay's namespace has this VNI on this port.
		return 0, false, graph.Errorf(graph.ErrConflict, "CEN %s: VNI %d on UDP port %d is another VXLAN device's", c.ID, c.VXLAN.VNI, c.VXLAN.Port)
	}
	if err != nil {
		return 0, false, fmt.Errorf("CEN %s: create VXLAN %q: %w", c.ID, name, err)
	}
	l, err = f.c.linkByName(name)
	if err != nil || l == nil {
		return 0, false, fmt.Errorf("CEN %s: VXLAN %q: %w", c.ID, name, errOr(err, unix.ENODEV))
	}
	return l.Attrs().Index, true, nil
}

// vxlanIs reports whether an existing link of the fabric is a VXLAN
// device configured as v wants, with its socket in the namespace that
// carries the underlay.
func (f *Fabric) vxlanIs(l netlink.Link, v *VXLANSpec) (bool, error) {
	vx, ok := l.(*netlink.Vxlan)
	if !ok || !vxlanIs(vx, v) {
		return false, nil
	}
	// The kernel reports the namespace of a device's socket (its link
	// namespace) only when it is not the device's own, by its ID as
	// the fabric knows it; reading the link gave it one.
	u := f.underlay()
	if u == nil || vx.NetNsID < 0 {
		return u == nil && vx.NetNsID < 0, nil
	}
	id, err := f.c.h.GetNetNsIdByFd(u.fd)
	if err != nil {
		return false, fmt.Errorf("ID of the underlay namespace %s: %w", u.path, err)
	}
	return id == vx.NetNsID, nil
}

// vxlanIs reports whether a device's own settings are as v wants. They
// read the same from the fabric wherever its socket lives.
func vxlanIs(vx *netlink.Vxlan, v *VXLANSpec) bool {
	local, _ := netip.AddrFromSlice(vx.SrcAddr)
	return uint32(vx.VxlanId) == v.VNI && vx.Port == int(v.Port) && local.Unmap() == v.Local &&
		!vx.Learning && len(vx.Group) == 0 && vx.VtepDevIndex == 0 && !vx.FlowBased
}

// addVXLAN creates e, a VXLAN device of the fabric, as addVXLANAt does.
// With a separate underlay the request is the underlay's, carrying the
// fabric as the device's namespace: the kernel creates the device there,
// in place, and keeps its socket in the namespace that asked for it, as
// it does for every link with a socket of its own.
func (f *Fabric) addVXLAN(e end, v *VXLANSpec) error {
	u := f.underlay()
	if u == nil {
		return f.c.addVXLANAt(e, v)
	}
	return withNsFd(f.path, func(fd int) error {
		e.NsFd = fd
		return u.c.addVXLANAt(e, v)
	})
}

// addVXLANAt creates a VXLAN device in one request, grouped, on its
// bridge and up, in the conn's namespace or in e.NsFd's. Its master is
// found in the namespace the device is created in. It has no remote and
// no multicast group: whom it floods to is its FDB's all-zeros entries.
// It does not learn (see VXLANSpec).
func (c *conn) addVXLANAt(e end, v *VXLANSpec) error {
	req := c.request(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	req.AddData(upMsg())
	e.attrs(addTo(req))
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("vxlan"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	data.AddRtAttr(nl.IFLA_VXLAN_ID, nl.Uint32Attr(v.VNI))
	if v.Local.Is4() {
		data.AddRtAttr(nl.IFLA_VXLAN_LOCAL, v.Local.AsSlice())
	} else {
		data.AddRtAttr(nl.IFLA_VXLAN_LOCAL6, v.Local.AsSlice())
	}
	port := make([]byte, 2)
	binary.BigEndian.PutUint16(port, v.Port)
	data.AddRtAttr(nl.IFLA_VXLAN_PORT, port)
	data.AddRtAttr(nl.IFLA_VXLAN_LEARNING, []byte{0})
	req.AddData(info)
	return c.exec(req)
}

// The flood list. A VXLAN device with no remote floods broadcast, unknown
// unicast and multicast to the destinations of its all-zeros FDB entry.
// On leviathan's own device (its link group says so) that list is
// leviathan's: entries for hosts that are not peers are removed, since
// they would carry the CEN's traffic to a host that should no longer see
// it. Entries for particular MACs are someone else's and left alone.
var zeroMAC = net.HardwareAddr{0, 0, 0, 0, 0, 0}

// floodList returns the destinations of the device's all-zeros entries.
func (c *conn) floodList(ctx context.Context, index int) ([]netip.Addr, error) {
	var out []netip.Addr
	err := retryDump(ctx, func() error {
		out = out[:0]
		req := c.request(unix.RTM_GETNEIGH, unix.NLM_F_DUMP)
		req.Flags &^= unix.NLM_F_ACK
		// An ifinfomsg, not an ndmsg: then the kernel dumps only the
		// entries of the device with that index ("bridge fdb show dev").
		m := nl.NewIfInfomsg(unix.AF_BRIDGE)
		m.Index = int32(index)
		req.AddData(m)
		msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWNEIGH)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			n, err := netlink.NeighDeserialize(m)
			if err != nil {
				return err
			}
			if n.LinkIndex != index || n.Flags&netlink.NTF_SELF == 0 || !slices.Equal(n.HardwareAddr, zeroMAC) {
				continue
			}
			if a, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, a.Unmap())
			}
		}
		return nil
	})
	return out, err
}

func floodEntry(index int, dst netip.Addr) *netlink.Neigh {
	return &netlink.Neigh{
		LinkIndex:    index,
		Family:       unix.AF_BRIDGE,
		State:        netlink.NUD_PERMANENT,
		Flags:        netlink.NTF_SELF,
		IP:           dst.AsSlice(),
		HardwareAddr: zeroMAC,
	}
}

// syncFDB makes the device's flood list exactly peers. On failure it puts
// back what it changed.
func (f *Fabric) syncFDB(ctx context.Context, cenID string, index int, peers map[netip.Addr]bool) (err error) {
	have, err := f.c.floodList(ctx, index)
	if err != nil {
		return fmt.Errorf("CEN %s: list VXLAN FDB: %w", cenID, err)
	}
	var u undo
	defer func() {
		if err != nil {
			u.run()
		}
	}()
	had := map[netip.Addr]bool{}
	for _, a := range have {
		had[a] = true
		if peers[a] {
			continue
		}
		if err := f.c.h.NeighDel(floodEntry(index, a)); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("CEN %s: remove VXLAN peer %s: %w", cenID, a, err)
		}
		u.push(func() error { return f.c.h.NeighAppend(floodEntry(index, a)) })
	}
	for _, p := range sortedAddrs(peers) {
		if had[p] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := f.c.h.NeighAppend(floodEntry(index, p)); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("CEN %s: add VXLAN peer %s: %w", cenID, p, err)
		}
		u.push(func() error { return f.c.h.NeighDel(floodEntry(index, p)) })
	}
	return nil
}

func sortedAddrs(m map[netip.Addr]bool) []netip.Addr {
	out := make([]netip.Addr, 0, len(m))
	for a := range m {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}

// VXLANPeers returns the hosts the CEN's VXLAN device floods to now, in
// order; none when it has no device.
func (f *Fabric) VXLANPeers(ctx context.Context, c *CEN) ([]netip.Addr, error) {
	l, err := f.c.linkByName(VXLANName(c.ID))
	if err != nil || l == nil || l.Attrs().Group != c.Group {
		return nil, err
	}
	ps, err := f.c.floodList(ctx, l.Attrs().Index)
	slices.SortFunc(ps, func(a, b netip.Addr) int { return a.Compare(b) })
	return ps, err
}

// ensureMTU sets c's MTU, when it has one, on its links that differ: the
// bridge, its ports of the CEN's group (VXLAN, host ends, TAPs), the
// host ends of relayed members (off the bridge), and the members' ends of
// the host ends it changed (both ends of a veth are set together, so one
// that is right says the other is).
func (f *Fabric) ensureMTU(ctx context.Context, c *CEN, br int) error {
	mtu := c.VXLAN.MTU
	if mtu == 0 {
		return nil
	}
	ports, err := f.c.ports(ctx, br)
	if err != nil {
		return fmt.Errorf("CEN %s: list ports: %w", c.ID, err)
	}
	byHostIf := map[string]Port{}
	for _, p := range c.Ports {
		if p.TAP == nil {
			byHostIf[p.HostIf] = p
			if p.Impair.Relayed() {
				l, err := f.c.linkByName(p.HostIf)
				if err != nil {
					return fmt.Errorf("CEN %s: %w", c.ID, err)
				}
				if l != nil {
					ports[p.HostIf] = l
				}
			}
		}
	}
	for name, l := range ports {
		a := l.Attrs()
		if a.Group != c.Group || a.MTU == mtu {
			continue
		}
		if err := f.c.h.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("CEN %s: set MTU of %q to %d: %w", c.ID, name, mtu, err)
		}
		if p, ok := byHostIf[name]; ok {
			err := withConn(p.Netns, func(pc *conn) error {
				l, err := pc.linkByName(c.Name)
				if err != nil || l == nil || l.Attrs().Group != c.Group {
					return err
				}
				return pc.h.LinkSetMTU(l, mtu)
			})
			if err != nil {
				return &MemberError{Member: p.Member, Err: fmt.Errorf("set MTU of %q to %d: %w", c.Name, mtu, err)}
			}
		}
	}
	b, err := f.c.h.LinkByIndex(br)
	if err != nil {
		return fmt.Errorf("CEN %s: bridge: %w", c.ID, err)
	}
	if b.Attrs().MTU != mtu {
		if err := f.c.h.LinkSetMTU(b, mtu); err != nil {
			return fmt.Errorf("CEN %s: set MTU of bridge %q to %d: %w", c.ID, c.Name, mtu, err)
		}
	}
	return nil
}

// onlyPeersDiffer reports whether next differs from prev in its VXLAN
// peers alone: then only the flood list needs to change.
func onlyPeersDiffer(prev, next *CEN) bool {
	if prev.VXLAN == nil || next.VXLAN == nil {
		return false
	}
	pv, nv := prev.VXLAN, next.VXLAN
	if pv.VNI != nv.VNI || pv.Port != nv.Port || pv.Local != nv.Local || pv.MTU != nv.MTU || prev.ID != next.ID || prev.Name != next.Name || prev.Group != next.Group ||
		!slices.Equal(prev.BridgeMAC, next.BridgeMAC) || prev.Plan != next.Plan || len(prev.Ports) != len(next.Ports) {
		return false
	}
	for i, p := range prev.Ports {
		q := next.Ports[i]
		if p.Member != q.Member || p.Netns != q.Netns || p.HostIf != q.HostIf || !slices.Equal(p.MAC, q.MAC) ||
			p.TAP != q.TAP || !reflect.DeepEqual(p.Impair, q.Impair) {
			return false
		}
	}
	return true
}

// applyPeers changes a made CEN's flood list to next's peers, touching
// nothing else; with no device to change it builds the bridge whole.
func (f *Fabric) applyPeers(ctx context.Context, next *CEN) error {
	if err := f.checkVXLAN(next); err != nil {
		return err
	}
	l, err := f.c.linkByName(VXLANName(next.ID))
	if err != nil {
		return fmt.Errorf("CEN %s: %w", next.ID, err)
	}
	if l == nil || l.Attrs().Group != next.Group {
		return f.buildBridge(ctx, next)
	}
	if ok, err := f.vxlanIs(l, next.VXLAN); err != nil || !ok {
		if err != nil {
			return fmt.Errorf("CEN %s: %w", next.ID, err)
		}
		return f.buildBridge(ctx, next)
	}
	return f.syncFDB(ctx, next.ID, l.Attrs().Index, next.VXLAN.peers())
}
