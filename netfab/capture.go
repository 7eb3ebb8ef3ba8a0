package netfab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/leviathan-net/leviathan/graph"
)

// Capture sizes.
const (
	// CaptureSnapLen is the snapshot length announced in the pcap header:
	// no frame is cut shorter than captureFrameBuf.
	CaptureSnapLen = 262144
	// captureFrameBuf holds the largest frame a veth passes up in one
	// piece (a 64 KiB GSO packet and its Ethernet header); a longer one is
	// recorded cut to this length, with its true length.
	captureFrameBuf = 64<<10 + 256
	captureBatchLen = 32 // frames per recvmmsg
	// DefaultCaptureQueue bounds the bytes of pcap records held between
	// the socket reader and a slow writer; beyond it frames are dropped
	// and counted, and the link never waits.
	DefaultCaptureQueue = 8 << 20
	captureQueueChunks  = 512      // batches held at most
	captureFreeBufs     = 16       // written buffers kept for reuse
	captureKeepBuf      = 64 << 10 // largest buffer kept for reuse
	captureSockBuf      = 4 << 20  // socket receive buffer
	pcapHeaderLen       = 24       // global header
	pcapRecordLen       = 16       // per-record header
	linkTypeEthernet    = 1        // LINKTYPE_ETHERNET
	pcapMagicMicro      = 0xa1b2c3d4
	cmsgTimestampSpace  = 32 // CmsgSpace(sizeof(struct timespec))
)

// CaptureSpec says where one member's link on a CEN is captured: an
// interface in a namespace, which must carry the CEN's link group.
type CaptureSpec struct {
	Netns  string // path of the namespace holding the interface
	IfName string
	Group  uint32 // link group the interface must carry: it is leviathan's
	// Fabric is true for the fabric end of the member's veth (a bridge
	// port), false for the member's own end (a wire has no fabric end).
	Fabric bool
}

// CaptureStats counts what a capture saw.
type CaptureStats struct {
	Frames uint64 `json:"frames"` // written to the client
	// Dropped were read from the socket but found the queue to the
	// writer full: the client did not keep up.
	Dropped uint64 `json:"dropped"`
	// KernelDropped never reached the reader: the socket's buffer was
	// full.
	KernelDropped uint64 `json:"kernel_dropped"`
}

// openCaptures counts captures whose socket is open.
var openCaptures atomic.Int64

// OpenCaptures returns how many captures hold a socket now (for tests
// and metrics: every capture ends with its socket closed).
func OpenCaptures() int { return int(openCaptures.Load()) }

// A Capture is an AF_PACKET socket bound to one interface. It sees each
// frame once per direction: bound to one interface, the kernel hands it
// the frames that interface receives and, as PACKET_OUTGOING, those it
// sends, each once, so PACKET_IGNORE_OUTGOING stays off (it would hide
// one direction). A frame crossing a bridge is seen on the port it
// crosses, never twice.
//
// The socket is non-blocking, in the runtime's poller: Stream reads it
// from its own goroutine and ends that goroutine before returning.
// A Capture is used by one Stream at a time; Close releases it.
type Capture struct {
	f    *os.File
	rc   syscall.RawConn
	spec CaptureSpec
}

