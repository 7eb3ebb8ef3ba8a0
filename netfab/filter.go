package netfab

import (
	"fmt"
	"sync"
	"time"
)

// Filters impair one direction of a relay, as GNS3 defines the filters of
// a NIO (and netem would, on a kernel that has it). The zero value passes
// every frame untouched. They apply in this order: frequency_drop,
// packet_loss, corrupt, duplicate, delay.
type Filters struct {
	FrequencyDrop int           `json:"frequency_drop,omitempty"` // drop every Nth frame; -1 drops all
	PacketLoss    float64       `json:"packet_loss,omitempty"`    // percent of frames dropped
	Delay         time.Duration `json:"delay,omitempty"`          // added to every frame
	Jitter        time.Duration `json:"jitter,omitempty"`         // the delay varies by up to ± this
	Corrupt       float64       `json:"corrupt,omitempty"`        // percent of frames with one byte flipped
	Duplicate     float64       `json:"duplicate,omitempty"`      // percent of frames sent twice
	// RateKbit shapes the direction to this many kilobits per second
	// (0: no limit): frames wait in the timed queue for their turn, and
	// those that would wait more than rateBacklog are dropped, as a
	// token bucket with that latency would.
	RateKbit int `json:"rate_kbit,omitempty"`
}

// rateBacklog is the longest a frame waits for its turn under RateKbit.
const rateBacklog = 100 * time.Millisecond

func (f Filters) validate() error {
	switch {
	case f.FrequencyDrop < -1:
		return fmt.Errorf("frequency_drop %d: want -1 (all), 0 (off) or N", f.FrequencyDrop)
	case !isPercent(f.PacketLoss), !isPercent(f.Corrupt), !isPercent(f.Duplicate):
		return fmt.Errorf("filters %+v: percentages are 0 to 100", f)
	case f.Delay < 0, f.Jitter < 0:
		return fmt.Errorf("filters %+v: delay and jitter are 0 or more", f)
	case f.RateKbit < 0:
		return fmt.Errorf("rate %d kbit/s: want 0 (no limit) or more", f.RateKbit)
	}
	return nil
}

func isPercent(p float64) bool { return p >= 0 && p <= 100 }

func (f *Filters) delays() bool { return f.Delay > 0 || f.Jitter > 0 || f.RateKbit > 0 }

// IsZero reports whether the filters pass every frame untouched.
func (f Filters) IsZero() bool { return f == Filters{} }

// FiltersFromGNS3 reads the "filters" object of a GNS3 NIO:
// {"frequency_drop": [N], "packet_loss": [P], "delay": [MS, JITTER_MS],
// "corrupt": [P]}, plus "duplicate": [P]. An unknown filter is an error;
// GNS3's "bpf" is one that leviathan does not run.
func FiltersFromGNS3(m map[string][]int) (Filters, error) {
	var f Filters
	for k, v := range m {
		if len(v) == 0 {
			continue
		}
		switch k {
		case "frequency_drop":
			f.FrequencyDrop = v[0]
		case "packet_loss":
			f.PacketLoss = float64(v[0])
		case "delay":
			f.Delay = time.Duration(v[0]) * time.Millisecond
			if len(v) > 1 {
				f.Jitter = time.Duration(v[1]) * time.Millisecond
			}
		case "corrupt":
			f.Corrupt = float64(v[0])
		case "duplicate":
			f.Duplicate = float64(v[0])
		default:
			return Filters{}, fmt.Errorf("filter %q is not supported", k)
		}
	}
	return f, f.validate()
}

// chance reports true with probability pct percent.
func (d *direction) chance(pct float64) bool {
	return pct >= 100 || (pct > 0 && d.rng.Float64()*100 < pct)
}

