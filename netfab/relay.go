package netfab

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Endpoint is one end of a Relay: a place raw Ethernet frames come from
// and go to. TAP and UDPTunnel are endpoints; an AF_PACKET socket on the
// fabric end of a veth (an impaired container link) is the next kind.
//
// The frame-moving methods are unexported so that every endpoint lives in
// netfab, next to the kernel objects it reads; they move a batch per call
// where the kernel allows it.
type Endpoint interface {
	String() string
	// SetReadDeadline unblocks a read in progress once the time has
	// passed; the relay uses it to take an endpoint back without closing it.
	SetReadDeadline(time.Time) error
	Close() error

	// readFrames waits for at least one frame and reads as many as are
	// ready, up to the batch, into b.frames.
	readFrames(b *batch) (int, error)
	// writeFrames writes frames, skipping those the kernel refuses; b is
	// the caller's scratch space.
	writeFrames(b *batch, frames [][]byte) (sent, bytes int, err error)
}

const (
	batchLen     = 64       // frames per read
	maxFrame     = 16 << 10 // buffer per frame: a jumbo frame and more
	ethHeaderLen = 14       // shortest frame passed on
	queueLimit   = 16 << 10 // frames held per direction by a delay
	smallFrame   = 2048     // held frames up to this size reuse buffers
	readBackoff  = 10 * time.Millisecond
)

// batch is one goroutine's buffers and system-call scratch space.
type batch struct {
	bufs   [][]byte // read buffers, maxFrame each (nil for a writer only)
	frames [][]byte // frames read: views into bufs
	out    [][]byte // frames to write
	iov    []unix.Iovec
	hs     []unix.Mmsghdr
	bad    int // datagrams that were no frames, in the last read

	// State of the system call in progress, for the poller callbacks
	// below: they are bound once per batch, so that no call allocates
	// a closure.
	n, next, sent, bytes int
	err                  error
	wr                   [][]byte       // frames being written
	whs                  []unix.Mmsghdr // headers in use
	tapRead, tapWrite    func(uintptr) bool
	udpRead, udpWrite    func(uintptr) bool
}

func newBatch(reads bool) *batch {
	b := &batch{
		out: make([][]byte, 0, 2*batchLen),
		iov: make([]unix.Iovec, 2*batchLen),
		hs:  make([]unix.Mmsghdr, 2*batchLen),
	}
	b.tapRead, b.tapWrite = b.readTAP, b.writeTAP
	b.udpRead, b.udpWrite = b.readUDP, b.writeUDP
	if reads {
		mem := make([]byte, batchLen*maxFrame)
		b.bufs = make([][]byte, batchLen)
		for i := range b.bufs {
			b.bufs[i] = mem[i*maxFrame : (i+1)*maxFrame : (i+1)*maxFrame]
		}
		b.frames = make([][]byte, batchLen)
	}
	return b
}

// mmsgs fills the scratch headers for sendmmsg of frames to r, or, with
// no frames, for recvmmsg into the read buffers.
func (b *batch) mmsgs(frames [][]byte, r *udpRemote) []unix.Mmsghdr {
	if frames == nil {
		frames = b.bufs
	}
	hs := b.hs[:len(frames)]
	for i, f := range frames {
		b.iov[i].Base = unsafe.SliceData(f)
		b.iov[i].SetLen(len(f))
		h := &hs[i]
		h.Hdr = unix.Msghdr{Iov: &b.iov[i]}
		h.Hdr.SetIovlen(1)
		if r != nil {
			h.Hdr.Name = &r.sa[0]
			h.Hdr.Namelen = r.len
		}
		h.Len = 0
	}
	b.bad = 0
	return hs
}

// Side names an end of a relay.
type Side int

const (
	SideA Side = 0
	SideB Side = 1
)

// Direction names the way frames go through a relay.
type Direction int

const (
	AToB Direction = 0 // read from side A, written to side B
	BToA Direction = 1
)

func (d Direction) String() string {
	if d == AToB {
		return "a->b"
	}
	return "b->a"
}

// ErrRelayClosed is returned by a relay that was closed.
var ErrRelayClosed = errors.New("relay closed")