// OpenCapture opens a packet socket on spec's interface. The socket is
// created inside the interface's namespace (a packet socket binds to
// interfaces of the namespace it was created in) and with protocol 0, so
// it receives nothing until it is bound to that one interface: no frame
// of another interface ever enters it.
func OpenCapture(spec CaptureSpec) (c *Capture, err error) {
	if _, err := ownOrMissing(spec); err != nil {
		return nil, err
	}
	fd := -1
	err = atNetns(spec.Netns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("capture %s in %s: packet socket: %w", spec.IfName, spec.Netns, err)
	}
	f := os.NewFile(uintptr(fd), "capture:"+spec.IfName)
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	ifr, err := unix.NewIfreq(spec.IfName)
	if err != nil {
		return nil, fmt.Errorf("capture %q: %w", spec.IfName, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return nil, fmt.Errorf("capture %s in %s: %w", spec.IfName, spec.Netns, err)
	}
	// A big buffer rides out bursts; root may exceed rmem_max.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, captureSockBuf) != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, captureSockBuf)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return nil, fmt.Errorf("capture %s: SO_TIMESTAMPNS: %w", spec.IfName, err)
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: int(ifr.Uint32())}
	if err := unix.Bind(fd, sa); err != nil {
		return nil, fmt.Errorf("capture %s in %s: bind: %w", spec.IfName, spec.Netns, err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("capture %s: %w", spec.IfName, err)
	}
	openCaptures.Add(1)
	return &Capture{f: f, rc: rc, spec: spec}, nil
}

// ownOrMissing checks that spec's interface exists and is leviathan's.
func ownOrMissing(spec CaptureSpec) (bool, error) {
	l, err := ownLink(spec.Netns, spec.IfName, spec.Group)
	if err != nil {
		return false, fmt.Errorf("capture %s in %s: %w", spec.IfName, spec.Netns, err)
	}
	if l == nil {
		return false, graph.Errorf(graph.ErrConflict, "capture: no interface %q in %s (the link is not wired)", spec.IfName, spec.Netns)
	}
	return true, nil
}

// Spec returns where the capture was opened.
func (c *Capture) Spec() CaptureSpec { return c.spec }

// Close closes the socket.
func (c *Capture) Close() error {
	if c.f == nil {
		return nil
	}
	err := c.f.Close()
	c.f = nil
	openCaptures.Add(-1)
	return err
}

// WritePcapHeader writes a pcap global header for Ethernet frames.
func WritePcapHeader(w io.Writer) error {
	var h [pcapHeaderLen]byte
	le := binary.LittleEndian
	le.PutUint32(h[0:], pcapMagicMicro)
	le.PutUint16(h[4:], 2) // version 2.4
	le.PutUint16(h[6:], 4)
	le.PutUint32(h[16:], CaptureSnapLen)
	le.PutUint32(h[20:], linkTypeEthernet)
	_, err := w.Write(h[:])
	return err
}

// StreamOptions tune Stream.
type StreamOptions struct {
	// Count stops the stream after that many frames (0: no limit).
	Count int
	// Queue bounds the bytes held for the writer (DefaultCaptureQueue
	// when 0).
	Queue int
	// Flush, when set, is called after each write that empties the
	// queue, so frames reach the client as they come.
	Flush func() error
}

// Stream writes the pcap global header and then a record per frame to
// w until ctx ends, a write fails, or o.Count frames were written. The
// socket is read on a goroutine of its own that hands batches of
// records to the writer through a bounded queue: when the writer falls
// behind, frames are dropped and counted instead of stalling the reader
// (and a packet socket never slows its link). Stream returns once that
// goroutine has ended; a write error ends it without an error, as a
// client going away does.
func (c *Capture) Stream(ctx context.Context, w io.Writer, o StreamOptions) (CaptureStats, error) {
	var st CaptureStats
	if o.Queue <= 0 {
		o.Queue = DefaultCaptureQueue
	}
	if err := WritePcapHeader(w); err != nil {
		return st, nil
	}
	if o.Flush != nil {
		o.Flush()
	}
	q := &captureQueue{
		ch:    make(chan []byte, captureQueueChunks),
		free:  make(chan []byte, captureFreeBufs),
		limit: int64(o.Queue),
		stop:  make(chan struct{}),
	}
	readErr := make(chan error, 1)
	go func() {
		defer close(q.ch)
		readErr <- c.read(q, o.Count)
	}()

	stopReader := func() {
		close(q.stop)
		c.f.SetReadDeadline(time.Now())
		for b := range q.ch { // drain until the reader closes it
			q.bytes.Add(-int64(len(b)))
		}
	}
	var err error
loop:
	for {
		select {
		case <-ctx.Done():
			stopReader()
			break loop
		case b, ok := <-q.ch:
			if !ok {
				break loop
			}
			q.bytes.Add(-int64(len(b)))
			_, werr := w.Write(b)
			if werr == nil && o.Flush != nil && len(q.ch) == 0 {
				werr = o.Flush()
			}
			q.recycle(b)
			if werr != nil {
				stopReader()
				break loop
			}
		}
	}
	if rerr := <-readErr; rerr != nil {
		err = fmt.Errorf("capture %s: %w", c.spec.IfName, rerr)
	}
	st.Frames, st.Dropped = q.queued.Load(), q.dropped.Load()
	if ts, gerr := unix.GetsockoptTpacketStats(int(fdOf(c)), unix.SOL_PACKET, unix.PACKET_STATISTICS); gerr == nil {
		st.KernelDropped = uint64(ts.Drops)
	}
	return st, err
}

// fdOf returns the socket's descriptor, for calls that do not block.
func fdOf(c *Capture) uintptr {
	var fd uintptr
	c.rc.Control(func(f uintptr) { fd = f })
	return fd
}

// captureQueue is the bounded queue between a capture's reader and its
// writer: batches of pcap records, bounded in count (the channel) and in
// bytes (limit).
type captureQueue struct {
	ch     chan []byte   // closed by the reader when it ends
	free   chan []byte   // written buffers, for reuse
	stop   chan struct{} // closed by the writer: the reader must end
	limit  int64
	bytes  atomic.Int64 // held in ch
	queued atomic.Uint64
	// dropped counts frames read that found the queue full.
	dropped atomic.Uint64
}

// read reads batches from the socket and queues them as pcap records
// until stopped, the socket fails, or count frames were queued.
func (c *Capture) read(q *captureQueue, count int) error {
	b := newCaptureBatch()
	for {
		n, err := c.readBatch(b)
		if err != nil {
			select {
			case <-q.stop:
				return nil
			default:
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			return err
		}
		if count > 0 {
			n = min(n, count-int(q.queued.Load()))
		}
		var out []byte
		select {
		case out = <-q.free:
		default:
		}
		out = b.records(out, n)
		if q.bytes.Load()+int64(len(out)) > q.limit {
			q.dropped.Add(uint64(n))
			q.recycle(out)
			continue
		}
		q.bytes.Add(int64(len(out)))
		select {
		case q.ch <- out:
			q.queued.Add(uint64(n))
		default:
			q.bytes.Add(-int64(len(out)))
			q.dropped.Add(uint64(n))
			q.recycle(out)
			continue
		}
		if count > 0 && int(q.queued.Load()) >= count {
			return nil
		}
	}
}

// captureBatch holds one recvmmsg's buffers and headers.
type captureBatch struct {
	bufs [][]byte
	ctl  [][]byte
	iov  []unix.Iovec
	hs   []unix.Mmsghdr
	n    int
	err  error
	call func(uintptr) bool // bound once: no closure per read
}

func newCaptureBatch() *captureBatch {
	b := &captureBatch{
		bufs: make([][]byte, captureBatchLen),
		ctl:  make([][]byte, captureBatchLen),
		iov:  make([]unix.Iovec, captureBatchLen),
		hs:   make([]unix.Mmsghdr, captureBatchLen),
	}
	mem := make([]byte, captureBatchLen*captureFrameBuf)
	ctl := make([]byte, captureBatchLen*cmsgTimestampSpace)
	for i := range b.bufs {
		b.bufs[i] = mem[i*captureFrameBuf : (i+1)*captureFrameBuf : (i+1)*captureFrameBuf]
		b.ctl[i] = ctl[i*cmsgTimestampSpace : (i+1)*cmsgTimestampSpace : (i+1)*cmsgTimestampSpace]
	}
	b.call = b.recv
	return b
}

// recycle keeps a written buffer for the reader to fill again, unless
// enough are kept or it grew large (a batch of big frames).
func (q *captureQueue) recycle(out []byte) {
	if cap(out) > captureKeepBuf {
		return
	}
	select {
	case q.free <- out[:0]:
	default:
	}
}

// readBatch reads the frames the socket holds, up to a batch, waiting in
// the poller for the first.
func (c *Capture) readBatch(b *captureBatch) (int, error) {
	b.n, b.err = 0, nil
	err := c.rc.Read(b.call)
	if err == nil {
		err = b.err
	}
	if b.n > 0 {
		return b.n, nil
	}
	return 0, err
}

// recv is the poller callback of readBatch.
func (b *captureBatch) recv(fd uintptr) bool {
	for i := range b.hs {
		b.iov[i].Base = unsafe.SliceData(b.bufs[i])
		b.iov[i].SetLen(len(b.bufs[i]))
		h := &b.hs[i]
		h.Hdr = unix.Msghdr{Iov: &b.iov[i], Control: unsafe.SliceData(b.ctl[i])}
		h.Hdr.SetIovlen(1)
		h.Hdr.SetControllen(len(b.ctl[i]))
		h.Len = 0
	}
	for {
		// MSG_TRUNC: a packet socket then reports each frame's true
		// length, also of a frame longer than its buffer.
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hs[0])), uintptr(len(b.hs)), unix.MSG_DONTWAIT|unix.MSG_TRUNC, 0, 0)
		switch e {
		case 0:
			b.n = int(r)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			b.err = e
			return true
		}
	}
}

