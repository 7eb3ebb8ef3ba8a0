package graph

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Store persists the graph. It is deliberately small so that an etcd
// implementation can follow for several hosts without touching callers.
type Store interface {
	// View runs fn in a read-only transaction.
	View(fn func(Tx) error) error
	// Update runs fn in a read-write transaction, committed when fn
	// returns nil and rolled back otherwise. fn may run more than once
	// (stores that retry on contention do), so it must have no effects
	// outside the transaction.
	Update(fn func(Tx) error) error
	Close() error
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

// BoltStore is the embedded Store: one bbolt file.
type BoltStore struct {
	db *bolt.DB
}

// StoreFile is the name of the store's file inside the state directory.
const StoreFile = "leviathan.db"

// ErrCorrupt is the error of a store file that cannot be read as a
// store: garbage, a torn write the file system did not undo, a file of
// another program.
var ErrCorrupt = errors.New("corrupt")

// OpenBolt opens (creating if needed) the store in dir. It fails at once,
// rather than hanging, when another process holds the file, and with an
// error that names the file (errors.Is ErrCorrupt) when the file is not a
// sound store, rather than the panic bbolt raises reading some garbage.
//
// Durability: every commit is fsynced before Update returns (bbolt's
// default, NoSync false, with the freelist synced too): a crash or a
// power cut loses no committed change, and bbolt's two meta pages keep a
// write torn mid-commit from being seen. Nothing here may turn NoSync or
// NoFreelistSync on.
func OpenBolt(dir string) (*BoltStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	path := filepath.Join(dir, StoreFile)
	db, err := openBolt(path)
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
	err = catch(func() error {
		return db.Update(func(tx *bolt.Tx) error {
			for _, b := range Buckets {
				if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init store %s: %w", path, err)
	}
	return &BoltStore{db: db}, nil
}

// openBolt is bolt.Open, with its errors and panics on a damaged file
// turned into ErrCorrupt.
func openBolt(path string) (*bolt.DB, error) {
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

// View implements Store.
func (s *BoltStore) View(fn func(Tx) error) error {
	return s.db.View(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

// Update implements Store.
func (s *BoltStore) Update(fn func(Tx) error) error {
	return s.db.Update(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

// Close implements Store.
func (s *BoltStore) Close() error { return s.db.Close() }

type boltTx struct{ tx *bolt.Tx }

func (t boltTx) bucket(name string) (*bolt.Bucket, error) {
	b := t.tx.Bucket([]byte(name))
	if b == nil {
		return nil, fmt.Errorf("store has no bucket %q", name)
	}
	return b, nil
}

func (t boltTx) Get(bucket, key string) ([]byte, error) {
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

func (t boltTx) Put(bucket, key string, value []byte) error {
	b, err := t.bucket(bucket)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), value)
}

func (t boltTx) Delete(bucket, key string) error {
	b, err := t.bucket(bucket)
	if err != nil {
		return err
	}
	return b.Delete([]byte(key))
}

func (t boltTx) ForEach(bucket string, fn func(key string, value []byte) error) error {
	b, err := t.bucket(bucket)
	if err != nil {
		return err
	}
	return b.ForEach(func(k, v []byte) error { return fn(string(k), v) })
}
