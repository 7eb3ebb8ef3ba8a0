package graph

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	berrors "go.etcd.io/bbolt/errors"
)

func TestValidateID(t *testing.T) {
	good := []string{"a", "cen1", "C_1.x-y", "_x", "9", strings.Repeat("a", 64)}
	bad := []string{"", "-a", ".a", "a/b", "a b", "a~b", "a:b", "é", strings.Repeat("a", 65), "..", "a\x00"}
	for _, id := range good {
		if err := ValidateID("CEN", id); err != nil {
			t.Errorf("ValidateID(%q) = %v, want nil", id, err)
		}
	}
	for _, id := range bad {
		if err := ValidateID("CEN", id); !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidateID(%q) = %v, want ErrInvalid", id, err)
		}
	}
}

func TestBoltStoreTransactions(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	c1 := &CEN{ID: "b", Members: []Member{{"h", "c1"}}, IfName: "b", Group: 7, State: StateConfigured}
	c2 := &CEN{ID: "a", Members: []Member{}, IfName: "a", Group: 8, State: StatePending}
	if err := s.Update(func(tx Tx) error {
		if err := PutCEN(tx, c1); err != nil {
			return err
		}
		return PutCEN(tx, c2)
	}); err != nil {
		t.Fatal(err)
	}

	// A failing transaction leaves nothing behind.
	boom := errors.New("boom")
	err = s.Update(func(tx Tx) error {
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

	check := func(s Store) {
		t.Helper()
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
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	check(s)

	// Another opener fails fast rather than hanging.
	start := time.Now()
	if _, err := OpenBolt(dir); !errors.Is(err, berrors.ErrTimeout) {
		t.Errorf("second OpenBolt: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("second OpenBolt took %v", time.Since(start))
	}

	// Everything survives a reopen.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	check(s2)
}
