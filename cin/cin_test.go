package cin

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/leviathan-net/leviathan/graph"
)

func TestParseFileReadmeExample(t *testing.T) {
	f, err := os.Open("../examples/cin.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := ParseFile(f)
	if err != nil {
		t.Fatal(err)
	}
	want := []Spec{{ID: "cin1", CENs: []string{"cen1"}}, {ID: "cin2", CENs: []string{"cen2"}}}
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); d != "" {
		t.Fatal(d)
	}
}

func TestParseFile(t *testing.T) {
	tests := []struct {
		name, in string
		want     []Spec
		msg      string // non-empty: must fail with ErrInvalid mentioning it
	}{
		{name: "order kept", in: `{"b":["x"],"a":[]}`, want: []Spec{{ID: "b", CENs: []string{"x"}}, {ID: "a", CENs: []string{}}}},
		{name: "object form", in: `{"c":{"cens":["x","y"],"prefix":"192.168.0.0/16","default_route":true}}`,
			want: []Spec{{ID: "c", CENs: []string{"x", "y"}, Prefix: netip.MustParsePrefix("192.168.0.0/16"), DefaultRoute: true}}},
		{name: "not an object", in: `["a"]`, msg: "want an object"},
		{name: "bad CIN ID", in: `{"-a":[]}`, msg: `"-a"`},
		{name: "bad CEN ID", in: `{"a":["x y"]}`, msg: `"x y"`},
		{name: "CEN twice", in: `{"a":["x","x"]}`, msg: "twice"},
		{name: "CIN twice", in: `{"a":[],"a":[]}`, msg: "twice"},
		{name: "unknown key", in: `{"a":{"cenz":[]}}`, msg: "cenz"},
		{name: "bad prefix", in: `{"a":{"cens":[],"prefix":"10.0.0.1/16"}}`, msg: "host bits"},
		{name: "v6 prefix", in: `{"a":{"cens":[],"prefix":"fd00::/64"}}`, msg: "IPv4 network"},
		{name: "prefix too small", in: `{"a":{"cens":[],"prefix":"10.0.0.0/24"}}`, msg: "too small"},
		{name: "trailing", in: `{"a":[]} 1`, msg: "trailing"},
		{name: "truncated", in: `{"a":[`, msg: "CIN"},
		{name: "empty object form", in: `{"a":{"cens":[]}}`, want: []Spec{{ID: "a", CENs: []string{}}}},
		{name: "entry null", in: `{"a":null}`, msg: "want a list of CEN IDs"},
		{name: "entry a string", in: `{"a":"cen1"}`, msg: "want a list of CEN IDs"},
		{name: "cens missing", in: `{"a":{"prefix":"192.168.0.0/16"}}`, msg: `no "cens"`},
		{name: "cens null", in: `{"a":{"cens":null}}`, msg: `no "cens"`},
		{name: "empty object", in: `{"a":{}}`, msg: `no "cens"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFile(strings.NewReader(tt.in))
			if tt.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				if d := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); d != "" {
					t.Fatal(d)
				}
				return
			}
			if !errors.Is(err, graph.ErrInvalid) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want ErrInvalid mentioning %q", err, tt.msg)
			}
		})
	}
}

func TestPool(t *testing.T) {
	p := DefaultPool
	var used []netip.Prefix
	for n := range 3 {
		got, err := p.Next(used)
		if err != nil {
			t.Fatal(err)
		}
		want := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(10 + n), 0, 0}), 16)
		if got != want {
			t.Fatalf("CIN %d got %s, want %s (leviathan's 10.(10+n).0.0/16)", n, got, want)
		}
		used = append(used, got)
	}
	// A freed prefix is reused; an explicit prefix overlapping the pool is skipped.
	used = []netip.Prefix{netip.MustParsePrefix("10.10.0.0/16"), netip.MustParsePrefix("10.11.128.0/20")}
	if got, _ := p.Next(used); got.String() != "10.12.0.0/16" {
		t.Errorf("got %s, want 10.12.0.0/16", got)
	}
	// Exhaustion.
	small, err := NewPool(netip.MustParsePrefix("172.16.0.0/15"), 16)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := small.Next(nil)
	b, _ := small.Next([]netip.Prefix{a})
	if a.String() != "172.16.0.0/16" || b.String() != "172.17.0.0/16" {
		t.Errorf("small pool: %s %s", a, b)
	}
	if _, err := small.Next([]netip.Prefix{a, b}); !errors.Is(err, graph.ErrConflict) {
		t.Errorf("exhausted pool: %v, want ErrConflict", err)
	}
	for _, bad := range []struct {
		base string
		plen int
	}{{"10.0.0.1/8", 16}, {"10.0.0.0/8", 4}, {"10.0.0.0/8", 28}} {
		if _, err := NewPool(netip.MustParsePrefix(bad.base), bad.plen); err == nil {
			t.Errorf("NewPool(%s, %d) accepted", bad.base, bad.plen)
		}
	}
}

func TestSubnetsAndAddresses(t *testing.T) {
	p := netip.MustParsePrefix("10.10.0.0/16")
	tests := []struct {
		k                 int
		subnet, gw, first string
		capacity          int
	}{
		{0, "10.10.0.0/24", "10.10.0.1", "10.10.0.10", 245},
		{3, "10.10.3.0/24", "10.10.3.1", "10.10.3.10", 245},
		{255, "10.10.255.0/24", "10.10.255.1", "10.10.255.10", 245},
	}
	for _, tt := range tests {
		s := Subnet(p, tt.k)
		if s.String() != tt.subnet || Gateway(s).String() != tt.gw || HostAddr(s, 0).String() != tt.first || Capacity(s) != tt.capacity {
			t.Errorf("subnet %d: %s gw %s first %s cap %d", tt.k, s, Gateway(s), HostAddr(s, 0), Capacity(s))
		}
	}
	s := Subnet(p, 0)
	taken := map[netip.Addr]bool{}
	for i := range 3 {
		a, err := Allocate(s, taken)
		if err != nil || a != HostAddr(s, i) {
			t.Fatalf("allocation %d: %s %v", i, a, err)
		}
		taken[a] = true
	}
	delete(taken, HostAddr(s, 1)) // freed: reused first
	if a, _ := Allocate(s, taken); a != HostAddr(s, 1) {
		t.Errorf("freed address not reused: got %s", a)
	}
	for i := range Capacity(s) {
		taken[HostAddr(s, i)] = true
	}
	if _, err := Allocate(s, taken); !errors.Is(err, graph.ErrConflict) {
		t.Errorf("full subnet: %v, want ErrConflict", err)
	}
	if k, _ := FreeSubnet(p, map[int]bool{0: true, 2: true}); k != 1 {
		t.Errorf("FreeSubnet = %d, want 1", k)
	}
	// A /20 CIN splits into /28s.
	if s := Subnet(netip.MustParsePrefix("192.168.16.0/20"), 1); s.String() != "192.168.16.16/28" || Capacity(s) != 5 {
		t.Errorf("/20: subnet 1 = %s cap %d", s, Capacity(s))
	}
}

func TestCheckPrefix(t *testing.T) {
	tests := []struct {
		in  string
		msg string // empty: accepted
	}{
		{"10.0.0.0/8", ""},
		{"10.10.0.0/16", ""},
		{"172.16.0.0/12", ""},
		{"192.168.0.0/16", ""},
		{"100.64.0.0/10", ""},
		{"198.18.0.0/15", ""},
		{"1.0.0.0/16", ""},
		{"223.255.0.0/16", ""},
		{"0.0.0.0/0", "overlaps 0.0.0.0/8"},
		{"0.0.0.0/8", "this network"},
		{"0.0.0.0/16", "this network"},
		{"127.0.0.0/16", "loopback"},
		{"126.0.0.0/7", "loopback"},
		{"169.254.0.0/16", "link-local"},
		{"169.0.0.0/8", "link-local"},
		{"224.0.0.0/16", "multicast"},
		{"239.255.0.0/16", "multicast"},
		{"240.0.0.0/16", "reserved"},
		{"255.255.0.0/16", "limited broadcast"},
		{"255.255.255.255/32", "limited broadcast"},
		{"128.0.0.0/1", "link-local"},
		{"10.1.2.3/16", "host bits set: want the network address, 10.1.0.0/16"},
		{"fd00::/64", "IPv6 is not supported yet"},
		{"::ffff:10.0.0.0/104", "IPv6 is not supported yet"},
		{"10.0.0.0", "want an IPv4 network"},
		{"nonsense", "want an IPv4 network"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParsePrefix(tt.in)
			if tt.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, graph.ErrInvalid) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want ErrInvalid mentioning %q", err, tt.msg)
			}
			// The same prefix is refused as a pool, and in a CIN file.
			if p, perr := netip.ParsePrefix(tt.in); perr == nil {
				if _, err := NewPool(p, 0); err == nil {
					t.Errorf("NewPool(%s) accepted it", p)
				}
			}
			if _, err := ParseFile(strings.NewReader(`{"a":{"cens":[],"prefix":"` + tt.in + `"}}`)); !errors.Is(err, graph.ErrInvalid) {
				t.Errorf("CIN file with prefix %s: err = %v, want ErrInvalid", tt.in, err)
			}
		})
	}
}
