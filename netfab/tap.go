package netfab

import (
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// TAPSpec says how to create a TAP device.
type TAPSpec struct {
	Name   string           // interface name; "" lets the kernel pick tapN
	Group  uint32           // link group marking it as leviathan's
	MAC    net.HardwareAddr // nil: the kernel picks one
	Master string           // bridge to enslave it to, "" for none
}

// TAP is a TAP device (Ethernet frames, no packet information header, no
// virtio-net header) held open by leviathan. The device exists only while
// the TAP is open: Close, or the process ending, removes it, so a crash
// leaves nothing behind in the kernel.
//
// Read and Write go through the Go runtime's poller: a blocked Read
// returns when the TAP is closed or its read deadline passes. A TAP is
// safe for concurrent use.
type TAP struct {
	f     *os.File
	rc    syscall.RawConn
	name  string
	index int
}

// CreateTAP creates a TAP device in the namespace at netnsPath, marked
// with spec.Group, enslaved to spec.Master if set, and up. The device is
// created in place: /dev/net/tun is opened on a thread inside that
// namespace, which is then thrown away; the descriptor keeps working from
// any thread.
func CreateTAP(netnsPath string, spec TAPSpec) (t *TAP, err error) {
	var (
		fd    = -1
		name  string
		index int
	)
	err = inNetns(netnsPath, func() error {
		var err error
		fd, name, index, err = openTAP(spec.Name)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create tap %q in %s: %w", spec.Name, netnsPath, err)
	}
	// Closing the descriptor removes the device: that is the undo.
	f := os.NewFile(uintptr(fd), "tap:"+name)
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("create tap %q: %w", name, err)
	}
	err = withConn(netnsPath, func(c *conn) error {
		master := 0
		if spec.Master != "" {
			l, err := c.linkByName(spec.Master)
			if err != nil {
				return err
			}
			if l == nil {
				return fmt.Errorf("bridge %q: %w", spec.Master, unix.ENODEV)
			}
			master = l.Attrs().Index
		}
		return c.setUpTAP(index, spec.Group, spec.MAC, master)
	})
	if err != nil {
		return nil, fmt.Errorf("create tap %q in %s: %w", name, netnsPath, err)
	}
	return &TAP{f: f, rc: rc, name: name, index: index}, nil
}

// openTAP opens /dev/net/tun and attaches it to a new TAP device in the
// calling thread's namespace, returning a non-blocking descriptor.
func openTAP(name string) (fd int, got string, index int, err error) {
	fd, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return -1, "", 0, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	defer func() {
		if err != nil {
			unix.Close(fd)
		}
	}()
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return -1, "", 0, err
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return -1, "", 0, fmt.Errorf("TUNSETIFF: %w", err)
	}
	got = ifr.Name()
	// The ifindex, asked of an ordinary socket of this namespace.
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, "", 0, err
	}
	defer unix.Close(s)
	q, err := unix.NewIfreq(got)
	if err != nil {
		return -1, "", 0, err
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFINDEX, q); err != nil {
		return -1, "", 0, fmt.Errorf("SIOCGIFINDEX %q: %w", got, err)
	}
	return fd, got, int(q.Uint32()), nil
}

// setUpTAP groups, addresses, enslaves and brings up a link in one
// request.
func (c *conn) setUpTAP(index int, group uint32, mac net.HardwareAddr, master int) error {
	req := c.request(unix.RTM_SETLINK, 0)
	m := upMsg()
	m.Index = int32(index)
	req.AddData(m)
	req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(group)))
	if mac != nil {
		req.AddData(nl.NewRtAttr(unix.IFLA_ADDRESS, []byte(mac)))
	}
	if master > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(master))))
	}
	return c.exec(req)
}

// Name is the device's name.
func (t *TAP) Name() string { return t.name }

// Index is the device's ifindex in its namespace.
func (t *TAP) Index() int { return t.index }

func (t *TAP) String() string { return "tap " + t.name }

// Read reads one frame into b. A frame longer than b is truncated.
func (t *TAP) Read(b []byte) (int, error) { return t.f.Read(b) }

// Write writes one frame.
func (t *TAP) Write(b []byte) (int, error) { return t.f.Write(b) }

// SetReadDeadline makes a blocked or later Read fail once d has passed
// (os.ErrDeadlineExceeded); the zero time clears it.
func (t *TAP) SetReadDeadline(d time.Time) error { return t.f.SetReadDeadline(d) }

// Close closes the descriptor, which removes the device.
func (t *TAP) Close() error { return t.f.Close() }

// readFrames reads frames into b until the device has none left or the
// batch is full, waiting in the poller for the first one.
func (t *TAP) readFrames(b *batch) (int, error) {
	b.n, b.err = 0, nil
	err := t.rc.Read(b.tapRead)
	if b.n > 0 {
		return b.n, nil
	}
	if err == nil {
		err = b.err
	}
	return 0, err
}

// readTAP is the poller callback of readFrames.
func (b *batch) readTAP(fd uintptr) bool {
	for b.n < len(b.bufs) {
		m, err := unix.Read(int(fd), b.bufs[b.n])
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			b.err = err
			return true
		}
		b.frames[b.n] = b.bufs[b.n][:m]
		b.n++
	}
	return b.n > 0
}

// writeFrames writes each frame, one write per frame (a TAP takes no
// batches); a frame the device refuses is skipped.
func (t *TAP) writeFrames(b *batch, frames [][]byte) (sent, bytes int, err error) {
	b.wr, b.next, b.sent, b.bytes = frames, 0, 0, 0
	err = t.rc.Write(b.tapWrite)
	b.wr = nil
	return b.sent, b.bytes, err
}

// writeTAP is the poller callback of writeFrames.
func (b *batch) writeTAP(fd uintptr) bool {
	for b.next < len(b.wr) {
		m, err := unix.Write(int(fd), b.wr[b.next])
		switch err {
		case nil:
			b.sent++
			b.bytes += m
		case unix.EAGAIN:
			return false
		case unix.EINTR:
			continue
		}
		b.next++
	}
	return true
}
