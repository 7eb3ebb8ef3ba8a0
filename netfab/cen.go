package netfab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/leviathan-net/leviathan/cen"
	"github.com/leviathan-net/leviathan/graph"
)

// CEN is what the kernel should hold for one CEN on this host.
type CEN struct {
	ID        string // for messages
	Name      string // the bridge in the fabric, the interface in members
	Group     uint32 // link group of every link of the CEN
	BridgeMAC net.HardwareAddr
	// Ports are the members that run now; Plan is the wiring of every
	// member, running or not (taken from Ports when empty). A wire with
	// one end absent holds nothing until that end runs again.
	Plan  graph.Wiring
	Ports []Port
	// VXLAN, when set, joins the CEN's bridge here to its bridges on
	// other hosts. Such a CEN is a bridge whatever its members here, even
	// none: a host with no member of it may still need its bridge (to
	// route a CIN for the other hosts).
	VXLAN *VXLANSpec
}

// Port is one member's attachment to a CEN.
type Port struct {
	Member string // for messages
	Netns  string // the member's network namespace
	HostIf string // the fabric end of its veth, on a bridge CEN
	MAC    net.HardwareAddr
	// Impair, when set, is what its link suffers (on a bridge CEN).
	Impair *Impairment
	// TAP, when set, makes the member a TAP member: it has no namespace
	// (Netns is empty) and no veth; a TAP on the bridge is handed to it.
	TAP TAPPort
}

// Wiring is the CEN's wiring; a nil CEN has none.
func (c *CEN) Wiring() graph.Wiring {
	if c == nil {
		return graph.WiringNone
	}
	if c.VXLAN != nil {
		return graph.WiringBridge
	}
	if c.Plan != graph.WiringNone {
		return c.Plan
	}
	return cen.Plan(len(c.Ports))
}

// MemberError tells which member of a CEN an operation failed on.
type MemberError struct {
	Member string
	Err    error
}

func (e *MemberError) Error() string { return fmt.Sprintf("member %s: %v", e.Member, e.Err) }
func (e *MemberError) Unwrap() error { return e.Err }

// Apply changes the kernel from holding prev (nil: nothing known) to
// holding next, adopting what already exists and repairing what is
// missing. On failure it undoes what it created and puts prev back, so the
// kernel holds prev again; if even that fails the error says so.
func (f *Fabric) Apply(ctx context.Context, prev, next *CEN) error {
	pw, nw := prev.Wiring(), next.Wiring()
	if pw == graph.WiringBridge && nw == graph.WiringBridge {
		if onlyPeersDiffer(prev, next) {
			// Hosts joined or left: the flood list, nothing else.
			return f.applyPeers(ctx, next)
		}
		// Same bridge, ports added and removed.
		return f.buildBridge(ctx, next)
	}
	if pw != graph.WiringNone {
		if err := f.Destroy(ctx, prev); err != nil {
			return err
		}
	}
	err := f.build(ctx, next)
	if err != nil && pw != graph.WiringNone {
		if rerr := f.build(context.WithoutCancel(ctx), prev); rerr != nil {
			return fmt.Errorf("%w (restoring the previous wiring failed too: %w)", err, rerr)
		}
	}
	return err
}

// Destroy removes every kernel object of the CEN. Destroying what does
// not exist is not an error.
func (f *Fabric) Destroy(ctx context.Context, c *CEN) error {
	if c == nil {
		return nil
	}
	// Bridge, host ends and with them the members' ends: one request.
	f.closeRelaysOf(c.Group)
	f.detachTAPPortsOf(c.Group)
	if err := f.c.delGroup(c.Group); err != nil {
		return fmt.Errorf("destroy CEN %s: %w", c.ID, err)
	}
	if c.Wiring() == graph.WiringWire {
		// Deleting one end of the pair deletes both.
		for _, p := range c.Ports {
			if !IsNetns(p.Netns) {
				continue
			}
			err := withConn(p.Netns, func(pc *conn) error { return pc.delGroup(c.Group) })
			if err != nil {
				return fmt.Errorf("destroy CEN %s: %w", c.ID, &MemberError{Member: p.Member, Err: err})
			}
			break
		}
	}
	return nil
}

