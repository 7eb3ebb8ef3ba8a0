package graph

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestQuoting(t *testing.T) {
	long := strings.Repeat("a", 200)
	ids := make([]string, 25)
	for i := range ids {
		ids[i] = fmt.Sprint("c", i)
	}
	tests := []struct {
		name, got, want string
	}{
		{"Clip short", Clip("abc"), "abc"},
		{"Clip long", Clip(long), strings.Repeat("a", 128) + "... (200 bytes)"},
		{"Clip on a rune boundary", Clip(strings.Repeat("a", 127) + "é" + long), strings.Repeat("a", 127) + "... (329 bytes)"},
		{"Quote short", Quote(`a"b`), `"a\"b"`},
		{"Quote long", Quote(long), `"` + strings.Repeat("a", 128) + `"... (200 bytes)`},
		{"QuoteList few", QuoteList(ids[:3]), `"c0", "c1", "c2"`},
		{"QuoteList ten", QuoteList(ids[:10]), `"c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"`},
		{"QuoteList many", QuoteList(ids), `"c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9" and 15 more`},
		{"QuoteList none", QuoteList(nil), ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %s, want %s", tt.got, tt.want)
			}
		})
	}
}

func TestJoinErrors(t *testing.T) {
	if JoinErrors() != nil || JoinErrors(nil, nil) != nil {
		t.Fatal("JoinErrors of no errors is not nil")
	}
	var errs []error
	for i := range 12 {
		errs = append(errs, fmt.Errorf("e%d", i))
	}
	errs = append(errs, Errorf(ErrConflict, "last"))
	err := JoinErrors(errs...)
	if want := "e0\ne1\ne2\ne3\ne4\ne5\ne6\ne7\ne8\ne9\nand 3 more"; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
	if !errors.Is(err, ErrConflict) {
		t.Error("errors.Is does not see an error past the ones named")
	}
}
