package core

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/leviathan-net/leviathan/cen"
	"github.com/leviathan-net/leviathan/cin"
	"github.com/leviathan-net/leviathan/graph"
)

// batchRecorder is a Metrics that keeps what it is told.
type batchRecorder struct {
	mu  sync.Mutex
	got []string // "kind op ok|failed"
}

func (r *batchRecorder) ObserveBatch(kind string, op Op, ok bool, took time.Duration) {
	outcome := "ok"
	if !ok {
		outcome = "failed"
	}
	if took <= 0 {
		outcome += " (no time)"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, kind+" "+string(op)+" "+outcome)
}

// Every make and destroy call on CENs and CINs reaches Metrics once, with
// its outcome; a call refused before it starts (a malformed ID) does not.
func TestMetricsObserveEveryBatch(t *testing.T) {
	ctx := context.Background()
	store, err := graph.OpenBolt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	k := newFakeKernel()
	rec := &batchRecorder{}
	s, err := New(Options{HostID: "h", Store: store, Fabric: k, Runtimes: []Runtime{&NetnsRuntime{NS: k}}, Metrics: rec})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ImportCENs(ctx, []cen.Spec{{ID: "c", Containers: []string{"a", "b"}}, {ID: "d", Containers: []string{"e", "f"}}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.PutCIN(ctx, cin.Spec{ID: "n", CENs: []string{"c"}}); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		do   func() error
	}{
		{"make two CENs", func() error { _, err := s.MakeCENs(ctx, []string{"c", "d"}); return err }},
		{"make a CIN", func() error { _, err := s.MakeCINs(ctx, []string{"n"}); return err }},
		{"destroy a CEN in a made CIN", func() error { _, err := s.DestroyCENs(ctx, []string{"c"}); return err }},
		{"destroy the CIN", func() error { _, err := s.DestroyCINs(ctx, []string{"n"}); return err }},
		{"a port fails", func() error { k.failOn = "e"; _, err := s.MakeCENs(ctx, []string{"d"}); return err }},
		{"malformed ID", func() error { _, err := s.MakeCENs(ctx, []string{"no/such"}); return err }},
		{"unknown CIN", func() error { _, err := s.MakeCINs(ctx, []string{"nosuch"}); return err }},
	}
	for _, st := range steps {
		// The outcome is what Metrics is told, checked below.
		t.Logf("%s: %v", st.name, st.do())
	}
	want := []string{
		"cen make ok",
		"cin make ok",
		"cen destroy failed",
		"cin destroy ok",
		"cen make failed",
		"cin make failed",
	}
	if d := cmp.Diff(want, rec.got); d != "" {
		t.Errorf("observed (-want +got):\n%s", d)
	}
}