// DestroyMany removes every kernel object of many CENs at once. Their
// fabric links are gathered in cen.DyingGroup and deleted in one request:
// the kernel then unregisters them as one batch, paying its grace periods
// once instead of once per CEN. Wires are destroyed one by one (they have
// nothing in the fabric).
func (f *Fabric) DestroyMany(ctx context.Context, cs []*CEN) error {
	groups := map[uint32]bool{}
	for _, c := range cs {
		groups[c.Group] = true
		f.closeRelaysOf(c.Group)
		f.detachTAPPortsOf(c.Group)
		if c.Wiring() == graph.WiringWire {
			if err := f.Destroy(ctx, c); err != nil {
				return err
			}
		}
	}
	ls, err := f.c.links(ctx)
	if err != nil {
		return fmt.Errorf("destroy: list fabric links: %w", err)
	}
	n := 0
	for _, l := range ls {
		a := l.Attrs()
		if !groups[a.Group] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := f.c.setGroup(a.Index, cen.DyingGroup); err != nil {
			return fmt.Errorf("destroy: %q: %w", a.Name, err)
		}
		n++
	}
	if n == 0 {
		return nil
	}
	if err := f.c.delGroup(cen.DyingGroup); err != nil {
		return fmt.Errorf("destroy: %w", err)
	}
	return nil
}

func (f *Fabric) build(ctx context.Context, c *CEN) error {
	switch c.Wiring() {
	case graph.WiringBridge:
		return f.buildBridge(ctx, c)
	case graph.WiringWire:
		return f.buildWire(c)
	}
	return nil
}

// undo is a stack of actions that reverse what an operation created.
type undo []func() error

func (u *undo) push(fn func() error) { *u = append(*u, fn) }

func (u undo) run() {
	for i := len(u) - 1; i >= 0; i-- {
		u[i]() // best effort: the original error is what gets reported
	}
}

// buildBridge makes the kernel hold exactly c's bridge and ports: it
// creates what is missing and removes its own ports no longer wanted.
func (f *Fabric) buildBridge(ctx context.Context, c *CEN) (err error) {
	var u undo
	defer func() {
		if err != nil {
			u.run()
		}
	}()
	if c.VXLAN != nil {
		if err := f.checkVXLAN(c); err != nil {
			return err
		}
	}
	br, created, err := f.ensureBridge(c, &u)
	if err != nil {
		return err
	}
	stray := map[string]netlink.Link{}
	if created {
		u.push(func() error { return f.c.delGroup(c.Group) })
	} else if stray, err = f.c.ports(ctx, br); err != nil {
		return fmt.Errorf("CEN %s: list ports: %w", c.ID, err)
	}
	if c.VXLAN != nil {
		delete(stray, VXLANName(c.ID)) // buildVXLAN's
	}
	for _, p := range c.Ports {
		if err := ctx.Err(); err != nil {
			return err
		}
		if p.TAP != nil {
			name := TAPPortName(p.HostIf)
			_, exists := stray[name]
			delete(stray, name)
			if err := f.ensureTAPPort(c, p, exists); err != nil {
				return &MemberError{Member: p.Member, Err: err}
			}
			continue
		}
		if p.Impair.Relayed() {
			delete(stray, RelayTAPName(p.HostIf)) // its relay's TAP stays
		}
		if l, ok := stray[p.HostIf]; ok {
			delete(stray, p.HostIf)
			live, err := f.portIsLive(c, p)
			if err != nil {
				return &MemberError{Member: p.Member, Err: err}
			}
			if live {
				if p.Impair == nil && l.Attrs().Flags&net.FlagUp != 0 && !f.hasRelay(p.HostIf) {
					continue // a plain port, as it should be
				}
				if err := f.setPortMode(c, br, p); err != nil {
					return &MemberError{Member: p.Member, Err: err}
				}
				continue
			}
		}
		made, err := f.addPort(c, br, p)
		if err != nil {
			return &MemberError{Member: p.Member, Err: err}
		}
		if made && !created {
			u.push(func() error { return f.c.delLink(p.HostIf) })
		}
		if !made || p.Impair != nil || f.hasRelay(p.HostIf) {
			if err := f.setPortMode(c, br, p); err != nil {
				return &MemberError{Member: p.Member, Err: err}
			}
		}
	}
	for name, l := range stray {
		if l.Attrs().Group != c.Group {
			continue // someone else's link on our bridge: not ours to touch
		}
		if isTAPPort(name) && f.detachTAPPort(name) {
			continue // its holder closed it, and the device went with it
		}
		if isRelayTAP(name) {
			// The relay of a member that left: its fabric end goes too
			// (with the member's end), and the TAP with the relay.
			if hostIf, ok := f.hostIfOfTAP(name); ok {
				f.closeRelay(hostIf)
				if err := f.c.delLink(hostIf); err != nil {
					return fmt.Errorf("CEN %s: %w", c.ID, err)
				}
				continue
			}
		}
		if err := f.c.delLink(name); err != nil {
			return fmt.Errorf("CEN %s: %w", c.ID, err)
		}
	}
	if c.VXLAN != nil {
		return f.buildVXLAN(ctx, c, br, created, &u)
	}
	return nil
}

