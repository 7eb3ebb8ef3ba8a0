package cpool

import "testing"

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
