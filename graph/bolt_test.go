package graph

import (
	"context"
	"errors"
	"testing"
	"time"
)

// testRing is the ring size of the BoltStores under test: smaller than
// BoltRingSize, so that overflowing it is quick, and larger than the
// 200 commits the suite watches after the fact.
const testRing = 256

func boltKit() storeKit {
	return storeKit{
		open: func(t *testing.T) Store {
			s, err := openBolt(t.TempDir(), testRing)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		twin: func(t *testing.T, s Store) Store { return s },
		forget: func(t *testing.T, s Store) {
			for range testRing {
				mustUpdate(t, s, putFn(bucketCPools, "filler", "x"))
			}
		},
	}
}

func TestBoltStore(t *testing.T) { testStore(t, boltKit()) }

func TestBoltRevisionSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := openBolt(dir, testRing)
	if err != nil {
		t.Fatal(err)
	}
	r := mustUpdate(t, s, putFn(bucketCENs, "a", "1"))
	s.Close()
	if s, err = openBolt(dir, testRing); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if got, err := s.Revision(ctx); err != nil || got != r {
		t.Fatalf("Revision after reopen = %d, %v; want %d", got, err, r)
	}
	if got := mustUpdate(t, s, putFn(bucketCENs, "a", "2")); got != r+1 {
		t.Errorf("first commit after reopen at %d, want %d", got, r+1)
	}
	// The ring starts empty: what came before the reopen is gone.
	w := s.Watch(ctx, r-1)
	for range w.C {
		t.Error("watch from before the reopen delivered a commit")
	}
	if !errors.Is(w.Err(), ErrResync) {
		t.Errorf("watch from before the reopen ended with %v, want ErrResync", w.Err())
	}
}

func TestBoltSlowWatcherResyncs(t *testing.T) {
	s := boltKit().open(t)
	ctx := context.Background()
	r0, err := s.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w := s.Watch(ctx, r0)
	// It reads nothing while twice the ring is written: the writers never
	// wait for it, and it is told to resync.
	for range 2 * testRing {
		mustUpdate(t, s, putFn(bucketCENs, "a", "x"))
	}
	n := 0
	for range w.C {
		n++
	}
	if !errors.Is(w.Err(), ErrResync) {
		t.Errorf("slow watcher ended with %v after %d commits, want ErrResync", w.Err(), n)
	}
}

// TestBoltAnnounce checks what the conformance suite cannot: a BoltStore's
// leased keys do not outlive the process that announced them.
func TestBoltAnnounce(t *testing.T) {
	dir := t.TempDir()
	s, err := openBolt(dir, testRing)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- AnnounceHost(context.Background(), s, "hA", time.Second) }()
	for !alive(t, s)["hA"] {
		time.Sleep(10 * time.Millisecond)
	}
	// Closing the store ends Announce, and leaves the key in the file as
	// a crash would; the next open drops it.
	s.Close()
	if err := <-done; !errors.Is(err, errStoreClosed) {
		t.Errorf("Announce on a closed store returned %v, want errStoreClosed", err)
	}
	if s, err = openBolt(dir, testRing); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := alive(t, s); len(got) != 0 {
		t.Errorf("leased keys after reopen: %v", got)
	}
}