// mtu is the MTU of the CEN's links, 0 for the kernel's default.
func (c *CEN) mtu() int {
	if c.VXLAN == nil {
		return 0
	}
	return c.VXLAN.MTU
}

// ensureBridge creates c's bridge, or adopts it when it exists already,
// with c's MAC: an adopted bridge whose MAC differs is given c's in place,
// so it and its ports keep their ifindexes; its old MAC is put back
// through u.
func (f *Fabric) ensureBridge(c *CEN, u *undo) (index int, created bool, err error) {
	err = f.c.addBridge(end{Name: c.Name, Group: c.Group, MAC: c.BridgeMAC, NsFd: -1, MTU: c.mtu()})
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return 0, false, fmt.Errorf("CEN %s: create bridge %q: %w", c.ID, c.Name, err)
	}
	created = err == nil
	l, err := f.c.linkByName(c.Name)
	if err != nil || l == nil {
		return 0, false, fmt.Errorf("CEN %s: bridge %q: %w", c.ID, c.Name, errOr(err, unix.ENODEV))
	}
	a := l.Attrs()
	if l.Type() != "bridge" || a.Group != c.Group {
		return 0, false, graph.Errorf(graph.ErrConflict, "CEN %s: the fabric namespace has a %s %q that is not this CEN's bridge", c.ID, l.Type(), c.Name)
	}
	if c.BridgeMAC != nil && !bytes.Equal(a.HardwareAddr, c.BridgeMAC) {
		if err := f.c.h.LinkSetHardwareAddr(l, c.BridgeMAC); err != nil {
			return 0, false, fmt.Errorf("CEN %s: set MAC of bridge %q to %s: %w", c.ID, c.Name, c.BridgeMAC, err)
		}
		old := a.HardwareAddr
		u.push(func() error { return f.c.h.LinkSetHardwareAddr(l, old) })
	}
	if a.Flags&net.FlagUp == 0 {
		if err := f.c.h.LinkSetUp(l); err != nil {
			return 0, false, fmt.Errorf("CEN %s: set bridge up: %w", c.ID, err)
		}
	}
	return a.Index, created, nil
}

