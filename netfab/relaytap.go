package netfab

import (
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"time"
)

// DefaultRelayTapQueue bounds the bytes of pcap records a RelayTap holds
// for a slow writer; beyond it frames are dropped and counted.
const DefaultRelayTapQueue = 4 << 20

// RelayTap copies the frames a relay carries, both ways, to a writer as
// pcap records: a capture of a link that has no kernel interface (a
// GNS3 NIO is a UDP socket). The relay's goroutines only append records
// to a bounded buffer; one goroutine of the tap's writes them out, so a
// slow writer drops frames instead of slowing the link. Frames are
// recorded as they leave the relay: after filters, suspension and delay.
type RelayTap struct {
	r     *Relay
	w     io.Writer
	limit int
	wake  chan struct{}
	done  chan struct{}

	mu      sync.Mutex // guards buf, closed, frames and dropped
	buf     []byte
	closed  bool
	frames  uint64
	dropped uint64
	err     error // the writer's first error; set before done closes
}

// RelayTapStats count what a tap recorded.
type RelayTapStats struct {
	Frames  uint64 // recorded
	Dropped uint64 // not recorded: the writer fell behind
}

// ErrTapped is returned by TapOff on a relay that has a tap already.
var ErrTapped = errors.New("relay already tapped")

// TapOff writes a pcap global header to w and then a record for every
// frame the relay carries, until the tap is closed. limit bounds the
// bytes held for w (DefaultRelayTapQueue when 0). A relay has one tap at
// a time.
func (r *Relay) TapOff(w io.Writer, limit int) (*RelayTap, error) {
	if limit <= 0 {
		limit = DefaultRelayTapQueue
	}
	if err := WritePcapHeader(w); err != nil {
		return nil, err
	}
	t := &RelayTap{r: r, w: w, limit: limit, wake: make(chan struct{}, 1), done: make(chan struct{})}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrRelayClosed
	}
	if !r.tap.CompareAndSwap(nil, t) {
		return nil, ErrTapped
	}
	go t.run()
	return t, nil
}

// Tapped reports whether the relay has a tap.
func (r *Relay) Tapped() bool { return r.tap.Load() != nil }

// record appends frames as pcap records, or counts them dropped.
func (t *RelayTap) record(frames [][]byte) {
	now := time.Now()
	sec, usec := uint32(now.Unix()), uint32(now.Nanosecond()/1000)
	t.mu.Lock()
	for _, f := range frames {
		if t.closed || len(t.buf)+pcapRecordLen+len(f) > t.limit {
			t.dropped++
			continue
		}
		var h [pcapRecordLen]byte
		le := binary.LittleEndian
		le.PutUint32(h[0:], sec)
		le.PutUint32(h[4:], usec)
		le.PutUint32(h[8:], uint32(len(f)))
		le.PutUint32(h[12:], uint32(len(f)))
		t.buf = append(append(t.buf, h[:]...), f...)
		t.frames++
	}
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// run writes out what record buffered until the tap closes and its
// buffer is empty.
func (t *RelayTap) run() {
	defer close(t.done)
	var out []byte
	for {
		t.mu.Lock()
		out, t.buf = t.buf, out[:0]
		closed := t.closed
		t.mu.Unlock()
		if len(out) > 0 && t.err == nil {
			if _, err := t.w.Write(out); err != nil {
				t.err = err
			}
		}
		if closed && len(out) == 0 {
			return
		}
		if len(out) == 0 {
			<-t.wake
		}
	}
}

// Close takes the tap off its relay, writes out what it holds and
// returns its counts, with the writer's first error.
func (t *RelayTap) Close() (RelayTapStats, error) {
	t.r.tap.CompareAndSwap(t, nil)
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
	<-t.done
	t.mu.Lock()
	defer t.mu.Unlock()
	return RelayTapStats{Frames: t.frames, Dropped: t.dropped}, t.err
}
