package graph

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// storeWithData creates a store in a temp dir holding enough data for
// several pages besides the meta pages, and returns its file.
func storeWithData(t *testing.T) (dir, file string) {
	t.Helper()
	dir = t.TempDir()
	s, err := OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(func(tx Tx) error {
		for i := range 500 {
			if err := tx.Put(bucketCENs, fmt.Sprint("cen", i), []byte(strings.Repeat("v", 100))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	return dir, filepath.Join(dir, StoreFile)
}

// TestOpenBoltCorrupt damages a store file as a torn write or a stray
// write would, and checks that OpenBolt refuses it with an error naming
// the file, never a panic.
func TestOpenBoltCorrupt(t *testing.T) {
	page := os.Getpagesize()
	garbage := func(n int) []byte {
		b := make([]byte, n)
		rand.Read(b)
		return b
	}
	tests := []struct {
		name   string
		damage func(t *testing.T, file string)
	}{
		{"8 KiB of garbage at offset 0", func(t *testing.T, file string) { writeAt(t, file, 0, garbage(8192)) }},
		{"garbage past the meta pages", func(t *testing.T, file string) { writeAt(t, file, int64(2*page), garbage(8192)) }},
		{"garbage over data pages", func(t *testing.T, file string) { writeAt(t, file, int64(10*page), garbage(2*page)) }},
		{"one bad byte in a page header", func(t *testing.T, file string) { writeAt(t, file, int64(12*page)+8, []byte{0xff}) }},
		{"zeros past the meta pages", func(t *testing.T, file string) { writeAt(t, file, int64(2*page), make([]byte, 4*page)) }},
		{"one meta page torn, the other garbage", func(t *testing.T, file string) {
			writeAt(t, file, 20, garbage(50))
			writeAt(t, file, int64(page)+20, garbage(50))
		}},
		{"truncated", func(t *testing.T, file string) {
			if err := os.Truncate(file, int64(3*page)); err != nil {
				t.Fatal(err)
			}
		}},
		{"a short file of garbage", func(t *testing.T, file string) {
			if err := os.WriteFile(file, garbage(100), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"another program's file", func(t *testing.T, file string) {
			if err := os.WriteFile(file, []byte(strings.Repeat("not a store\n", 2000)), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, file := storeWithData(t)
			tt.damage(t, file)
			s, err := OpenBolt(dir)
			if err == nil {
				s.Close()
				t.Fatal("OpenBolt opened a damaged store")
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			for _, want := range []string{"store " + file + " is corrupt", "move it away to start empty, or restore it from a copy"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("err %q does not say %q", err, want)
				}
			}
		})
	}
	// One meta page torn alone is what bbolt's two meta pages are for:
	// the other, older one is used and the store opens.
	t.Run("one meta page torn", func(t *testing.T) {
		dir, file := storeWithData(t)
		writeAt(t, file, int64(page)+20, garbage(50))
		s, err := OpenBolt(dir)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
	})
}

func writeAt(t *testing.T, file string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}