// carry takes frames read on the direction's side through its filters to
// the other side: now, or later through the delay queue.
func (d *direction) carry(r *Relay, b *batch, frames [][]byte) {
	if len(frames) == 0 {
		return
	}
	var bytes int
	for _, f := range frames {
		bytes += len(f)
	}
	d.c.inFrames.Add(uint64(len(frames)))
	d.c.inBytes.Add(uint64(bytes))
	if r.suspended.Load() {
		d.c.droppedSusp.Add(uint64(len(frames)))
		return
	}
	fs := d.filters.Load()
	if fs == nil {
		d.write(b, frames)
		return
	}
	var (
		out                           = b.out[:0]
		dropped, corrupted, dup, full uint64
		now                           time.Duration
	)
	if fs.delays() {
		now = time.Since(r.epoch)
	}
	for _, f := range frames {
		if fs.FrequencyDrop != 0 {
			d.nth++
			if fs.FrequencyDrop < 0 || d.nth%uint64(fs.FrequencyDrop) == 0 {
				dropped++
				continue
			}
		}
		if d.chance(fs.PacketLoss) {
			dropped++
			continue
		}
		if d.chance(fs.Corrupt) {
			f[d.rng.IntN(len(f))] ^= byte(1 + d.rng.IntN(255))
			corrupted++
		}
		copies := 1
		if d.chance(fs.Duplicate) {
			copies = 2
			dup++
		}
		for range copies {
			if !fs.delays() {
				out = append(out, f)
				continue
			}
			due := now + fs.Delay
			if fs.Jitter > 0 {
				due += time.Duration(d.rng.Int64N(int64(2*fs.Jitter)+1)) - fs.Jitter
			}
			if fs.RateKbit > 0 {
				start := max(due, d.rateFree)
				if start-due > rateBacklog {
					full++
					continue
				}
				d.rateFree = start + time.Duration(len(f))*8*time.Millisecond/time.Duration(fs.RateKbit)
				due = d.rateFree
			}
			if !d.q.push(due, f) {
				full++
			}
		}
	}
	d.c.droppedFilter.Add(dropped)
	d.c.corrupted.Add(corrupted)
	d.c.duplicated.Add(dup)
	d.c.droppedQueue.Add(full)
	d.write(b, out)
}

// delayQueue holds frames until they are due: a min-heap on due time (a
// jitter reorders frames, as netem's does), bounded, with its frames in
// reused buffers. The direction's reader pushes; its release goroutine
// pops.
type delayQueue struct {
	mu   sync.Mutex // guards h and free
	h    []held
	free [][]byte      // buffers of smallFrame bytes to reuse
	wake chan struct{} // a frame became the earliest
}

type held struct {
	due time.Duration // since the relay's epoch
	f   []byte
}

// push copies f into the queue, due at due; false when the queue is full.
func (q *delayQueue) push(due time.Duration, f []byte) bool {
	q.mu.Lock()
	if len(q.h) >= queueLimit {
		q.mu.Unlock()
		return false
	}
	var buf []byte
	if n := len(q.free); n > 0 && len(f) <= smallFrame {
		buf, q.free = q.free[n-1], q.free[:n-1]
	} else {
		buf = make([]byte, max(len(f), smallFrame))
	}
	buf = buf[:copy(buf[:len(f)], f)]
	q.h = append(q.h, held{due: due, f: buf})
	i := q.up(len(q.h) - 1)
	q.mu.Unlock()
	if i == 0 {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// up restores the heap from i upward and returns where the element ended.
func (q *delayQueue) up(i int) int {
	for i > 0 {
		p := (i - 1) / 2
		if q.h[p].due <= q.h[i].due {
			break
		}
		q.h[p], q.h[i] = q.h[i], q.h[p]
		i = p
	}
	return i
}

// pop removes the earliest frame.
func (q *delayQueue) pop() held {
	top := q.h[0]
	n := len(q.h) - 1
	q.h[0] = q.h[n]
	q.h[n] = held{}
	q.h = q.h[:n]
	for i := 0; ; {
		l, s := 2*i+1, i
		if l < n && q.h[l].due < q.h[s].due {
			s = l
		}
		if r := l + 1; r < n && q.h[r].due < q.h[s].due {
			s = r
		}
		if s == i {
			break
		}
		q.h[i], q.h[s] = q.h[s], q.h[i]
		i = s
	}
	return top
}

// takeDue moves the frames due by now into out, up to its capacity, and
// says when the next one is due (ok false: the queue is empty).
func (q *delayQueue) takeDue(now time.Duration, out [][]byte) ([][]byte, time.Duration, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.h) > 0 && q.h[0].due <= now && len(out) < cap(out) {
		out = append(out, q.pop().f)
	}
	if len(q.h) == 0 {
		return out, 0, false
	}
	return out, q.h[0].due, true
}

// recycle takes back the buffers of frames written.
func (q *delayQueue) recycle(frames [][]byte) {
	q.mu.Lock()
	for _, f := range frames {
		if cap(f) == smallFrame && len(q.free) < queueLimit {
			q.free = append(q.free, f[:smallFrame])
		}
	}
	q.mu.Unlock()
}

// release is the direction's goroutine that writes out delayed frames when
// they are due, until the relay stops. A delay never holds up the reader:
// it only fills the queue.
func (d *direction) release(r *Relay) {
	b := newBatch(false)
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		now := time.Since(r.epoch)
		out, next, ok := d.q.takeDue(now, b.out[:0])
		if len(out) > 0 {
			d.write(b, out)
			d.q.recycle(out)
			clear(out)
			continue
		}
		var timer <-chan time.Time
		if ok {
			t.Reset(next - now)
			timer = t.C
		}
		select {
		case <-timer:
		case <-d.q.wake:
		case <-r.stop:
			t.Stop()
			return
		}
	}
}