// Relay copies raw Ethernet frames between two endpoints, both ways,
// through each direction's filters. Endpoints, the remote of a UDP
// endpoint, filters and suspension all change while frames flow.
//
// Each side with an endpoint has one reader goroutine, which filters what
// it reads and writes it straight to the other side; each direction has
// one goroutine writing out frames a delay holds. Close stops them all.
// A Relay is safe for concurrent use.
type Relay struct {
	mu      sync.Mutex // guards readers and closed
	readers [2]*reader
	closed  bool

	eps       [2]atomic.Pointer[epRef] // current endpoint of each side
	dirs      [2]*direction
	suspended atomic.Bool
	tap       atomic.Pointer[RelayTap] // a capture of what the relay carries
	epoch     time.Time                // delay queue times count from here
	stop      chan struct{}
	wg        sync.WaitGroup // the delay goroutines
}

type epRef struct{ Endpoint }

// reader is the goroutine reading one side's endpoint.
type reader struct {
	ep   Endpoint
	stop atomic.Bool
	done chan struct{}
}

// NewRelay starts a relay between a and b; either may be nil, to be set
// later with SetEndpoint. The relay owns the endpoints it holds: Close
// closes them.
func NewRelay(a, b Endpoint) *Relay {
	r := &Relay{epoch: time.Now(), stop: make(chan struct{})}
	for d := range r.dirs {
		r.dirs[d] = &direction{
			to:  &r.eps[1-d],
			tap: &r.tap,
			rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
			q:   delayQueue{wake: make(chan struct{}, 1)},
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.dirs[d].release(r)
		}()
	}
	r.SetEndpoint(SideA, a)
	r.SetEndpoint(SideB, b)
	return r
}

// Endpoint returns side s's endpoint, nil if none.
func (r *Relay) Endpoint(s Side) Endpoint {
	if ref := r.eps[s].Load(); ref != nil {
		return ref.Endpoint
	}
	return nil
}

// SetEndpoint makes ep (nil: none) side s's endpoint and returns the one
// it replaces, open and no longer read: the caller owns it again. Frames
// for a side with no endpoint are dropped.
func (r *Relay) SetEndpoint(s Side, ep Endpoint) (old Endpoint, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrRelayClosed
	}
	if rd := r.readers[s]; rd != nil {
		rd.halt()
		r.readers[s] = nil
		old = rd.ep
	}
	if ep == nil {
		r.eps[s].Store(nil)
		return old, nil
	}
	r.eps[s].Store(&epRef{ep})
	rd := &reader{ep: ep, done: make(chan struct{})}
	r.readers[s] = rd
	go r.read(r.dirs[s], rd)
	return old, nil
}

// halt stops the reader and waits for it, leaving its endpoint open.
func (rd *reader) halt() {
	rd.stop.Store(true)
	rd.ep.SetReadDeadline(time.Unix(1, 0))
	<-rd.done
	rd.ep.SetReadDeadline(time.Time{})
}

// SetFilters replaces direction d's filters from the next frame on.
// Frames a delay already holds leave when they were due.
func (r *Relay) SetFilters(d Direction, f Filters) error {
	if err := f.validate(); err != nil {
		return err
	}
	if f == (Filters{}) {
		r.dirs[d].filters.Store(nil)
	} else {
		r.dirs[d].filters.Store(&f)
	}
	return nil
}

// Filters returns direction d's filters.
func (r *Relay) Filters(d Direction) Filters {
	if f := r.dirs[d].filters.Load(); f != nil {
		return *f
	}
	return Filters{}
}

// Suspend makes the relay drop every frame (on true) or carry them
// again (on false). Endpoints stay open and read.
func (r *Relay) Suspend(on bool) { r.suspended.Store(on) }

// Suspended reports whether the relay is suspended.
func (r *Relay) Suspended() bool { return r.suspended.Load() }

// Stats returns direction d's counters.
func (r *Relay) Stats(d Direction) RelayStats { return r.dirs[d].stats() }

