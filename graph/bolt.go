package graph

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// BoltStore is the embedded Store: one bbolt file. Its revision counter
// lives in the file; its watchers are served from a ring of the most
// recent commits kept in memory (BoltRingSize of them, none from before
// the store was opened).
type BoltStore struct {
	db *bolt.DB

	// wmu serializes commits with their publication, so that commits
	// enter the ring in revision order.
	wmu sync.Mutex

	mu     sync.Mutex // guards the fields below
	rev    int64      // the last committed revision
	start  int64      // the revision at open: the ring holds none up to it
	ring   []Commit   // commit r at ring[r%len(ring)], for r in (max(start, rev-len(ring)), rev]
	wake   chan struct{}
	closed bool
}

// StoreFile is the name of the store's file inside the state directory.
const StoreFile = "leviathan.db"

// BoltRingSize is how many recent commits a BoltStore keeps for its
// watchers: a Watch from further back, or a watcher that falls further
// behind, gets ErrResync.
const BoltRingSize = 1024

// metaBucket holds the store's own records: the revision counter.
const (
	metaBucket = "leviathan.meta"
	revKey     = "revision"
)

// OpenBolt opens (creating if needed) the store in dir. It fails at once,
// rather than hanging, when another process holds the file.
func OpenBolt(dir string) (*BoltStore, error) { return openBolt(dir, BoltRingSize) }

func openBolt(dir string, ringSize int) (*BoltStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	path := filepath.Join(dir, StoreFile)
	db, err := openBoltFile(path)
	if err != nil {
		return nil, err
	}
	// Read the whole file once: bbolt's consistency check walks every
	// page reachable from the root and the freelist. A store holds a few
	// thousand small objects, so this costs milliseconds at start, and a
	// damaged page is found now, not by a request later.
	if err := checkBolt(db); err != nil {
		db.Close()
		return nil, corrupt(path, err)
	}
	var rev int64
	err = catch(func() error {
		return db.Update(func(tx *bolt.Tx) error {
			for _, b := range append([]string{metaBucket}, Buckets...) {
				if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
					return err
				}
			}
			// Leased keys were announced by a process that held the
			// file and is gone: they go with it. The revision does not
			// change, as no watcher can have seen them.
			for _, b := range leasedBuckets {
				if err := tx.DeleteBucket([]byte(b)); err != nil {
					return err
				}
				if _, err := tx.CreateBucket([]byte(b)); err != nil {
					return err
				}
			}
			rev = readRev(tx)
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init store %s: %w", path, err)
	}
	return &BoltStore{
		db:    db,
		rev:   rev,
		start: rev,
		ring:  make([]Commit, ringSize),
		wake:  make(chan struct{}),
	}, nil
}

func readRev(tx *bolt.Tx) int64 {
	v := tx.Bucket([]byte(metaBucket)).Get([]byte(revKey))
	if len(v) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v))
}

// View implements Store.
func (s *BoltStore) View(fn func(Tx) error) error {
	_, err := s.ViewRev(context.Background(), fn)
	return err
}

// ViewRev implements Store.
func (s *BoltStore) ViewRev(ctx context.Context, fn func(Tx) error) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var rev int64
	err := s.db.View(func(tx *bolt.Tx) error {
		rev = readRev(tx)
		return fn(&boltTx{tx: tx})
	})
	return rev, err
}

// Update implements Store.
func (s *BoltStore) Update(fn func(Tx) error) error {
	_, err := s.UpdateRev(context.Background(), fn)
	return err
}

// UpdateRev implements Store. bbolt runs one writer at a time, so fn runs
// exactly once.
func (s *BoltStore) UpdateRev(ctx context.Context, fn func(Tx) error) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	var cm Commit
	err := s.db.Update(func(tx *bolt.Tx) error {
		t := &boltTx{tx: tx, writes: map[bucketKey]*boltWrite{}}
		if err := fn(t); err != nil {
			return err
		}
		cm.Revision = readRev(tx)
		cm.Changes = t.changes()
		if len(cm.Changes) == 0 {
			return nil
		}
		cm.Revision++
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], uint64(cm.Revision))
		return tx.Bucket([]byte(metaBucket)).Put([]byte(revKey), v[:])
	})
	if err != nil {
		return 0, err
	}
	if len(cm.Changes) > 0 {
		s.publish(cm)
	}
	return cm.Revision, nil
}

