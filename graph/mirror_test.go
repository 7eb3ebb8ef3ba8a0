package graph

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// mirrorKit makes Mirrors over the stores of kit: a Mirror must pass the
// conformance suite as the store it wraps does.
func mirrorKit(kit storeKit) storeKit {
	return storeKit{
		open:    func(t *testing.T) Store { return openMirror(t, kit.open(t)) },
		twin:    func(t *testing.T, s Store) Store { return kit.twin(t, s.(*Mirror).s) },
		forget:  func(t *testing.T, s Store) { kit.forget(t, s.(*Mirror).s) },
		retries: kit.retries,
	}
}

func openMirror(t *testing.T, s Store) *Mirror {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := NewMirror(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// waitCopy waits until m's copy is at revision rev.
func waitCopy(t *testing.T, m *Mirror, rev int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, r, _ := m.Stale()
		if r >= rev {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("copy at revision %d after 10s, want %d", r, rev)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// dumpCopy reads every bucket of m's copy.
func dumpCopy(t *testing.T, m *Mirror) map[string]map[string]string {
	t.Helper()
	m.mu.Lock()
	cp := m.cp
	cp.shared = true
	m.mu.Unlock()
	return dumpAll(t, &mirrorTx{cp})
}

func dumpAll(t *testing.T, tx Tx) map[string]map[string]string {
	t.Helper()
	got := map[string]map[string]string{}
	for _, b := range Buckets {
		got[b] = map[string]string{}
		if err := tx.ForEach(b, func(k string, v []byte) error {
			got[b][k] = string(v)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return got
}

// testMirror runs the conformance suite on Mirrors over kit's stores, and
// checks that the copy follows the store.
func testMirror(t *testing.T, kit storeKit) {
	testStore(t, mirrorKit(kit))
	t.Run("copy", func(t *testing.T) {
		s := kit.open(t)
		mustUpdate(t, s, putFn(bucketCENs, "before", "the mirror"))
		m := openMirror(t, s)
		twin := kit.twin(t, s)
		var rev int64
		var held *mirrorCopy
		var heldWas map[string]map[string]string
		for i := range 20 {
			// Writes through the mirror and through another store,
			// puts, overwrites and deletions, in several buckets.
			w := []Store{m, twin}[i%2]
			rev = mustUpdate(t, w, func(tx Tx) error {
				if err := tx.Put(bucketCENs, fmt.Sprint("k", i%7), []byte(strconv.Itoa(i))); err != nil {
					return err
				}
				if err := tx.Put(BucketRealized, fmt.Sprint("cen/x/h", i), nil); err != nil {
					return err
				}
				return tx.Delete(BucketRealized, fmt.Sprint("cen/x/h", i-3))
			})
			if i == 10 {
				// A reader holds the copy: later changes leave it be.
				m.mu.Lock()
				held = m.cp
				held.shared = true
				m.mu.Unlock()
				heldWas = dumpAll(t, &mirrorTx{held})
			}
		}
		waitCopy(t, m, rev)
		var want map[string]map[string]string
		if err := s.View(func(tx Tx) error { want = dumpAll(t, tx); return nil }); err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, dumpCopy(t, m)); d != "" {
			t.Errorf("copy (-store +copy):\n%s", d)
		}
		if stale, r, since := m.Stale(); stale || r != rev || !since.IsZero() {
			t.Errorf("Stale() = %v, %d, %v; want false, %d, zero", stale, r, since, rev)
		}
		if d := cmp.Diff(heldWas, dumpAll(t, &mirrorTx{held})); d != "" {
			t.Errorf("a copy a reader held changed (-before +after):\n%s", d)
		}
	})
}

func TestBoltMirror(t *testing.T) { testMirror(t, boltKit()) }

func TestEtcdMirror(t *testing.T) { testMirror(t, etcdKit(startEtcd(t))) }

// TestBoltMirrorResync holds the copy's writer while more commits than the
// BoltStore keeps are made: its watch ends with ErrResync, and the copy is
// read again in full.
func TestBoltMirrorResync(t *testing.T) {
	s := boltKit().open(t)
	m := openMirror(t, s)
	m.mu.Lock()
	var rev int64
	for i := range 2 * testRing {
		rev = mustUpdate(t, s, putFn(bucketCENs, fmt.Sprint("k", i%10), strconv.Itoa(i)))
	}
	m.mu.Unlock()
	waitCopy(t, m, rev)
	want := map[string]string{}
	for i := 2*testRing - 10; i < 2*testRing; i++ {
		want[fmt.Sprint("k", i%10)] = strconv.Itoa(i)
	}
	if d := cmp.Diff(want, dumpCopy(t, m)[bucketCENs]); d != "" {
		t.Errorf("copy after resync (-want +got):\n%s", d)
	}
}

// TestEtcdMirrorPaused reads through a Mirror while etcd answers nothing:
// reads are served from the copy and say so, writes fail within the
// request timeout, and all resumes when etcd answers again.
func TestEtcdMirrorPaused(t *testing.T) {
	t.Parallel()
	srv := startEtcd(t)
	s := etcdKit(srv).open(t).(*EtcdStore)
	s.timeout = time.Second
	m := openMirror(t, s)
	c := &CEN{ID: "net", Members: []Member{{"hA", "c1"}}, IfName: "net", State: StateConfigured}
	rev := mustUpdate(t, m, func(tx Tx) error { return PutCEN(tx, c) })
	waitCopy(t, m, rev)
	read := func() (*CEN, time.Duration, error) {
		start := time.Now()
		var got *CEN
		_, err := m.ViewRev(context.Background(), func(tx Tx) (err error) {
			got, err = GetCEN(tx, "net")
			return err
		})
		return got, time.Since(start), err
	}

	srv.pause(t)
	paused := time.Now()
	for i, limit := range []time.Duration{s.timeout + time.Second, mirrorProbe + time.Second} {
		got, took, err := read()
		if err != nil {
			t.Fatalf("read %d with etcd paused: %v", i, err)
		}
		if d := cmp.Diff(c, got); d != "" {
			t.Errorf("read %d with etcd paused (-want +got):\n%s", i, d)
		}
		if took > limit {
			t.Errorf("read %d with etcd paused took %v, want within %v", i, took, limit)
		}
		stale, r, since := m.Stale()
		if !stale || r != rev || since.Before(paused) || since.After(time.Now()) {
			t.Errorf("Stale() = %v, %d, %v; want true, %d, after %v", stale, r, since, rev, paused)
		}
	}
	// A failing fn fails the read, from the copy too.
	if _, err := m.ViewRev(context.Background(), func(tx Tx) error {
		_, err := GetCEN(tx, "nothere")
		return err
	}); !errors.Is(err, ErrNotFound) {
		t.Errorf("read of a missing CEN: %v, want ErrNotFound", err)
	}
	start := time.Now()
	err := m.Update(func(tx Tx) error { return PutCEN(tx, &CEN{ID: "other"}) })
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("write with etcd paused: %v, want ErrUnavailable", err)
	}
	if took := time.Since(start); took > s.timeout+time.Second {
		t.Errorf("write with etcd paused took %v", took)
	}

	srv.resume(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, _, err := read(); err != nil {
			t.Fatal(err)
		}
		if stale, _, since := m.Stale(); !stale && since.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("reads still served from the copy 10s after etcd answers again")
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.State = StateUnconfigured
	rev = mustUpdate(t, m, func(tx Tx) error { return PutCEN(tx, c) })
	waitCopy(t, m, rev)
	if got := dumpCopy(t, m)[bucketCENs]["net"]; got == "" || !cmp.Equal(c, decodeCEN(t, got)) {
		t.Errorf("copy after etcd answers again: %s", got)
	}
}

func decodeCEN(t *testing.T, s string) *CEN {
	t.Helper()
	c := new(CEN)
	if err := decode(bucketCENs, "", []byte(s), c); err != nil {
		t.Fatal(err)
	}
	return c
}
