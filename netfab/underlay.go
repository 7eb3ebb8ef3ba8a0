package netfab

import (
	"fmt"
	"net/netip"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/leviathan-net/leviathan/graph"
)

// OwnNetns returns a path to the network namespace the calling thread
// is in, held open for the life of the process: the host's own
// namespace, for SetUnderlay, when called before any namespace work.
// /proc/self/ns/net would not do: it is the main thread's, and a
// goroutine that ended locked in another namespace may have left the
// main thread there.
func OwnNetns() (string, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("this thread's network namespace: %w", err)
	}
	return fmt.Sprintf("/proc/self/fd/%d", fd), nil
}

// UnderlayMTU returns the MTU of the interface that holds addr in the
// namespace at nsPath: the underlay of this host's VXLAN.
func UnderlayMTU(nsPath string, addr netip.Addr) (int, error) {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return 0, fmt.Errorf("underlay namespace: %w", err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return 0, fmt.Errorf("underlay namespace: %w", err)
	}
	defer h.Close()
	as, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return 0, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range as {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == addr {
			l, err := h.LinkByIndex(a.LinkIndex)
			if err != nil {
				return 0, fmt.Errorf("link of %s: %w", addr, err)
			}
			return l.Attrs().MTU, nil
		}
	}
	return 0, graph.Errorf(graph.ErrInvalid, "no interface of this host has the address %s", addr)
}

// VXLANOverhead is what VXLAN adds to each frame over an underlay of
// addr's family.
func VXLANOverhead(addr netip.Addr) int {
	if addr.Is4() {
		return vxlanOverhead4
	}
	return vxlanOverhead6
}
