package graph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// storeKit makes the stores the conformance suite runs against.
type storeKit struct {
	// open returns a fresh, empty store, closed when the test ends.
	open func(t *testing.T) Store
	// twin returns another Store over the same data, as a second API
	// server holds it (for bbolt, which one process owns, s itself).
	twin func(t *testing.T, s Store) Store
	// forget makes every revision up to s's current one too old to
	// watch from (an etcd compaction; for bbolt, overflowing the ring).
	forget func(t *testing.T, s Store)
	// retries says fn runs again when another writer commits first.
	retries bool
}

// testStore is the conformance suite every Store passes.
func testStore(t *testing.T, kit storeKit) {
	t.Run("semantics", func(t *testing.T) { testSemantics(t, kit.open(t)) })
	t.Run("hosts", func(t *testing.T) { testHosts(t, kit.open(t)) })
	t.Run("realized", func(t *testing.T) { testRealized(t, kit.open(t)) })
	t.Run("announce", func(t *testing.T) { testAnnounce(t, kit.open(t)) })
	t.Run("revisions", func(t *testing.T) { testRevisions(t, kit.open(t)) })
	t.Run("watch", func(t *testing.T) { testWatch(t, kit.open(t)) })
	t.Run("watch resumes", func(t *testing.T) { testWatchResumes(t, kit.open(t)) })
	t.Run("concurrent counter", func(t *testing.T) {
		s := kit.open(t)
		testConcurrentCounter(t, s, kit.twin(t, s))
	})
	t.Run("concurrent bucket", func(t *testing.T) {
		s := kit.open(t)
		testConcurrentBucket(t, s, kit.twin(t, s))
	})
	if kit.retries {
		t.Run("conflict reruns fn", func(t *testing.T) {
			s := kit.open(t)
			testConflictReruns(t, s, kit.twin(t, s))
		})
	}
	t.Run("resync", func(t *testing.T) {
		s := kit.open(t)
		testResync(t, s, func() { kit.forget(t, s) })
	})
}

func mustUpdate(t *testing.T, s Store, fn func(Tx) error) int64 {
	t.Helper()
	rev, err := s.UpdateRev(context.Background(), fn)
	if err != nil {
		t.Fatalf("UpdateRev: %v", err)
	}
	return rev
}

func putFn(bucket, key, value string) func(Tx) error {
	return func(tx Tx) error { return tx.Put(bucket, key, []byte(value)) }
}

// dump reads a bucket as a map.
func dump(t *testing.T, s Store, bucket string) map[string]string {
	t.Helper()
	got := map[string]string{}
	if err := s.View(func(tx Tx) error {
		return tx.ForEach(bucket, func(k string, v []byte) error {
			got[k] = string(v)
			return nil
		})
	}); err != nil {
		t.Fatalf("ForEach %s: %v", bucket, err)
	}
	return got
}

