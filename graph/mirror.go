package graph

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// Mirror is a Store that keeps answering reads while its backing store
// does not (an etcd cluster this host is cut off from): it holds a copy
// of the whole store, filled by a full read and kept current by a Watch,
// and when a View of the backing store fails with ErrUnavailable it runs
// fn on the copy instead. Stale says when it did. Everything else
// (writes, Watch, Revision, Announce) goes to the backing store alone, so
// a write fails as the backing store's does.
//
// A View's fn may run twice: on the backing store, which failed, then on
// the copy; it must have no effects outside the transaction that a
// second run would not overwrite.
//
// A Mirror is safe for concurrent use. Its watch runs on a goroutine of
// its own, from NewMirror to Close.
type Mirror struct {
	s      Store
	cancel context.CancelFunc
	done   chan struct{} // closed when the watch goroutine returns

	mu    sync.Mutex  // guards the fields below
	cp    *mirrorCopy // the copy; replaced, not changed, once shared
	stale bool        // the last read was served from the copy
	since time.Time   // since when reads of s fail; zero while they succeed
}

// mirrorProbe bounds a read of the backing store while the last one
// failed, so that reads are served from the copy quickly during an
// outage, yet each still tries the backing store first.
const mirrorProbe = 500 * time.Millisecond

// The mirror's watch retries: from mirrorBackoff, doubling up to
// mirrorMaxBackoff (each with jitter).
const (
	mirrorBackoff    = 100 * time.Millisecond
	mirrorMaxBackoff = 2 * time.Second
)

// NewMirror reads the whole of s (bounded by ctx) and keeps a copy of it
// current until Close.
func NewMirror(ctx context.Context, s Store) (*Mirror, error) {
	cp, err := loadCopy(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	m := &Mirror{s: s, cancel: cancel, done: make(chan struct{}), cp: cp}
	go m.run(wctx, cp.rev)
	return m, nil
}

// Stale reports whether the last read was served from the copy, the
// revision of the copy, and since when reads of the backing store fail
// (zero while they succeed). It turns false at the first read the backing
// store answers.
func (m *Mirror) Stale() (stale bool, rev int64, since time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stale, m.cp.rev, m.since
}

// Close stops the watch and closes the backing store.
func (m *Mirror) Close() error {
	m.cancel()
	<-m.done
	return m.s.Close()
}

// View implements Store.
func (m *Mirror) View(fn func(Tx) error) error {
	_, err := m.ViewRev(context.Background(), fn)
	return err
}

// ViewRev implements Store: fn runs on the backing store, or on the copy
// when the backing store fails with ErrUnavailable; the revision is the
// copy's then.
func (m *Mirror) ViewRev(ctx context.Context, fn func(Tx) error) (int64, error) {
	m.mu.Lock()
	stale := m.stale
	m.mu.Unlock()
	bctx := ctx
	if stale {
		var cancel context.CancelFunc
		bctx, cancel = context.WithTimeout(ctx, mirrorProbe)
		defer cancel()
	}
	rev, err := m.s.ViewRev(bctx, fn)
	if err == nil {
		m.mu.Lock()
		m.stale, m.since = false, time.Time{}
		m.mu.Unlock()
		return rev, nil
	}
	if ctx.Err() != nil || !errors.Is(err, ErrUnavailable) && bctx.Err() == nil {
		return 0, err
	}
	m.mu.Lock()
	if m.since.IsZero() {
		m.since = time.Now()
	}
	m.stale = true
	cp := m.cp
	cp.shared = true
	m.mu.Unlock()
	if err := fn(&mirrorTx{cp}); err != nil {
		return 0, err
	}
	return cp.rev, nil
}

// Update implements Store.
func (m *Mirror) Update(fn func(Tx) error) error { return m.s.Update(fn) }

// UpdateRev implements Store.
func (m *Mirror) UpdateRev(ctx context.Context, fn func(Tx) error) (int64, error) {
	return m.s.UpdateRev(ctx, fn)
}

// Revision implements Store.
func (m *Mirror) Revision(ctx context.Context) (int64, error) { return m.s.Revision(ctx) }

// Watch implements Store.
func (m *Mirror) Watch(ctx context.Context, fromRevision int64) *Watcher {
	return m.s.Watch(ctx, fromRevision)
}

// Announce implements Store.
func (m *Mirror) Announce(ctx context.Context, bucket, key string, value []byte, ttl time.Duration) error {
	return m.s.Announce(ctx, bucket, key, value, ttl)
}

// run keeps the copy current from revision rev on, until ctx ends or the
// backing store closes. A watch that fails is started again where it
// was, or, on ErrResync, after a full read.
func (m *Mirror) run(ctx context.Context, rev int64) {
	defer close(m.done)
	wait := mirrorBackoff
	reload := false
	for {
		if reload {
			cp, err := loadCopy(ctx, m.s)
			if err == nil {
				m.mu.Lock()
				m.cp = cp
				m.mu.Unlock()
				rev, reload, wait = cp.rev, false, mirrorBackoff
			}
		}
		if !reload {
			w := m.s.Watch(ctx, rev)
			for cm := range w.C {
				m.apply(cm)
				rev, wait = cm.Revision, mirrorBackoff
			}
			if errors.Is(w.Err(), errStoreClosed) {
				return
			}
			reload = errors.Is(w.Err(), ErrResync)
		}
		select {
		case <-time.After(wait/2 + rand.N(wait)):
		case <-ctx.Done():
			return
		}
		wait = min(2*wait, mirrorMaxBackoff)
	}
}

// apply makes a commit's changes to the copy: in place when no reader
// holds it, else on a new copy that shares the buckets it does not
// change.
func (m *Mirror) apply(cm Commit) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cp := m.cp
	if cp.shared {
		cp = &mirrorCopy{buckets: maps.Clone(cp.buckets), owned: map[string]bool{}}
		m.cp = cp
	}
	for _, ch := range cm.Changes {
		b := cp.buckets[ch.Bucket]
		if !cp.owned[ch.Bucket] {
			b = maps.Clone(b)
			if b == nil {
				b = map[string][]byte{}
			}
			cp.buckets[ch.Bucket] = b
			cp.owned[ch.Bucket] = true
		}
		if ch.Deleted {
			delete(b, ch.Key)
		} else {
			b[ch.Key] = ch.Value
		}
	}
	cp.rev = cm.Revision
}

