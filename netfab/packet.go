package netfab

import (
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// PacketEndpoint is a relay endpoint on a link of a namespace through an
// AF_PACKET socket bound to it: it reads the frames that arrive on the
// link (never those it sends itself) and sends frames out of it. It is
// how an impaired member's veth is joined to its CEN's bridge through the
// relay: the fabric end of the veth, no longer a bridge port, on one side,
// a TAP on the bridge on the other.
type PacketEndpoint struct {
	f    *os.File
	rc   syscall.RawConn
	name string
}

// packetSockBuf sizes the socket's buffers to ride out bursts.
const packetSockBuf = 4 << 20

// OpenPacketEndpoint opens an endpoint on the link ifname of the
// namespace at netnsPath.
func OpenPacketEndpoint(netnsPath, ifname string) (p *PacketEndpoint, err error) {
	fd := -1
	err = atNetns(netnsPath, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("packet socket on %s in %s: %w", ifname, netnsPath, err)
	}
	f := os.NewFile(uintptr(fd), "packet:"+ifname)
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	ifr, err := unix.NewIfreq(ifname)
	if err != nil {
		return nil, fmt.Errorf("packet socket on %q: %w", ifname, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return nil, fmt.Errorf("packet socket on %s in %s: %w", ifname, netnsPath, err)
	}
	// Frames it sends would otherwise come back to it as outgoing ones.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		return nil, fmt.Errorf("packet socket on %s: ignore outgoing: %w", ifname, err)
	}
	for _, o := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[0], packetSockBuf) != nil {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[1], packetSockBuf)
		}
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: int(ifr.Uint32())}
	if err := unix.Bind(fd, sa); err != nil {
		return nil, fmt.Errorf("packet socket on %s in %s: bind: %w", ifname, netnsPath, err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("packet socket on %s: %w", ifname, err)
	}
	return &PacketEndpoint{f: f, rc: rc, name: ifname}, nil
}

func (p *PacketEndpoint) String() string { return "packet " + p.name }

// SetReadDeadline makes a blocked or later read fail once d has passed.
func (p *PacketEndpoint) SetReadDeadline(d time.Time) error { return p.f.SetReadDeadline(d) }

// Close closes the socket.
func (p *PacketEndpoint) Close() error { return p.f.Close() }

// readFrames receives up to a batch of frames with one recvmmsg.
func (p *PacketEndpoint) readFrames(b *batch) (int, error) { return b.readMmsg(p.rc) }

// writeFrames sends frames out of the link with sendmmsg: a bound packet
// socket needs no address.
func (p *PacketEndpoint) writeFrames(b *batch, frames [][]byte) (sent, bytes int, err error) {
	b.whs = b.mmsgs(frames, nil)
	b.next, b.sent, b.bytes = 0, 0, 0
	err = p.rc.Write(b.udpWrite)
	return b.sent, b.bytes, err
}
