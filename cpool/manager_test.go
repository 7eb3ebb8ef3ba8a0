package cpool

import (
	"errors"
	"testing"

	"github.com/leviathan-net/leviathan/graph"
)

func TestNamedBy(t *testing.T) {
	refs := map[string]bool{"web": true, "0123456789abcdef0123": true}
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{"web", true},
		{"0123456789abcdef0123", true},
		{"0123456789ab", true},  // a 12-digit prefix of the event's ID
		{"0123456789a", false},  // too short to be a prefix
		{"0123456789ac", false}, // another container
		{"we", false},
	} {
		if got := namedBy(tc.id, refs); got != tc.want {
			t.Errorf("namedBy(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
}

// A pool of another host sharing the store is that host's to keep.
func TestPoolOfAnotherHost(t *testing.T) {
	m := &Manager{host: "hA"}
	for _, tc := range []struct {
		host string
		mine bool
	}{{"hA", true}, {"", true}, {"hB", false}} {
		err := m.mine(&graph.CPool{ID: "p", Host: tc.host})
		if (err == nil) != tc.mine || err != nil && !errors.Is(err, graph.ErrConflict) {
			t.Errorf("pool of host %q on hA: %v, want mine=%v", tc.host, err, tc.mine)
		}
	}
}