// addPort creates a member's veth: one end in the member's namespace,
// the other in the fabric on the bridge. It adopts a host end left from
// before (made false).
func (f *Fabric) addPort(c *CEN, bridge int, p Port) (made bool, err error) {
	if p.Impair.Relayed() {
		bridge = 0 // a relay joins it to the bridge: setPortMode
	}
	for attempt := 0; ; attempt++ {
		err := withNsFd(p.Netns, func(fd int) error {
			return f.c.addVeth(
				end{Name: c.Name, Group: c.Group, MAC: p.MAC, NsFd: fd, MTU: c.mtu()},
				end{Name: p.HostIf, Group: c.Group, NsFd: -1, MTU: c.mtu()})
		})
		if err == nil {
			if err := f.c.setUpMaster(p.HostIf, bridge); err != nil {
				f.c.delLink(p.HostIf)
				return false, err
			}
			return true, nil
		}
		if !errors.Is(err, unix.EEXIST) || attempt > 0 {
			return false, fmt.Errorf("create veth %q: %w", c.Name, err)
		}
		// One of the two names is taken. Our own host end: adopt it.
		l, lerr := f.c.linkByName(p.HostIf)
		if lerr != nil {
			return false, lerr
		}
		if l != nil && l.Attrs().Group == c.Group {
			if live, err := f.portIsLive(c, p); err != nil || !live {
				if err != nil {
					return false, err
				}
				continue // a stale host end, deleted: create the pair again
			}
			a := l.Attrs()
			if bridge > 0 && (a.MasterIndex != bridge || a.Flags&net.FlagUp == 0) {
				if err := f.c.setUpMaster(p.HostIf, bridge); err != nil {
					return false, err
				}
			}
			return false, nil
		}
		// Else the member has a link by the CEN's name: if it is ours (an
		// old wire of this CEN) remove it and try again.
		if err := removeOwn(p.Netns, c.Name, c.Group); err != nil {
			return false, err
		}
	}
}

// portIsLive reports whether a member's host end in the fabric still has
// its other end in the member's namespace. It may not: a namespace that
// is deleted takes its links with it only when the kernel gets to clean
// it up, after the namespace is gone, and a restarted container has a new
// namespace. A host end left like that is deleted here, to be made anew.
func (f *Fabric) portIsLive(c *CEN, p Port) (bool, error) {
	l, err := ownLink(p.Netns, c.Name, c.Group)
	if err != nil || l != nil {
		return l != nil, err
	}
	return false, f.c.delLink(p.HostIf)
}

// buildWire makes the kernel hold c's single veth pair between its two
// members, adopting an existing one.
func (f *Fabric) buildWire(c *CEN) error {
	// A wire has nothing in the fabric: anything of the CEN's there is
	// left from a bridge it was.
	if err := f.c.delGroup(c.Group); err != nil {
		return fmt.Errorf("CEN %s: %w", c.ID, err)
	}
	if len(c.Ports) < 2 {
		// One end does not run: its end went with its namespace, and
		// the other end, if left, is removed until both run.
		for _, p := range c.Ports {
			if err := removeOwn(p.Netns, c.Name, c.Group); err != nil {
				return &MemberError{Member: p.Member, Err: err}
			}
		}
		return nil
	}
	a, b := c.Ports[0], c.Ports[1]
	for attempt := 0; ; attempt++ {
		err := withNsFd(a.Netns, func(fa int) error {
			return withNsFd(b.Netns, func(fb int) error {
				return f.c.addVeth(
					end{Name: c.Name, Group: c.Group, MAC: a.MAC, NsFd: fa},
					end{Name: c.Name, Group: c.Group, MAC: b.MAC, NsFd: fb})
			})
		})
		if err == nil {
			err = withConn(b.Netns, func(bc *conn) error { return bc.setUpMaster(c.Name, 0) })
			if err != nil {
				removeOwn(a.Netns, c.Name, c.Group)
				return &MemberError{Member: b.Member, Err: err}
			}
			return nil
		}
		if !errors.Is(err, unix.EEXIST) || attempt > 0 {
			return fmt.Errorf("CEN %s: create veth %q between %s and %s: %w", c.ID, c.Name, a.Member, b.Member, err)
		}
		la, err := ownLink(a.Netns, c.Name, c.Group)
		if err != nil {
			return &MemberError{Member: a.Member, Err: err}
		}
		lb, err := ownLink(b.Netns, c.Name, c.Group)
		if err != nil {
			return &MemberError{Member: b.Member, Err: err}
		}
		if la != nil && lb != nil && la.Attrs().ParentIndex == lb.Attrs().Index && lb.Attrs().ParentIndex == la.Attrs().Index {
			// The wire is there already; make sure both ends are up.
			for _, p := range c.Ports {
				if err := withConn(p.Netns, func(pc *conn) error { return pc.setUpMaster(c.Name, 0) }); err != nil {
					return &MemberError{Member: p.Member, Err: err}
				}
			}
			return nil
		}
		// Ends of some older wiring of this CEN: remove them, try again.
		for _, p := range c.Ports {
			if err := removeOwn(p.Netns, c.Name, c.Group); err != nil {
				return &MemberError{Member: p.Member, Err: err}
			}
		}
	}
}