func testSemantics(t *testing.T, s Store) {
	c1 := &CEN{ID: "b", Members: []Member{{"h", "c1"}}, IfName: "b", Group: 7, State: StateConfigured}
	c2 := &CEN{ID: "a", Members: []Member{}, IfName: "a", Group: 8, State: StatePending}
	if err := s.Update(func(tx Tx) error {
		if err := PutCEN(tx, c1); err != nil {
			return err
		}
		if err := PutCEN(tx, c2); err != nil {
			return err
		}
		// A transaction reads its own writes, in Get and ForEach.
		if v, err := tx.Get(bucketCENs, "a"); err != nil || v == nil {
			return fmt.Errorf("Get of own write = %q, %v", v, err)
		}
		if err := tx.Delete(bucketCENs, "b"); err != nil {
			return err
		}
		var keys []string
		if err := tx.ForEach(bucketCENs, func(k string, _ []byte) error {
			keys = append(keys, k)
			return nil
		}); err != nil {
			return err
		}
		if d := cmp.Diff([]string{"a"}, keys); d != "" {
			return fmt.Errorf("ForEach of own writes (-want +got):\n%s", d)
		}
		return PutCEN(tx, c1)
	}); err != nil {
		t.Fatal(err)
	}

	// A failing transaction leaves nothing behind.
	boom := errors.New("boom")
	err := s.Update(func(tx Tx) error {
		if err := DeleteCEN(tx, "a"); err != nil {
			return err
		}
		if err := PutContainer(tx, &Container{Host: "h", ID: "c1"}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update err = %v, want boom", err)
	}
	// Deleting a missing key is no error; keys come back in order.
	mustUpdate(t, s, func(tx Tx) error {
		if err := tx.Delete(bucketCINs, "missing"); err != nil {
			return err
		}
		for _, k := range []string{"h2/z", "h1/b", "h1/a", "h10/a"} {
			if err := tx.Put(bucketContainers, k, []byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err := s.View(func(tx Tx) error {
		got, err := ListCENs(tx)
		if err != nil {
			return err
		}
		if d := cmp.Diff([]*CEN{c2, c1}, got); d != "" {
			t.Errorf("ListCENs (-want +got):\n%s", d)
		}
		if _, err := GetContainer(tx, "h", "c1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("rolled-back container: err = %v, want ErrNotFound", err)
		}
		if _, err := GetCEN(tx, "zz"); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetCEN(zz) err = %v, want ErrNotFound", err)
		}
		var keys []string
		if err := tx.ForEach(bucketContainers, func(k string, _ []byte) error {
			keys = append(keys, k)
			return nil
		}); err != nil {
			return err
		}
		if d := cmp.Diff([]string{"h1/a", "h1/b", "h10/a", "h2/z"}, keys); d != "" {
			t.Errorf("ForEach order (-want +got):\n%s", d)
		}
		if _, err := tx.Get("nosuchbucket", "k"); err == nil {
			t.Errorf("Get of an unknown bucket: no error")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func testRevisions(t *testing.T, s Store) {
	ctx := context.Background()
	r0, err := s.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r1 := mustUpdate(t, s, putFn(bucketCENs, "a", "1"))
	r2 := mustUpdate(t, s, putFn(bucketCENs, "a", "2"))
	if !(r0 < r1 && r1 < r2) {
		t.Fatalf("revisions %d, %d, %d: want increasing", r0, r1, r2)
	}
	// Writing nothing, or failing, commits no revision.
	if r := mustUpdate(t, s, func(tx Tx) error { _, err := tx.Get(bucketCENs, "a"); return err }); r != r2 {
		t.Errorf("read-only UpdateRev = %d, want %d", r, r2)
	}
	if _, err := s.UpdateRev(ctx, func(tx Tx) error {
		tx.Put(bucketCENs, "a", []byte("3"))
		return errors.New("no")
	}); err == nil {
		t.Fatal("failing UpdateRev: no error")
	}
	var v []byte
	r, err := s.ViewRev(ctx, func(tx Tx) error {
		v, err = tx.Get(bucketCENs, "a")
		return err
	})
	if err != nil || r != r2 || string(v) != "2" {
		t.Errorf("ViewRev = %d, %q, %v; want %d, \"2\"", r, v, err, r2)
	}
	if r, err := s.Revision(ctx); err != nil || r != r2 {
		t.Errorf("Revision = %d, %v; want %d", r, err, r2)
	}
}

// next receives one commit, failing the test after a while.
func next(t *testing.T, w *Watcher) Commit {
	t.Helper()
	select {
	case cm, ok := <-w.C:
		if !ok {
			t.Fatalf("watch ended: %v", w.Err())
		}
		return cm
	case <-time.After(10 * time.Second):
		t.Fatal("no commit within 10s")
	}
	return Commit{}
}

func testWatch(t *testing.T, s Store) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rx := mustUpdate(t, s, putFn(bucketCENs, "x", "gone soon"))
	var want []Commit
	want = append(want, Commit{
		Revision: mustUpdate(t, s, func(tx Tx) error {
			tx.Put(bucketCINs, "b", []byte("B"))
			tx.Delete(bucketCENs, "x")
			tx.Delete(bucketCENs, "never was")
			return tx.Put(bucketCENs, "a", []byte("A"))
		}),
		Changes: []Change{
			{Bucket: bucketCENs, Key: "a", Value: []byte("A")},
			{Bucket: bucketCENs, Key: "x", Deleted: true},
			{Bucket: bucketCINs, Key: "b", Value: []byte("B")},
		},
	})
	want = append(want, Commit{
		Revision: mustUpdate(t, s, putFn(bucketContainers, "h/c", "")),
		Changes:  []Change{{Bucket: bucketContainers, Key: "h/c", Value: []byte{}}},
	})

	w := s.Watch(ctx, rx)
	var got []Commit
	for range want {
		got = append(got, next(t, w))
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("watched from %d (-want +got):\n%s", rx, d)
	}
	// A later commit is the next one delivered: nothing in between.
	later := mustUpdate(t, s, putFn(bucketCPools, "p", "P"))
	if cm := next(t, w); cm.Revision != later {
		t.Errorf("next commit at %d, want %d", cm.Revision, later)
	}
	// From a revision in the middle: only what follows it.
	w2 := s.Watch(ctx, want[0].Revision)
	if cm := next(t, w2); cm.Revision != want[1].Revision {
		t.Errorf("watch from %d: first commit at %d, want %d", want[0].Revision, cm.Revision, want[1].Revision)
	}
	cancel()
	for range w.C {
	}
	if !errors.Is(w.Err(), context.Canceled) {
		t.Errorf("cancelled watch ended with %v, want context.Canceled", w.Err())
	}
}

func testWatchResumes(t *testing.T, s Store) {
	const n = 60
	r0, err := s.Revision(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for i := range n {
			if err := s.Update(putFn(bucketCINs, "k", strconv.Itoa(i))); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	var got []string
	last := r0
	for len(got) < n {
		// Each round reads a few commits and hangs up while the writer
		// goes on; the next starts from the last revision seen.
		ctx, cancel := context.WithCancel(context.Background())
		w := s.Watch(ctx, last)
		for range 7 {
			if len(got) == n {
				break
			}
			cm := next(t, w)
			if cm.Revision <= last {
				t.Fatalf("commit at %d after %d", cm.Revision, last)
			}
			last = cm.Revision
			for _, ch := range cm.Changes {
				got = append(got, string(ch.Value))
			}
		}
		cancel()
		for range w.C {
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := make([]string, n)
	for i := range want {
		want[i] = strconv.Itoa(i)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("values seen across resumed watches (-want +got):\n%s", d)
	}
}

// increment reads a counter and writes it back plus one.
func increment(tx Tx, bucket, key string) error {
	v, err := tx.Get(bucket, key)
	if err != nil {
		return err
	}
	n := 0
	if v != nil {
		if n, err = strconv.Atoi(string(v)); err != nil {
			return err
		}
	}
	return tx.Put(bucket, key, []byte(strconv.Itoa(n+1)))
}

// both runs f on two stores at once, n times each.
func both(t *testing.T, a, b Store, n int, f func(s Store, writer, i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for w, s := range []Store{a, b} {
		wg.Go(func() {
			for i := range n {
				if err := f(s, w, i); err != nil {
					errs <- fmt.Errorf("writer %d, round %d: %w", w, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func testConcurrentCounter(t *testing.T, a, b Store) {
	const n = 100
	r0, err := a.Revision(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var attempts atomic.Int64
	both(t, a, b, n, func(s Store, w, i int) error {
		return s.Update(func(tx Tx) error {
			// Every run writes a key of its own: only the runs that
			// committed may leave one.
			run := attempts.Add(1)
			if err := tx.Put(bucketCPools, fmt.Sprintf("run-%06d", run), nil); err != nil {
				return err
			}
			return increment(tx, bucketCINs, "counter")
		})
	})
	if got := dump(t, a, bucketCINs)["counter"]; got != strconv.Itoa(2*n) {
		t.Errorf("counter = %s after 2×%d increments", got, n)
	}
	if got := len(dump(t, a, bucketCPools)); got != 2*n {
		t.Errorf("%d runs left a key, want %d (fn ran %d times)", got, 2*n, attempts.Load())
	}
	t.Logf("fn ran %d times for %d commits", attempts.Load(), 2*n)

	// The watch sees each commit once, counting up.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := a.Watch(ctx, r0)
	for i := 1; i <= 2*n; i++ {
		cm := next(t, w)
		var counter string
		for _, ch := range cm.Changes {
			if ch.Bucket == bucketCINs {
				counter = string(ch.Value)
			}
		}
		if counter != strconv.Itoa(i) || len(cm.Changes) != 2 {
			t.Fatalf("commit %d: %+v, want counter %d and one run key", i, cm.Changes, i)
		}
	}
}

func testConcurrentBucket(t *testing.T, a, b Store) {
	const n = 100
	both(t, a, b, n, func(s Store, w, i int) error {
		return s.Update(func(tx Tx) error {
			// Name the next key by how many there are.
			count := 0
			if err := tx.ForEach(bucketCENs, func(string, []byte) error {
				count++
				return nil
			}); err != nil {
				return err
			}
			return tx.Put(bucketCENs, fmt.Sprintf("k%04d", count), []byte(strconv.Itoa(w)))
		})
	})
	if got := len(dump(t, a, bucketCENs)); got != 2*n {
		t.Errorf("%d keys after 2×%d appends, want %d", got, n, 2*n)
	}
}

// testConflictReruns makes a commit lose against a twin's and checks that
// fn ran again, on the new state, and that its first run left nothing.
func testConflictReruns(t *testing.T, s, twin Store) {
	mustUpdate(t, s, putFn(bucketCINs, "counter", "1"))
	for _, tc := range []struct {
		name  string
		read  func(tx Tx) error
		other func(tx Tx) error
	}{
		{"key", func(tx Tx) error { _, err := tx.Get(bucketCINs, "counter"); return err }, putFn(bucketCINs, "counter", "10")},
		{"bucket", func(tx Tx) error {
			return tx.ForEach(bucketCENs, func(string, []byte) error { return nil })
		}, putFn(bucketCENs, "new", "")},
		{"bucket deletion", func(tx Tx) error {
			return tx.ForEach(bucketCENs, func(string, []byte) error { return nil })
		}, func(tx Tx) error { return tx.Delete(bucketCENs, "new") }},
		{"prefix", func(tx Tx) error { _, err := ListRealized(tx, RealizedCEN, "net"); return err },
			func(tx Tx) error {
				return PutRealized(tx, &Realized{Host: "hB", Kind: RealizedCEN, ID: "net", State: StateConfigured})
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runs := 0
			mustUpdate(t, s, func(tx Tx) error {
				runs++
				if err := tc.read(tx); err != nil {
					return err
				}
				if runs == 1 {
					mustUpdate(t, twin, tc.other)
					if err := tx.Put(bucketCPools, "first run", nil); err != nil {
						return err
					}
				}
				return tx.Put(bucketCPools, "run", []byte(strconv.Itoa(runs)))
			})
			if runs != 2 {
				t.Errorf("fn ran %d times, want 2", runs)
			}
			if d := cmp.Diff(map[string]string{"run": "2"}, dump(t, s, bucketCPools)); d != "" {
				t.Errorf("pools after the rerun (-want +got):\n%s", d)
			}
			mustUpdate(t, s, func(tx Tx) error { return tx.Delete(bucketCPools, "run") })
		})
	}
}

func testResync(t *testing.T, s Store, forget func()) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	old := mustUpdate(t, s, putFn(bucketCENs, "a", "1"))
	forget()
	w := s.Watch(ctx, old-1)
	select {
	case cm, ok := <-w.C:
		if ok {
			t.Fatalf("watch from a forgotten revision delivered %+v", cm)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch from a forgotten revision: no answer within 10s")
	}
	if !errors.Is(w.Err(), ErrResync) {
		t.Fatalf("watch from a forgotten revision ended with %v, want ErrResync", w.Err())
	}
	// The resync: a full read, and a watch from its revision.
	rev, err := s.ViewRev(ctx, func(tx Tx) error { return tx.ForEach(bucketCENs, func(string, []byte) error { return nil }) })
	if err != nil {
		t.Fatal(err)
	}
	w = s.Watch(ctx, rev)
	r := mustUpdate(t, s, putFn(bucketCENs, "b", "2"))
	if cm := next(t, w); cm.Revision != r {
		t.Errorf("watch after resync: commit at %d, want %d", cm.Revision, r)
	}
}

func testHosts(t *testing.T, s Store) {
	started := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	hs := []*Host{
		{ID: "hB", Underlay: "192.0.2.2", VXLANPort: 4789, MTU: 1450, VNIRange: "4096-16777215", Started: started},
		{ID: "hA", Underlay: "192.0.2.1", VXLANPort: 4789, MTU: 1450, VNIRange: "4096-16777215", Version: "v1.2", Started: started},
	}
	mustUpdate(t, s, func(tx Tx) error {
		for _, h := range hs {
			if err := PutHost(tx, h); err != nil {
				return err
			}
		}
		return nil
	})
	if err := s.View(func(tx Tx) error {
		got, err := ListHosts(tx)
		if err != nil {
			return err
		}
		if d := cmp.Diff([]*Host{hs[1], hs[0]}, got); d != "" {
			t.Errorf("ListHosts (-want +got):\n%s", d)
		}
		h, err := GetHost(tx, "hA")
		if err != nil {
			return err
		}
		if d := cmp.Diff(hs[1], h); d != "" {
			t.Errorf("GetHost (-want +got):\n%s", d)
		}
		if _, err := GetHost(tx, "hZ"); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetHost(hZ) err = %v, want ErrNotFound", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The JSON names are part of the API (GET /host shows them).
	raw := dump(t, s, BucketHosts)["hB"]
	want := `{"hostID":"hB","underlay":"192.0.2.2","vxlan_port":4789,"mtu":1450,"vni_range":"4096-16777215","started":"2026-12-01T10:00:00Z"}`
	if raw != want {
		t.Errorf("host record = %s, want %s", raw, want)
	}
	if err := s.Update(func(tx Tx) error { return PutHost(tx, &Host{ID: "a/b"}) }); !errors.Is(err, ErrInvalid) {
		t.Errorf("PutHost of a bad ID: %v, want ErrInvalid", err)
	}
}

func testRealized(t *testing.T, s Store) {
	rs := []*Realized{
		{Host: "hB", Kind: RealizedCEN, ID: "net", Revision: 7, State: StateConfigured},
		{Host: "hA", Kind: RealizedCEN, ID: "net", Revision: 7, State: StateFailed, Error: "no underlay"},
		{Host: "hA", Kind: RealizedCEN, ID: "net2", Revision: 3, State: StateConfigured},
		{Host: "hA", Kind: RealizedCEN, ID: "ne", Revision: 3, State: StateConfigured},
		{Host: "hA", Kind: RealizedCIN, ID: "net", Revision: 9, State: StateConfigured},
	}
	mustUpdate(t, s, func(tx Tx) error {
		for _, r := range rs {
			if err := PutRealized(tx, r); err != nil {
				return err
			}
		}
		return nil
	})
	list := func(kind, id string) []*Realized {
		t.Helper()
		var got []*Realized
		if err := s.View(func(tx Tx) (err error) {
			got, err = ListRealized(tx, kind, id)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	for _, tc := range []struct {
		kind, id string
		want     []*Realized
	}{
		{RealizedCEN, "net", []*Realized{rs[1], rs[0]}},
		{RealizedCEN, "ne", []*Realized{rs[3]}},
		{RealizedCIN, "net", []*Realized{rs[4]}},
		{RealizedCIN, "none", nil},
	} {
		if d := cmp.Diff(tc.want, list(tc.kind, tc.id)); d != "" {
			t.Errorf("ListRealized(%s, %s) (-want +got):\n%s", tc.kind, tc.id, d)
		}
	}
	if got := dump(t, s, BucketRealized)[RealizedKey(RealizedCEN, "net", "hA")]; got == "" {
		t.Errorf("no record under RealizedKey")
	}

	// Inside a transaction, ListRealized sees the transaction's own writes.
	mustUpdate(t, s, func(tx Tx) error {
		if err := DeleteRealized(tx, RealizedCEN, "net", "hB"); err != nil {
			return err
		}
		if err := PutRealized(tx, &Realized{Host: "hC", Kind: RealizedCEN, ID: "net", Revision: 8, State: StatePending}); err != nil {
			return err
		}
		got, err := ListRealized(tx, RealizedCEN, "net")
		if err != nil {
			return err
		}
		var hosts []string
		for _, r := range got {
			hosts = append(hosts, r.Host)
		}
		if d := cmp.Diff([]string{"hA", "hC"}, hosts); d != "" {
			t.Errorf("ListRealized of own writes (-want +got):\n%s", d)
		}
		return nil
	})
	if err := s.Update(func(tx Tx) error {
		return PutRealized(tx, &Realized{Host: "hA", Kind: "vm", ID: "x"})
	}); !errors.Is(err, ErrInvalid) {
		t.Errorf("PutRealized of kind vm: %v, want ErrInvalid", err)
	}
}

// nextChange receives commits until one changes bucket/key.
func nextChange(t *testing.T, w *Watcher, bucket, key string) Change {
	t.Helper()
	for {
		for _, ch := range next(t, w).Changes {
			if ch.Bucket == bucket && ch.Key == key {
				return ch
			}
		}
	}
}

func alive(t *testing.T, s Store) map[string]bool {
	t.Helper()
	var got map[string]bool
	if err := s.View(func(tx Tx) (err error) {
		got, err = ListAlive(tx)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

func testAnnounce(t *testing.T, s Store) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r0, err := s.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w := s.Watch(ctx, r0)

	// A ttl far longer than the test waits for the keys to go: they go
	// because the announcers remove them, not because they expire.
	const ttl = time.Minute
	actx, stop := context.WithCancel(ctx)
	done := make(chan error, 2)
	go func() { done <- s.Announce(actx, BucketAlive, "hA", []byte("A"), ttl) }()
	if ch := nextChange(t, w, BucketAlive, "hA"); ch.Deleted || string(ch.Value) != "A" {
		t.Fatalf("announced key: %+v", ch)
	}
	before := time.Now().UTC()
	go func() { done <- AnnounceHost(actx, s, "hB", ttl) }()
	ch := nextChange(t, w, BucketAlive, "hB")
	var v Alive
	if err := json.Unmarshal(ch.Value, &v); err != nil || v.Since.Before(before.Add(-time.Second)) || time.Since(v.Since) > 10*time.Second {
		t.Errorf("AnnounceHost value %s (%v): want {\"since\": now}", ch.Value, err)
	}
	if d := cmp.Diff(map[string]bool{"hA": true, "hB": true}, alive(t, s)); d != "" {
		t.Errorf("ListAlive (-want +got):\n%s", d)
	}

	// Ending ctx removes the keys at once, not a ttl later.
	stop()
	start := time.Now()
	for range 2 {
		if err := <-done; err != nil {
			t.Errorf("Announce returned %v after its ctx ended, want nil", err)
		}
	}
	for range 2 {
		if ch := next(t, w); len(ch.Changes) != 1 || !ch.Changes[0].Deleted {
			t.Errorf("after the announcers' end: %+v, want a deletion", ch)
		}
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("announced keys went %v after ctx ended", took)
	}
	if got := alive(t, s); len(got) != 0 {
		t.Errorf("ListAlive after the end = %v", got)
	}

	for _, tc := range []struct {
		name, bucket, key string
		ttl               time.Duration
	}{
		{"bucket not leased", bucketCENs, "x", time.Second},
		{"no bucket", "nosuchbucket", "x", time.Second},
		{"empty key", BucketAlive, "", time.Second},
		{"no ttl", BucketAlive, "x", 0},
	} {
		if err := s.Announce(ctx, tc.bucket, tc.key, nil, tc.ttl); !errors.Is(err, ErrInvalid) {
			t.Errorf("Announce, %s: %v, want ErrInvalid", tc.name, err)
		}
	}
	if err := AnnounceHost(ctx, s, "a/b", time.Second); !errors.Is(err, ErrInvalid) {
		t.Errorf("AnnounceHost of a bad ID: %v, want ErrInvalid", err)
	}
}
