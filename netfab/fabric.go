// Package netfab is the only package that touches the kernel: network
// namespaces, bridges, veth pairs, addresses, routes and rules, TAPs and
// the userspace frame relay, packet capture, all through netlink (and
// /dev/net/tun, AF_PACKET) from namespace-bound sockets; no shell, and no
// thread of the process is switched into another namespace except briefly
// to open a socket or for good on a thread that is then thrown away.
//
// netfab realizes a host's part of the graph. Every operation is
// idempotent: applying a CEN that already exists adopts what is there and
// repairs what is missing. Every link it creates carries the CEN's link
// group (cen.GroupBase and up), which is how it tells its own links from
// anyone else's; it never changes a link outside that range.
//
// Threading: a Fabric is safe for concurrent use. Callers serialize
// operations on the same CEN; operations on different CENs may run at once.
package netfab

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// Fabric is the fabric network namespace that holds bridges and the host
// ends of veths, owned by leviathan.
type Fabric struct {
	path string
	c    *conn
	rel  relays   // impaired members' relays
	tp   tapPorts // TAP members' TAPs

	ulMu sync.Mutex
	ul   *underlay // guarded by ulMu; nil: the fabric carries the underlay
}

// underlay is the namespace that carries a fabric's VXLAN traffic when it
// is not the fabric itself: there the VXLAN devices' UDP sockets live and
// their underlay addresses and routes are looked up.
type underlay struct {
	path string
	c    *conn
	fd   int // the namespace, open, to name it to the kernel
}

func (u *underlay) close() {
	u.c.Close()
	unix.Close(u.fd)
}

// OpenFabric opens the fabric namespace name, creating it if needed.
func OpenFabric(ctx context.Context, name string) (*Fabric, error) {
	path := NetnsPath(name)
	if err := CreateNetns(ctx, []string{path}, 1); err != nil {
		return nil, fmt.Errorf("fabric namespace: %w", err)
	}
	// The fabric carries IPv4 between CENs; IPv6 on its hundreds of links
	// would only cost addresses, DAD and MLD on every port created.
	// These are the fabric namespace's own settings, not the host's.
	if err := setSysctls(path, map[string]string{
		"net/ipv6/conf/all/disable_ipv6":     "1",
		"net/ipv6/conf/default/disable_ipv6": "1",
	}); err != nil {
		return nil, fmt.Errorf("fabric namespace: %w", err)
	}
	c, err := dial(path)
	if err != nil {
		return nil, fmt.Errorf("fabric namespace: %w", err)
	}
	return &Fabric{path: path, c: c}, nil
}

// Path is the fabric namespace's path.
func (f *Fabric) Path() string { return f.path }

// Close stops the relays of impaired links (their TAPs go with them:
// links are cut until a reconcile makes them anew) and releases the
// fabric's sockets; the namespace stays.
func (f *Fabric) Close() {
	f.rel.mu.Lock()
	prs := f.rel.m
	f.rel.m = nil
	f.rel.mu.Unlock()
	for _, pr := range prs {
		pr.relay.Close()
	}
	f.tp.mu.Lock()
	refs := f.tp.m
	f.tp.m = nil
	f.tp.mu.Unlock()
	for _, ref := range refs {
		ref.port.DetachTAP()
	}
	f.ulMu.Lock()
	if f.ul != nil {
		f.ul.close()
		f.ul = nil
	}
	f.ulMu.Unlock()
	f.c.Close()
}

// SetUnderlay says which network namespace carries the underlay of the
// fabric's CENs that span hosts: nsPath is a namespace file such as
// /proc/self/ns/net (the daemon's own namespace, where the host's
// interfaces are) or /run/netns/NAME. A CEN's VXLAN device is then made
// from that namespace straight into the fabric, so the device is in the
// fabric, on the CEN's bridge, while its UDP socket is in nsPath and
// sends from an address of nsPath (VXLANSpec.Local) along nsPath's
// routes. Nothing in nsPath is changed. "" (the default), or the fabric's
// own namespace, makes the fabric carry the underlay itself.
//
// Set it before realizing CENs with VXLAN, not while operations run. A
// device made for another underlay is made anew on its next Apply.
func (f *Fabric) SetUnderlay(nsPath string) error {
	var u *underlay
	if nsPath != "" {
		var err error
		if u, err = openUnderlay(f.path, nsPath); err != nil {
			return err
		}
	}
	f.ulMu.Lock()
	old := f.ul
	f.ul = u
	f.ulMu.Unlock()
	if old != nil {
		old.close()
	}
	return nil
}

// openUnderlay opens the namespace at path as an underlay of the fabric
// at fabric; nil when it is the fabric's own.
func openUnderlay(fabric, path string) (*underlay, error) {
	fd, err := openNs(path)
	if err != nil {
		return nil, fmt.Errorf("underlay: %w", err)
	}
	var st, fst unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("underlay: stat %s: %w", path, err)
	}
	if err := unix.Stat(fabric, &fst); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("underlay: stat %s: %w", fabric, err)
	}
	if st.Dev == fst.Dev && st.Ino == fst.Ino {
		unix.Close(fd)
		return nil, nil // the fabric itself
	}
	// Through the fd: the namespace checked above, even if path is
	// remounted meanwhile.
	c, err := dial(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("underlay: %w", err)
	}
	return &underlay{path: path, c: c, fd: fd}, nil
}

// underlay returns the namespace carrying the underlay, nil for the
// fabric.
func (f *Fabric) underlay() *underlay {
	f.ulMu.Lock()
	defer f.ulMu.Unlock()
	return f.ul
}

// Remove closes the fabric and deletes its namespace with everything in it.
func (f *Fabric) Remove() error {
	f.Close()
	return DeleteNetns(f.path)
}

// openNs opens a namespace file for passing to the kernel as a netns fd.
func openNs(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open netns %s: %w", path, err)
	}
	return fd, nil
}

// NetnsPath is the path of the named network namespace name.
func (f *Fabric) NetnsPath(name string) string { return NetnsPath(name) }

// IsNetns reports whether path is a mounted network namespace.
func (f *Fabric) IsNetns(path string) bool { return IsNetns(path) }

// CreateNetns creates the named namespaces in paths that do not exist,
// on two throwaway threads.
func (f *Fabric) CreateNetns(ctx context.Context, paths []string) error {
	return CreateNetns(ctx, paths, 2)
}

// DeleteNetns deletes a named namespace with its links; a missing one is
// not an error.
func (f *Fabric) DeleteNetns(path string) error { return DeleteNetns(path) }
