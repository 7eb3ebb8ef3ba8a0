package netfab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// UDPTunnel is one end of a GNS3-style UDP tunnel: each datagram carries
// one raw Ethernet frame, with no header and no FCS. It receives on a
// bound local port from anyone and sends to a remote address that can be
// changed while frames flow.
//
// Frames move with recvmmsg and sendmmsg, a batch per system call, into
// and out of buffers the caller owns: nothing is allocated per frame.
// (golang.org/x/net/ipv4's ReadBatch allocates a source address per
// datagram, which at a million small frames a second is most of the
// garbage.) A UDPTunnel is safe for concurrent use.
type UDPTunnel struct {
	c      *net.UDPConn
	rc     syscall.RawConn
	family int
	local  netip.AddrPort
	remote atomic.Pointer[udpRemote]
}

// socketBuffer is the size asked for each tunnel socket's buffers.
const socketBuffer = 1 << 20

// udpRemote is a remote address in the socket's own sockaddr form.
type udpRemote struct {
	ap  netip.AddrPort
	sa  [unix.SizeofSockaddrInet6]byte
	len uint32
}

// ListenUDPTunnel binds local ("127.0.0.1:20000"; port 0 picks one) in the
// calling process's network namespace and sends to remote ("" for
// nowhere yet: frames to send are then dropped).
func ListenUDPTunnel(local, remote string) (*UDPTunnel, error) {
	la, err := net.ResolveUDPAddr("udp", local)
	if err != nil {
		return nil, fmt.Errorf("udp tunnel: local %q: %w", local, err)
	}
	c, err := net.ListenUDP("udp", la)
	if err != nil {
		return nil, fmt.Errorf("udp tunnel: %w", err)
	}
	u := &UDPTunnel{c: c, local: c.LocalAddr().(*net.UDPAddr).AddrPort()}
	if u.rc, err = c.SyscallConn(); err != nil {
		c.Close()
		return nil, fmt.Errorf("udp tunnel: %w", err)
	}
	var serr error
	err = u.rc.Control(func(fd uintptr) {
		// Room for bursts; the FORCE options pass rmem_max and wmem_max,
		// and fail harmlessly without CAP_NET_ADMIN.
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, socketBuffer) != nil {
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, socketBuffer)
		}
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, socketBuffer) != nil {
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, socketBuffer)
		}
		var sa unix.Sockaddr
		if sa, serr = unix.Getsockname(int(fd)); serr == nil {
			if _, ok := sa.(*unix.SockaddrInet6); ok {
				u.family = unix.AF_INET6
			} else {
				u.family = unix.AF_INET
			}
		}
	})
	if err = errors.Join(err, serr); err != nil {
		c.Close()
		return nil, fmt.Errorf("udp tunnel: %w", err)
	}
	if err := u.SetRemote(remote); err != nil {
		c.Close()
		return nil, err
	}
	return u, nil
}

// LocalAddr is the bound address.
func (u *UDPTunnel) LocalAddr() netip.AddrPort { return u.local }

// Remote is where frames go; invalid when nowhere.
func (u *UDPTunnel) Remote() netip.AddrPort {
	if r := u.remote.Load(); r != nil {
		return r.ap
	}
	return netip.AddrPort{}
}

// SetRemote changes where frames go, from the next batch on, without
// touching the socket. "" sends nowhere.
func (u *UDPTunnel) SetRemote(remote string) error {
	if remote == "" {
		u.remote.Store(nil)
		return nil
	}
	ra, err := net.ResolveUDPAddr("udp", remote)
	if err != nil {
		return fmt.Errorf("udp tunnel: remote %q: %w", remote, err)
	}
	ap := ra.AddrPort()
	r := &udpRemote{ap: ap}
	ip := ap.Addr()
	switch {
	case u.family == unix.AF_INET && ip.Unmap().Is4():
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&r.sa[0]))
		sa.Family = unix.AF_INET
		sa.Addr = ip.Unmap().As4()
		putPort(&sa.Port, ap.Port())
		r.len = unix.SizeofSockaddrInet4
	case u.family == unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&r.sa[0]))
		sa.Family = unix.AF_INET6
		sa.Addr = ip.As16() // an IPv4 address becomes IPv4-mapped
		putPort(&sa.Port, ap.Port())
		r.len = unix.SizeofSockaddrInet6
	default:
		return fmt.Errorf("udp tunnel: remote %s from an IPv4 socket: %w", ap, unix.EAFNOSUPPORT)
	}
	u.remote.Store(r)
	return nil
}