// mirrorCopy is the whole store as of a revision. Its values are never
// changed in place (a watch's commits share them).
type mirrorCopy struct {
	rev     int64
	buckets map[string]map[string][]byte
	owned   map[string]bool // buckets no earlier copy shares
	shared  bool            // a reader holds it: it no longer changes
}

// loadCopy reads every bucket of s.
func loadCopy(ctx context.Context, s Store) (*mirrorCopy, error) {
	var cp *mirrorCopy
	rev, err := s.ViewRev(ctx, func(tx Tx) error {
		cp = &mirrorCopy{buckets: map[string]map[string][]byte{}, owned: map[string]bool{}}
		for _, name := range Buckets {
			b := map[string][]byte{}
			if err := tx.ForEach(name, func(k string, v []byte) error {
				b[k] = append([]byte{}, v...)
				return nil
			}); err != nil {
				return err
			}
			cp.buckets[name], cp.owned[name] = b, true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	cp.rev = rev
	return cp, nil
}

// mirrorTx is a read-only transaction on a copy.
type mirrorTx struct{ cp *mirrorCopy }

func (t *mirrorTx) Get(bucket, key string) ([]byte, error) {
	if err := checkBucket(bucket); err != nil {
		return nil, err
	}
	v, ok := t.cp.buckets[bucket][key]
	if !ok {
		return nil, nil
	}
	return append([]byte{}, v...), nil
}

func (t *mirrorTx) Put(bucket, key string, value []byte) error {
	return errors.New("write in a read-only transaction")
}

func (t *mirrorTx) Delete(bucket, key string) error {
	return errors.New("write in a read-only transaction")
}

func (t *mirrorTx) ForEach(bucket string, fn func(key string, value []byte) error) error {
	if err := checkBucket(bucket); err != nil {
		return err
	}
	b := t.cp.buckets[bucket]
	for _, k := range slices.Sorted(maps.Keys(b)) {
		if err := fn(k, append([]byte{}, b[k]...)); err != nil {
			return err
		}
	}
	return nil
}