// publish puts a committed change in the ring and wakes the watchers.
func (s *BoltStore) publish(cm Commit) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev = cm.Revision
	s.ring[cm.Revision%int64(len(s.ring))] = cm
	if s.closed {
		return // Close woke the watchers for the last time
	}
	close(s.wake)
	s.wake = make(chan struct{})
}

// Revision implements Store.
func (s *BoltStore) Revision(ctx context.Context) (int64, error) {
	return s.ViewRev(ctx, func(Tx) error { return nil })
}

// Watch implements Store. A watcher reads the shared ring at its own pace
// and never holds up a commit; one that falls more than BoltRingSize
// commits behind ends with ErrResync.
func (s *BoltStore) Watch(ctx context.Context, fromRevision int64) *Watcher {
	w := newWatcher()
	go s.serve(ctx, w, max(fromRevision, 0)+1)
	return w
}

// serve delivers the commits from revision next on.
func (s *BoltStore) serve(ctx context.Context, w *Watcher, next int64) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			w.end(errStoreClosed)
			return
		}
		if next <= s.rev {
			if oldest := max(s.start, s.rev-int64(len(s.ring))) + 1; next < oldest {
				s.mu.Unlock()
				w.end(fmt.Errorf("watch from revision %d: the oldest kept is %d: %w", next-1, oldest, ErrResync))
				return
			}
			cm := s.ring[next%int64(len(s.ring))]
			s.mu.Unlock()
			if !w.send(ctx, cm) {
				w.end(ctx.Err())
				return
			}
			next++
			continue
		}
		wake := s.wake
		s.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			w.end(ctx.Err())
			return
		}
	}
}

// Announce implements Store. One process holds the file, so the key is
// put, and deleted when ctx ends; one left by a crash goes at the next
// open. ttl is not used.
func (s *BoltStore) Announce(ctx context.Context, bucket, key string, value []byte, ttl time.Duration) error {
	if err := checkLeased(bucket, key, ttl); err != nil {
		return err
	}
	if err := s.Update(func(tx Tx) error { return tx.Put(bucket, key, value) }); err != nil {
		return announceErr(bucket, key, err)
	}
	for {
		s.mu.Lock()
		closed, wake := s.closed, s.wake
		s.mu.Unlock()
		if closed {
			return announceErr(bucket, key, errStoreClosed)
		}
		select {
		case <-wake: // a commit, or the store closed
		case <-ctx.Done():
			if err := s.Update(func(tx Tx) error { return tx.Delete(bucket, key) }); err != nil {
				return announceErr(bucket, key, err)
			}
			return nil
		}
	}
}

// Close implements Store. It ends every watch.
func (s *BoltStore) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.wake)
	}
	s.mu.Unlock()
	return s.db.Close()
}

type bucketKey struct{ bucket, key string }

// boltWrite is what a transaction did to one key: whether it existed
// before, and its value now (nil: deleted).
type boltWrite struct {
	existed bool
	value   []byte
}

type boltTx struct {
	tx     *bolt.Tx
	writes map[bucketKey]*boltWrite // nil in a read-only transaction
}

func (t *boltTx) bucket(name string) (*bolt.Bucket, error) {
	if name == metaBucket {
		return nil, fmt.Errorf("bucket %q is the store's own", name)
	}
	b := t.tx.Bucket([]byte(name))
	if b == nil {
		return nil, fmt.Errorf("store has no bucket %q", name)
	}
	return b, nil
}

// record notes a write of key; value nil is a deletion.
func (t *boltTx) record(b *bolt.Bucket, bucket, key string, value []byte) {
	if t.writes == nil {
		return
	}
	k := bucketKey{bucket, key}
	w := t.writes[k]
	if w == nil {
		w = &boltWrite{existed: b.Get([]byte(key)) != nil}
		t.writes[k] = w
	}
	w.value = value
}