// putPort stores p in network byte order.
func putPort(dst *uint16, p uint16) {
	b := (*[2]byte)(unsafe.Pointer(dst))
	b[0], b[1] = byte(p>>8), byte(p)
}

func (u *UDPTunnel) String() string { return "udp " + u.local.String() + "->" + u.Remote().String() }

// SetReadDeadline makes a blocked or later read fail once d has passed;
// the zero time clears it.
func (u *UDPTunnel) SetReadDeadline(d time.Time) error { return u.c.SetReadDeadline(d) }

// Close closes the socket.
func (u *UDPTunnel) Close() error { return u.c.Close() }

// readFrames receives up to a batch of datagrams with one recvmmsg,
// waiting in the poller for the first one.
func (u *UDPTunnel) readFrames(b *batch) (int, error) { return b.readMmsg(u.rc) }

// readMmsg receives up to a batch of datagrams (or packets) from a
// socket with one recvmmsg, waiting in the poller for the first one.
func (b *batch) readMmsg(rc syscall.RawConn) (int, error) {
	b.whs = b.mmsgs(nil, nil)
	b.n, b.err = 0, nil
	err := rc.Read(b.udpRead)
	if err == nil {
		err = b.err
	}
	if err != nil {
		return 0, err
	}
	// A datagram longer than a buffer is cut short: not a frame to pass
	// on. Frames shorter than an Ethernet header are no frames either.
	k := 0
	for i, h := range b.whs[:b.n] {
		if h.Hdr.Flags&unix.MSG_TRUNC != 0 || h.Len < ethHeaderLen {
			b.bad++
			continue
		}
		b.frames[k] = b.bufs[i][:h.Len]
		k++
	}
	return k, nil
}

// readUDP is the poller callback of readFrames.
func (b *batch) readUDP(fd uintptr) bool {
	r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.whs[0])), uintptr(len(b.whs)), unix.MSG_DONTWAIT, 0, 0)
	switch e {
	case 0:
		b.n = int(r)
		return true
	case unix.EAGAIN, unix.EINTR:
		return false
	default:
		b.err = e
		return true
	}
}

// writeFrames sends frames to the remote with as few sendmmsg calls as
// the socket allows. A frame the kernel refuses (no route, say) is
// skipped, and with no remote nothing is sent.
func (u *UDPTunnel) writeFrames(b *batch, frames [][]byte) (sent, bytes int, err error) {
	r := u.remote.Load()
	if r == nil {
		return 0, 0, nil
	}
	b.whs = b.mmsgs(frames, r)
	b.next, b.sent, b.bytes = 0, 0, 0
	err = u.rc.Write(b.udpWrite)
	return b.sent, b.bytes, err
}

// writeUDP is the poller callback of writeFrames.
func (b *batch) writeUDP(fd uintptr) bool {
	hs := b.whs
	for b.next < len(hs) {
		m, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&hs[b.next])), uintptr(len(hs)-b.next), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			for _, h := range hs[b.next : b.next+int(m)] {
				b.bytes += int(h.Len)
			}
			b.sent += int(m)
			b.next += int(m)
		case unix.EAGAIN:
			return false
		case unix.EINTR:
		default:
			// sendmmsg fails only on its first message: skip it.
			b.next++
		}
	}
	return true
}