// ownLink returns the link name in the namespace at path when it carries
// group, nil when there is no such link, and a conflict error when a link
// by that name belongs to someone else.
func ownLink(path, name string, group uint32) (l netlink.Link, err error) {
	err = withConn(path, func(c *conn) error {
		l, err = c.linkByName(name)
		return err
	})
	if err != nil {
		return nil, err
	}
	if l != nil && l.Attrs().Group != group {
		return nil, graph.Errorf(graph.ErrConflict, "it already has an interface %q that leviathan does not own", name)
	}
	return l, nil
}

// removeOwn deletes the link name from the namespace at path if it is
// leviathan's (carries group); a foreign one is a conflict.
func removeOwn(path, name string, group uint32) error {
	l, err := ownLink(path, name, group)
	if err != nil || l == nil {
		return err
	}
	return withConn(path, func(c *conn) error { return c.delLink(name) })
}

func withConn(path string, fn func(*conn) error) error {
	c, err := dial(path)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c)
}

func withNsFd(path string, fn func(fd int) error) error {
	fd, err := openNs(path)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return fn(fd)
}

// ports returns the links enslaved to the bridge with index master, by
// name, filtered by the kernel.
func (c *conn) ports(ctx context.Context, master int) (map[string]netlink.Link, error) {
	out := map[string]netlink.Link{}
	err := retryDump(ctx, func() error {
		clear(out)
		req := c.request(unix.RTM_GETLINK, unix.NLM_F_DUMP)
		req.Flags &^= unix.NLM_F_ACK
		req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
		req.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(master))))
		msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			l, err := netlink.LinkDeserialize(nil, m)
			if err != nil {
				return err
			}
			if l.Attrs().MasterIndex == master {
				out[l.Attrs().Name] = l
			}
		}
		return nil
	})
	return out, err
}

// links dumps every link of the conn's namespace.
func (c *conn) links(ctx context.Context) (ls []netlink.Link, err error) {
	err = retryDump(ctx, func() error {
		ls, err = c.h.LinkList()
		return err
	})
	return ls, err
}

// retryDump runs a dump again while it fails for a transient reason: the
// set changed under it (the kernel interrupts such a dump), or a signal or
// a busy kernel cut it short. It waits a little longer before each try,
// a few times at most, and no longer than ctx allows.
func retryDump(ctx context.Context, fn func() error) error {
	const tries = 5
	wait := time.Millisecond
	for try := 1; ; try++ {
		err := fn()
		if err == nil || !transient(err) || try == tries {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (stopped retrying: %w)", err, context.Cause(ctx))
		case <-t.C:
		}
		wait *= 2
	}
}

// transient reports whether a dump that failed with err may succeed if
// tried again.
func transient(err error) bool {
	return errors.Is(err, netlink.ErrDumpInterrupted) || errors.Is(err, unix.EINTR) ||
		errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EAGAIN)
}

func errOr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}
