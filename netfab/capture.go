package netfab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/leviathan-net/leviathan/graph"
)

// Capture sizes.
const (
	// CaptureSnapLen is the snapshot length announced in the pcap header;
	// a longer frame (a GSO packet on a veth can be) is recorded cut to
	// it, with its true length.
	CaptureSnapLen = 262144
	// The receive ring (TPACKET_V3): the kernel fills blocks of frames and
	// hands each to the reader whole, when it is full or captureRetireMs
	// after its first frame, so a busy link costs one wakeup per block and
	// a quiet one still delivers within that time. A block holds the
	// longest frame a veth passes up (a 64 KiB GSO packet, or a BIG TCP
	// one) in one piece.
	captureBlockSize = 1 << 20
	captureBlocks    = 16
	captureRetireMs  = 20
	// captureFrameSize only satisfies the kernel's arithmetic
	// (frame_nr = blocks * block/frame); V3 packs frames of any length.
	captureFrameSize = 2048
	// DefaultCaptureQueue bounds the bytes of pcap records held between
	// the ring reader and a slow writer; beyond it frames are dropped
	// and counted, and the link never waits.
	DefaultCaptureQueue = 8 << 20
	captureQueueChunks  = 512 // blocks' records held at most
	captureFreeBufs     = 8   // written buffers kept for reuse
	// captureKeepBuf is the largest buffer kept for reuse: the records of
	// a block are never longer than the block (a record header is shorter
	// than the kernel's per-frame header) unless a frame had a VLAN tag
	// put back.
	captureKeepBuf   = captureBlockSize + captureBlockSize/8
	pcapHeaderLen    = 24 // global header
	pcapRecordLen    = 16 // per-record header
	linkTypeEthernet = 1  // LINKTYPE_ETHERNET
	pcapMagicMicro   = 0xa1b2c3d4
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
	// Dropped were read from the ring but found the queue to the writer
	// full: the client did not keep up.
	Dropped uint64 `json:"dropped"`
	// KernelDropped never reached the reader: the ring was full.
	KernelDropped uint64 `json:"kernel_dropped"`
	// RingFull counts the times the ring filled up, the reader behind
	// the link (each time, the frames until it caught up are among
	// KernelDropped).
	RingFull uint64 `json:"ring_full"`
}

// openCaptures counts captures whose socket is open.
var openCaptures atomic.Int64

// OpenCaptures returns how many captures hold a socket now (for tests
// and metrics: every capture ends with its socket closed and its ring
// unmapped).
func OpenCaptures() int { return int(openCaptures.Load()) }

// A Capture is an AF_PACKET socket bound to one interface, with a
// memory-mapped receive ring. It sees each frame once per direction:
// bound to one interface, the kernel hands it the frames that interface
// receives and, as PACKET_OUTGOING, those it sends, each once, so
// PACKET_IGNORE_OUTGOING stays off (it would hide one direction). A
// frame crossing a bridge is seen on the port it crosses, never twice.
//
// The kernel copies each frame into the ring as it passes, and wakes
// the reader once per block, not per frame: that keeps the capture's
// cost to the link small. The socket is non-blocking, in the runtime's
// poller: Stream reads the ring from its own goroutine, waiting for the
// next block in the poller, and ends that goroutine before returning.
// A Capture is used by one Stream at a time; Close releases it, and
// waits for a Stream still reading the ring.
type Capture struct {
	f    *os.File
	rc   syscall.RawConn
	ring []byte // captureBlocks blocks, mapped from the socket
	// rd keeps the ring's position from one Stream to the next: the
	// kernel fills the blocks in turn, whoever reads them.
	rd   *ringReader
	spec CaptureSpec
	// reading counts Stream's reader goroutine: Close unmaps the ring
	// only once it ended.
	reading sync.WaitGroup
}

