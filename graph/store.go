package graph

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Store persists the graph. It is deliberately small: the embedded
// BoltStore and the EtcdStore shared by several hosts implement it, and
// callers do not know which one they hold.
//
// Every Update that writes something commits a new store revision.
// Revisions only grow; a BoltStore numbers them 1, 2, 3..., an EtcdStore
// uses the etcd cluster's revisions, which skip the numbers of writes
// outside the store's prefix. A reader learns the revision of what it saw
// (ViewRev) and can then Watch every later change, so it neither misses
// nor repeats one.
type Store interface {
	// View runs fn in a read-only transaction.
	View(fn func(Tx) error) error
	// Update runs fn in a read-write transaction, committed when fn
	// returns nil and rolled back otherwise. fn may run more than once
	// (stores that retry on contention do), so it must have no effects
	// outside the transaction.
	Update(fn func(Tx) error) error
	Close() error

	// ViewRev is View bounded by ctx; it returns the revision of the
	// state fn saw.
	ViewRev(ctx context.Context, fn func(Tx) error) (int64, error)
	// UpdateRev is Update bounded by ctx (its retries and waits); it
	// returns the revision fn's changes were committed at, or the
	// revision fn read at when it wrote nothing.
	UpdateRev(ctx context.Context, fn func(Tx) error) (int64, error)
	// Revision returns the store's current revision.
	Revision(ctx context.Context) (int64, error)
	// Watch delivers every commit after fromRevision, in revision order,
	// until ctx ends or the watch fails; see Watcher. When the changes
	// after fromRevision are no longer kept, the Watcher ends at once
	// with an error wrapping ErrResync.
	Watch(ctx context.Context, fromRevision int64) *Watcher

	// Announce keeps key in a bucket of leased keys (BucketAlive) with
	// value while ctx lasts and this process can reach the store, and
	// returns nil once ctx ends and the key is removed. The key goes
	// (a deletion that watchers see) about ttl after this process stops
	// reaching the store, or dies; when it can reach the store again, the
	// key is put again. It fails at once on a bad bucket or key, and
	// when the store closes.
	//
	// Leased keys come and go outside transactions: a transaction that
	// lists such a bucket is not run again when one of its keys expires.
	Announce(ctx context.Context, bucket, key string, value []byte, ttl time.Duration) error
}

// Tx is one transaction over named buckets of keys.
type Tx interface {
	// Get returns the value under key, or nil when there is none.
	Get(bucket, key string) ([]byte, error)
	Put(bucket, key string, value []byte) error
	// Delete removes key; deleting a missing key is not an error.
	Delete(bucket, key string) error
	// ForEach calls fn for every key of bucket in ascending key order.
	ForEach(bucket string, fn func(key string, value []byte) error) error
}

// ErrResync says a watcher cannot be told every change it asked for: the
// revision it wants to start after is no longer kept (an etcd compaction,
// or older than the BoltStore's ring of recent commits), or it fell
// behind. The caller reads the whole state again with ViewRev and
// watches from that revision.
var ErrResync = errors.New("changes no longer kept: resync from a full read")

// Change is one key's change in a commit: its new value, or its deletion.
type Change struct {
	Bucket  string
	Key     string
	Value   []byte // nil when Deleted
	Deleted bool
}

// Commit is what one Update changed, at the revision it committed. Its
// changes are in ascending (bucket, key) order, one per key.
type Commit struct {
	Revision int64
	Changes  []Change
}

// Watcher delivers commits on C in revision order, each exactly once. C
// is closed when the watch ends: when its context ends, the store closes,
// or it fails (ErrResync, ErrUnavailable); Err then says why.
type Watcher struct {
	C <-chan Commit

	c   chan Commit
	err error // written once, before c is closed
}

func newWatcher() *Watcher {
	c := make(chan Commit)
	return &Watcher{C: c, c: c}
}

// Err returns why the watch ended; it is valid once C is closed.
func (w *Watcher) Err() error { return w.err }

// send hands cm to the reader, or reports false when ctx ends first.
func (w *Watcher) send(ctx context.Context, cm Commit) bool {
	select {
	case w.c <- cm:
		return true
	case <-ctx.Done():
		return false
	}
}

// end records why the watch ended and closes C.
func (w *Watcher) end(err error) {
	w.err = err
	close(w.c)
}

// errStoreClosed ends the watches of a store that closed.
var errStoreClosed = errors.New("store closed")

// checkLeased checks Announce's arguments.
func checkLeased(bucket, key string, ttl time.Duration) error {
	if !slices.Contains(leasedBuckets, bucket) {
		return Errorf(ErrInvalid, "announce in bucket %q: not a bucket of leased keys", bucket)
	}
	if key == "" {
		return Errorf(ErrInvalid, "announce in bucket %q: empty key", bucket)
	}
	if ttl <= 0 {
		return Errorf(ErrInvalid, "announce %s/%s: ttl %v", bucket, key, ttl)
	}
	return nil
}

// announceErr wraps an Announce failure.
func announceErr(bucket, key string, err error) error {
	return fmt.Errorf("announce %s/%s: %w", bucket, key, err)
}