// Close stops the relay, waits for its goroutines and closes its
// endpoints. Frames a delay holds are dropped.
func (r *Relay) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	for _, rd := range r.readers {
		if rd != nil {
			rd.halt()
		}
	}
	close(r.stop)
	r.wg.Wait()
	if t := r.tap.Load(); t != nil {
		go t.Close() // its owner closes it too; this ends its recording
	}
	var errs []error
	for s := range r.eps {
		if ref := r.eps[s].Swap(nil); ref != nil {
			if err := ref.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close %s: %w", ref, err))
			}
		}
	}
	return errors.Join(errs...)
}

// read is side's reader goroutine: it reads batches from rd.ep and
// carries them through direction d.
func (r *Relay) read(d *direction, rd *reader) {
	defer close(rd.done)
	b := newBatch(true)
	for {
		n, err := rd.ep.readFrames(b)
		if rd.stop.Load() {
			return
		}
		if b.bad > 0 {
			d.c.droppedError.Add(uint64(b.bad))
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return // closed under the relay: nothing more to read
			}
			d.c.readErrors.Add(1)
			time.Sleep(readBackoff)
			continue
		}
		d.carry(r, b, b.frames[:n])
	}
}

// RelayStats counts what went through one direction of a relay.
type RelayStats struct {
	InFrames         uint64 `json:"in_frames"`
	InBytes          uint64 `json:"in_bytes"`
	OutFrames        uint64 `json:"out_frames"`
	OutBytes         uint64 `json:"out_bytes"`
	DroppedFilter    uint64 `json:"dropped_filter"`    // packet_loss, frequency_drop
	DroppedQueue     uint64 `json:"dropped_queue"`     // the delay queue was full
	DroppedSuspended uint64 `json:"dropped_suspended"` // the relay was suspended
	DroppedError     uint64 `json:"dropped_error"`     // no endpoint to write to, refused, or no frame
	Corrupted        uint64 `json:"corrupted"`
	Duplicated       uint64 `json:"duplicated"`
	ReadErrors       uint64 `json:"read_errors"`
	Queued           int    `json:"queued"` // frames a delay holds now
}

// counters are a direction's statistics, added to once per batch.
type counters struct {
	inFrames, inBytes, outFrames, outBytes          atomic.Uint64
	droppedFilter, droppedQueue, droppedSusp        atomic.Uint64
	droppedError, corrupted, duplicated, readErrors atomic.Uint64
}

// direction is one way through a relay: its filters, counters and delay
// queue. The reader of the side it starts from owns rng and nth; there is
// one such reader at a time.
type direction struct {
	to       *atomic.Pointer[epRef]
	tap      *atomic.Pointer[RelayTap]
	filters  atomic.Pointer[Filters]
	c        counters
	rng      *rand.Rand
	nth      uint64 // frames seen by frequency_drop
	q        delayQueue
	rateFree time.Duration // when the rate lets the next frame go (reader only)
}

func (d *direction) stats() RelayStats {
	d.q.mu.Lock()
	queued := len(d.q.h)
	d.q.mu.Unlock()
	return RelayStats{
		InFrames:         d.c.inFrames.Load(),
		InBytes:          d.c.inBytes.Load(),
		OutFrames:        d.c.outFrames.Load(),
		OutBytes:         d.c.outBytes.Load(),
		DroppedFilter:    d.c.droppedFilter.Load(),
		DroppedQueue:     d.c.droppedQueue.Load(),
		DroppedSuspended: d.c.droppedSusp.Load(),
		DroppedError:     d.c.droppedError.Load(),
		Corrupted:        d.c.corrupted.Load(),
		Duplicated:       d.c.duplicated.Load(),
		ReadErrors:       d.c.readErrors.Load(),
		Queued:           queued,
	}
}

// write writes frames to the direction's current destination and counts
// the outcome.
func (d *direction) write(b *batch, frames [][]byte) {
	if len(frames) == 0 {
		return
	}
	if t := d.tap.Load(); t != nil {
		t.record(frames)
	}
	ref := d.to.Load()
	if ref == nil {
		d.c.droppedError.Add(uint64(len(frames)))
		return
	}
	sent, bytes, _ := ref.writeFrames(b, frames)
	d.c.outFrames.Add(uint64(sent))
	d.c.outBytes.Add(uint64(bytes))
	if lost := len(frames) - sent; lost > 0 {
		d.c.droppedError.Add(uint64(lost))
	}
}