// changes lists what the transaction changed, in (bucket, key) order.
func (t *boltTx) changes() []Change {
	var out []Change
	for k, w := range t.writes {
		switch {
		case w.value != nil:
			out = append(out, Change{Bucket: k.bucket, Key: k.key, Value: w.value})
		case w.existed:
			out = append(out, Change{Bucket: k.bucket, Key: k.key, Deleted: true})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Bucket != out[j].Bucket {
			return out[i].Bucket < out[j].Bucket
		}
		return out[i].Key < out[j].Key
	})
	return out
}

func (t *boltTx) Get(bucket, key string) ([]byte, error) {
	b, err := t.bucket(bucket)
	if err != nil {
		return nil, err
	}
	v := b.Get([]byte(key))
	if v == nil {
		return nil, nil
	}
	// bbolt's memory is only valid inside the transaction.
	return append([]byte(nil), v...), nil
}

func (t *boltTx) Put(bucket, key string, value []byte) error {
	b, err := t.bucket(bucket)
	if err != nil {
		return err
	}
	// Copied: the caller may reuse value, and the commit outlives it.
	value = append(make([]byte, 0, len(value)), value...)
	t.record(b, bucket, key, value)
	return b.Put([]byte(key), value)
}

func (t *boltTx) Delete(bucket, key string) error {
	b, err := t.bucket(bucket)
	if err != nil {
		return err
	}
	t.record(b, bucket, key, nil)
	return b.Delete([]byte(key))
}

func (t *boltTx) ForEach(bucket string, fn func(key string, value []byte) error) error {
	b, err := t.bucket(bucket)
	if err != nil {
		return err
	}
	return b.ForEach(func(k, v []byte) error { return fn(string(k), v) })
}

func (t *boltTx) forEachPrefix(bucket, prefix string, fn func(key string, value []byte) error) error {
	b, err := t.bucket(bucket)
	if err != nil {
		return err
	}
	c := b.Cursor()
	for k, v := c.Seek([]byte(prefix)); k != nil && strings.HasPrefix(string(k), prefix); k, v = c.Next() {
		if err := fn(string(k), v); err != nil {
			return err
		}
	}
	return nil
}

// ErrCorrupt is the error of a store file that cannot be read as a
// store: garbage, a torn write the file system did not undo, a file of
// another program.
var ErrCorrupt = errors.New("corrupt")

// openBoltFile is bolt.Open, with its errors and panics on a damaged file
// turned into ErrCorrupt.
//
// Durability: every commit is fsynced before Update returns (bbolt's
// default, NoSync false, with the freelist synced too): a crash or a
// power cut loses no committed change, and bbolt's two meta pages keep a
// write torn mid-commit from being seen. Nothing here may turn NoSync or
// NoFreelistSync on.
func openBoltFile(path string) (*bolt.DB, error) {
	var db *bolt.DB
	err := catch(func() (err error) {
		db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
		return err
	})
	var pe *panicError
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("open store %s: held by another process (is another leviathan running with this --state-dir?): %w", path, err)
	case errors.As(err, &pe), errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum),
		errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrInvalidMapping):
		// A panic in Open leaves bbolt's file descriptor and lock open
		// with no way to close them; the caller exits on this error.
		return nil, corrupt(path, err)
	}
	return nil, fmt.Errorf("open store %s: %w", path, err)
}

// checkBolt runs bbolt's consistency check and returns its first finding.
func checkBolt(db *bolt.DB) error {
	return catch(func() error {
		return db.View(func(tx *bolt.Tx) error {
			var first error
			for err := range tx.Check() {
				if first == nil {
					first = err
				}
			}
			return first
		})
	})
}

func corrupt(path string, err error) error {
	return fmt.Errorf("store %s is %w (%v): move it away to start empty, or restore it from a copy", path, ErrCorrupt, err)
}

// panicError is a panic caught by catch.
type panicError struct{ v any }

func (e *panicError) Error() string { return fmt.Sprintf("bbolt panicked: %v", e.v) }

// catch runs fn, turning a panic into an error: bbolt panics, rather than
// failing, on some damaged pages.
func catch(fn func() error) (err error) {
	// A damaged page can point bbolt outside its mapping: make that fault
	// a panic here rather than a crash of the process.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{v}
		}
	}()
	return fn()
}
