package netfab

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// conn is a pair of rtnetlink sockets bound to one network namespace: the
// library's Handle for queries, and a raw socket for the requests the
// library cannot express in one message (a veth with both ends placed,
// named, grouped, addressed and up at once; deleting a whole link group).
// Both are safe for concurrent use.
type conn struct {
	h   *netlink.Handle
	raw *nl.SocketHandle
}

// dial opens a conn in the namespace at path. The sockets are created on
// a thread moved into the namespace for no longer than that takes, and
// never given back to the runtime in the wrong namespace (see atNetns).
func dial(path string) (*conn, error) {
	var c conn
	err := atNetns(path, func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return fmt.Errorf("netlink in %s: %w", path, err)
		}
		s, err := nl.GetNetlinkSocketAt(netns.None(), netns.None(), unix.NETLINK_ROUTE)
		if err != nil {
			h.Close()
			return fmt.Errorf("netlink in %s: %w", path, err)
		}
		c = conn{h: h, raw: &nl.SocketHandle{Socket: s}}
		return nil
	})
	if err != nil {
		return nil, err
	}
	c.raw.Socket.SetExtAck(true)
	return &c, nil
}

func (c *conn) Close() {
	c.h.Close()
	c.raw.Close()
}

func (c *conn) request(typ uint16, flags int) *nl.NetlinkRequest {
	return &nl.NetlinkRequest{
		NlMsghdr: unix.NlMsghdr{
			Len:   unix.SizeofNlMsghdr,
			Type:  typ,
			Flags: unix.NLM_F_REQUEST | unix.NLM_F_ACK | uint16(flags),
		},
		Sockets: map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: c.raw},
	}
}

func (c *conn) exec(req *nl.NetlinkRequest) error {
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// end describes one end of a link to create.
type end struct {
	Name   string
	Group  uint32
	MAC    net.HardwareAddr // nil: the kernel picks one
	NsFd   int              // -1: the conn's namespace
	Master int              // ifindex of a bridge to enslave to, 0 for none
	MTU    int              // 0: the kernel's default
}

// attrs adds the end's attributes through add.
func (e end) attrs(add func(typ int, data []byte)) {
	add(unix.IFLA_IFNAME, nl.ZeroTerminated(e.Name))
	add(unix.IFLA_GROUP, nl.Uint32Attr(e.Group))
	if e.MAC != nil {
		add(unix.IFLA_ADDRESS, []byte(e.MAC))
	}
	if e.NsFd >= 0 {
		add(unix.IFLA_NET_NS_FD, nl.Uint32Attr(uint32(e.NsFd)))
	}
	if e.Master > 0 {
		add(unix.IFLA_MASTER, nl.Uint32Attr(uint32(e.Master)))
	}
	if e.MTU > 0 {
		add(unix.IFLA_MTU, nl.Uint32Attr(uint32(e.MTU)))
	}
}

func addTo(req *nl.NetlinkRequest) func(int, []byte) {
	return func(typ int, data []byte) { req.AddData(nl.NewRtAttr(typ, data)) }
}

func upMsg() *nl.IfInfomsg {
	m := nl.NewIfInfomsg(unix.AF_UNSPEC)
	m.Flags = unix.IFF_UP
	m.Change = unix.IFF_UP
	return m
}

// addVeth creates a veth pair in one message, each end directly in its
// namespace, named, grouped and addressed; end a is also enslaved and up.
// The peer end b comes up down: the kernel cannot open a veth before its
// pair is linked, which happens after the peer is configured. The kernel
// fails the request whole (EEXIST when either name is taken).
func (c *conn) addVeth(a, b end) error {
	req := c.request(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	req.AddData(upMsg())
	a.attrs(addTo(req))
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("veth"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	peer := data.AddRtAttr(nl.VETH_INFO_PEER, nil)
	nl.NewIfInfomsgChild(peer, unix.AF_UNSPEC)
	b.Master = 0
	b.attrs(func(typ int, data []byte) { peer.AddRtAttr(typ, data) })
	req.AddData(info)
	return c.exec(req)
}

// setUpMaster brings the named link up, enslaved to master when master is
// not 0, in one request.
func (c *conn) setUpMaster(name string, master int) error {
	req := c.request(unix.RTM_SETLINK, 0)
	req.AddData(upMsg())
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	if master > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(master))))
	}
	if err := c.exec(req); err != nil {
		return fmt.Errorf("set %q up: %w", name, err)
	}
	return nil
}

// addBridge creates an up bridge.
func (c *conn) addBridge(e end) error {
	req := c.request(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	req.AddData(upMsg())
	e.attrs(addTo(req))
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bridge"))
	req.AddData(info)
	return c.exec(req)
}

// setGroup moves a link to another link group; one that is gone is not
// an error.
func (c *conn) setGroup(index int, g uint32) error {
	req := c.request(unix.RTM_SETLINK, 0)
	m := nl.NewIfInfomsg(unix.AF_UNSPEC)
	m.Index = int32(index)
	req.AddData(m)
	req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(g)))
	if err := c.exec(req); err != nil && !errors.Is(err, unix.ENODEV) {
		return err
	}
	return nil
}

// delGroup deletes every link of a group in one request: the kernel
// unregisters them as one batch, waiting for one RCU grace period instead
// of one per link. A group with no links is not an error.
func (c *conn) delGroup(g uint32) error {
	req := c.request(unix.RTM_DELLINK, 0)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(g)))
	if err := c.exec(req); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete link group %#x: %w", g, err)
	}
	return nil
}

// delLink deletes one link by name; a missing one is not an error.
func (c *conn) delLink(name string) error {
	req := c.request(unix.RTM_DELLINK, 0)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	if err := c.exec(req); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete link %q: %w", name, err)
	}
	return nil
}

// linkByName returns the named link, or nil when there is none.
func (c *conn) linkByName(name string) (netlink.Link, error) {
	l, err := c.h.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
		return nil, nil
	}
	return l, err
}