// OpenCapture opens a packet socket on spec's interface. The socket is
// created inside the interface's namespace (a packet socket binds to
// interfaces of the namespace it was created in) and with protocol 0, so
// it receives nothing until it is bound to that one interface, once its
// ring is mapped: no frame of another interface ever enters it.
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
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return nil, fmt.Errorf("capture %s: TPACKET_V3: %w", spec.IfName, err)
	}
	req := unix.TpacketReq3{
		Block_size:     captureBlockSize,
		Block_nr:       captureBlocks,
		Frame_size:     captureFrameSize,
		Frame_nr:       captureBlocks * (captureBlockSize / captureFrameSize),
		Retire_blk_tov: captureRetireMs,
	}
	if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return nil, fmt.Errorf("capture %s: receive ring: %w", spec.IfName, err)
	}
	ring, err := unix.Mmap(fd, 0, captureBlocks*captureBlockSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("capture %s: map the receive ring: %w", spec.IfName, err)
	}
	defer func() {
		if err != nil {
			unix.Munmap(ring)
		}
	}()
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: int(ifr.Uint32())}
	if err := unix.Bind(fd, sa); err != nil {
		return nil, fmt.Errorf("capture %s in %s: bind: %w", spec.IfName, spec.Netns, err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("capture %s: %w", spec.IfName, err)
	}
	openCaptures.Add(1)
	return &Capture{f: f, rc: rc, ring: ring, rd: newRingReader(ring), spec: spec}, nil
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

// Close closes the socket and unmaps its ring. Closing the socket first
// ends a reader waiting in the poller; the ring is unmapped once no
// reader is left (the kernel releases the socket with its mapping).
func (c *Capture) Close() error {
	if c.f == nil {
		return nil
	}
	err := c.f.Close()
	c.reading.Wait()
	if merr := unix.Munmap(c.ring); err == nil && merr != nil {
		err = fmt.Errorf("capture %s: unmap the receive ring: %w", c.spec.IfName, merr)
	}
	c.f, c.ring, c.rd = nil, nil, nil
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
	// queue, so frames reach the client as they come (a block at a time:
	// at most captureRetireMs after the first of them).
	Flush func() error
}

// Stream writes the pcap global header and then a record per frame to
// w until ctx ends, a write fails, or o.Count frames were written. The
// ring is read on a goroutine of its own that copies each block's frames
// into pcap records, hands the block back to the kernel at once, and
// passes the records to the writer through a bounded queue: when the
// writer falls behind, frames are dropped and counted instead of
// stalling the reader (and a packet socket never slows its link).
// Stream returns once that goroutine has ended; a write error ends it
// without an error, as a client going away does.
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
	// A deadline left by an earlier Stream would end this one at once.
	c.f.SetReadDeadline(time.Time{})
	q := &captureQueue{
		ch:    make(chan []byte, captureQueueChunks),
		free:  make(chan []byte, captureFreeBufs),
		limit: int64(o.Queue),
		stop:  make(chan struct{}),
	}
	readErr := make(chan error, 1)
	c.reading.Add(1)
	go func() {
		defer c.reading.Done()
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
	var err error
	if rerr := <-readErr; rerr != nil {
		err = fmt.Errorf("capture %s: %w", c.spec.IfName, rerr)
	}
	st.Frames, st.Dropped = q.queued.Load(), q.dropped.Load()
	// Reading the statistics resets them: each Stream counts its own.
	var ks *unix.TpacketStatsV3
	var kerr error
	if cerr := c.rc.Control(func(fd uintptr) {
		ks, kerr = unix.GetsockoptTpacketStatsV3(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS)
	}); cerr == nil && kerr == nil {
		st.KernelDropped, st.RingFull = uint64(ks.Drops), uint64(ks.Freeze_q_cnt)
	}
	return st, err
}

// captureQueue is the bounded queue between a capture's reader and its
// writer: each block's pcap records, bounded in count (the channel) and
// in bytes (limit).
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

// full reports whether the queue holds no more records.
func (q *captureQueue) full() bool {
	return q.bytes.Load() >= q.limit || len(q.ch) == cap(q.ch)
}

// recycle keeps a written buffer for the reader to fill again, unless
// enough are kept or it grew large.
func (q *captureQueue) recycle(out []byte) {
	if cap(out) > captureKeepBuf {
		return
	}
	select {
	case q.free <- out[:0]:
	default:
	}
}

// read reads the ring's blocks in turn and queues their frames as pcap
// records until stopped, the socket fails, or count frames were
// queued. Each block goes back to the kernel as soon as its frames are
// copied (or counted as dropped).
func (c *Capture) read(q *captureQueue, count int) error {
	r := c.rd
	for {
		select {
		case <-q.stop:
			return nil
		default:
		}
		blk := r.block()
		if !blk.user() {
			// Wait in the poller: the kernel wakes the socket when it
			// hands over a block.
			if err := c.rc.Read(r.ready); err != nil {
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
			continue
		}
		n := blk.frames()
		if count > 0 {
			n = min(n, count-int(q.queued.Load()))
		}
		if q.full() {
			q.dropped.Add(uint64(n))
			r.release()
			continue
		}
		var out []byte
		select {
		case out = <-q.free:
		default:
			out = make([]byte, 0, captureBlockSize)
		}
		out, n = blk.records(out, n)
		r.release()
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

// htons converts a 16-bit protocol number to network order.
func htons(v uint16) uint16 { return v<<8 | v>>8 }