// records appends the pcap records of the batch's first n frames to out.
func (b *captureBatch) records(out []byte, n int) []byte {
	le := binary.LittleEndian
	for i := range n {
		h := &b.hs[i]
		wire := int(h.Len)
		capLen := min(wire, len(b.bufs[i]))
		sec, nsec := b.stamp(i)
		var rec [pcapRecordLen]byte
		le.PutUint32(rec[0:], uint32(sec))
		le.PutUint32(rec[4:], uint32(nsec/1000))
		le.PutUint32(rec[8:], uint32(capLen))
		le.PutUint32(rec[12:], uint32(wire))
		out = append(out, rec[:]...)
		out = append(out, b.bufs[i][:capLen]...)
	}
	return out
}

// stamp returns frame i's kernel receive time (SCM_TIMESTAMPNS), or now
// when the kernel gave none.
func (b *captureBatch) stamp(i int) (sec, nsec int64) {
	ctl := b.ctl[i][:b.hs[i].Hdr.Controllen]
	for len(ctl) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&ctl[0]))
		if int(h.Len) < unix.SizeofCmsghdr || int(h.Len) > len(ctl) {
			break
		}
		data := ctl[unix.SizeofCmsghdr:h.Len]
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SO_TIMESTAMPNS && len(data) >= 16 {
			ts := (*unix.Timespec)(unsafe.Pointer(&data[0]))
			return ts.Sec, ts.Nsec
		}
		next := unix.CmsgSpace(int(h.Len) - unix.SizeofCmsghdr)
		if next > len(ctl) {
			break
		}
		ctl = ctl[next:]
	}
	now := time.Now()
	return now.Unix(), int64(now.Nanosecond())
}

// htons converts a 16-bit protocol number to network order.
func htons(v uint16) uint16 { return v<<8 | v>>8 }
