// Package cin owns the CIN file format and the addressing plan of CINs
// (Container IP Networks): which prefix a CIN gets from the pool, how that
// prefix is split into one subnet per CEN, which address is a CEN's
// gateway and which addresses members get. Everything here is a pure
// function of its inputs and safe for concurrent use.
//
// The plan: a CIN's prefix (by default the n-th CIN gets 10.(10+n).0.0/16,
// as leviathan did) is split into subnets 8 bits longer, one per CEN of
// the CIN, in the order the CENs were added (the k-th CEN gets subnet k,
// and keeps it while it stays in the CIN). In a subnet, host number 1 is
// the gateway (on the CEN's bridge, in the fabric namespace) and members
// get host numbers from 10 upward, the lowest free first.
package cin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"

	"github.com/leviathan-net/leviathan/graph"
)

// TableBase is the first fabric routing table of CINs; CIN tables are
// [TableBase, TableBase+MaxTables).
const (
	TableBase = 0x4c560000
	MaxTables = 0x10000
)

// IsOwnTable reports whether a routing table is one of leviathan's.
func IsOwnTable(t int) bool { return t >= TableBase && t < TableBase+MaxTables }

// Spec is one CIN as a CIN file (or PUT /cin/{id}) describes it.
type Spec struct {
	ID           string
	CENs         []string
	Prefix       netip.Prefix // zero: from the pool
	DefaultRoute bool
}

// Options is the object form of a CIN file entry.
type entryJSON struct {
	CENs         *[]string `json:"cens"`
	Prefix       *string   `json:"prefix"`
	DefaultRoute *bool     `json:"default_route"`
}

// ParseFile decodes a CIN file, keeping the order of its entries:
//
//	{"cin1": ["cen1"],
//	 "cin2": {"cens": ["cen2", "cen3"], "prefix": "192.168.0.0/16", "default_route": true}}
//
// An entry is a list of CEN IDs, or an object with "cens" and optionally
// "prefix" (the CIN's own prefix instead of one from the pool) and
// "default_route".
func ParseFile(r io.Reader) ([]Spec, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, graph.Errorf(graph.ErrInvalid, "CIN file: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, graph.Errorf(graph.ErrInvalid, `CIN file: want an object like {"cin1":["cen1"]}`)
	}
	var specs []Spec
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, graph.Errorf(graph.ErrInvalid, "CIN file: %w", err)
		}
		id := tok.(string)
		if err := ValidateCINID(id); err != nil {
			return nil, fmt.Errorf("CIN file: %w", err)
		}
		if seen[id] {
			return nil, graph.Errorf(graph.ErrInvalid, "CIN file: CIN %q listed twice", id)
		}
		seen[id] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, graph.Errorf(graph.ErrInvalid, "CIN file: CIN %q: %w", id, err)
		}
		sp, err := ParseEntry(id, v)
		if err != nil {
			return nil, fmt.Errorf("CIN file: %w", err)
		}
		specs = append(specs, sp)
	}
	if _, err := dec.Token(); err != nil {
		return nil, graph.Errorf(graph.ErrInvalid, "CIN file: %w", err)
	}
	if dec.More() {
		return nil, graph.Errorf(graph.ErrInvalid, "CIN file: trailing data after the JSON object")
	}
	return specs, nil
}

// ValidateCINID checks the ID of a new CIN: a valid ID, not one of the
// API's route words (graph.RouteWords).
func ValidateCINID(id string) error { return graph.ValidateObjectID("CIN", id) }

// ParseEntry decodes one CIN's description: a list of CEN IDs or the
// object form, whose "cens" must be there. null, or an object without
// "cens", is malformed: a CIN of no CENs says [] (or "cens":[]).
func ParseEntry(id string, v json.RawMessage) (Spec, error) {
	sp := Spec{ID: id}
	v = bytes.TrimSpace(v)
	switch {
	case len(v) > 0 && v[0] == '[':
		if err := json.Unmarshal(v, &sp.CENs); err != nil {
			return sp, graph.Errorf(graph.ErrInvalid, "CIN %q: want a list of CEN IDs: %w", id, err)
		}
	case len(v) == 0 || v[0] != '{':
		// null included: a missing list is not an empty one.
		return sp, graph.Errorf(graph.ErrInvalid, `CIN %q: want a list of CEN IDs or {"cens":[...],"prefix":"a.b.c.d/n","default_route":true}, got %s`, id, graph.Clip(string(v)))
	default:
		var e entryJSON
		dec := json.NewDecoder(bytes.NewReader(v))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return sp, graph.Errorf(graph.ErrInvalid, `CIN %q: want a list of CEN IDs or {"cens":[...],"prefix":"a.b.c.d/n","default_route":true}: %w`, id, err)
		}
		if e.CENs == nil {
			return sp, graph.Errorf(graph.ErrInvalid, `CIN %q has no "cens" (a CIN of no CENs says "cens":[])`, id)
		}
		sp.CENs = *e.CENs
		if e.DefaultRoute != nil {
			sp.DefaultRoute = *e.DefaultRoute
		}
		if e.Prefix != nil {
			p, err := ParsePrefix(*e.Prefix)
			if err != nil {
				return sp, fmt.Errorf("CIN %q: %w", id, err)
			}
			if _, err := SubnetLen(p); err != nil {
				return sp, fmt.Errorf("CIN %q: %w", id, err)
			}
			sp.Prefix = p
		}
	}
	if sp.CENs == nil {
		sp.CENs = []string{}
	}
	seen := map[string]bool{}
	for _, c := range sp.CENs {
		if err := graph.ValidateID("CEN", c); err != nil {
			return sp, fmt.Errorf("CIN %q: %w", id, err)
		}
		if seen[c] {
			return sp, graph.Errorf(graph.ErrInvalid, "CIN %q lists CEN %q twice", id, c)
		}
		seen[c] = true
	}
	return sp, nil
}

// Pool hands out CIN prefixes: the subnets of Base of length Len, from
// number First upward, then the ones below First.
type Pool struct {
	Base  netip.Prefix
	Len   int
	First int
}

// DefaultPool gives the n-th CIN 10.(10+n).0.0/16, as leviathan did.
var DefaultPool = Pool{Base: netip.MustParsePrefix("10.0.0.0/8"), Len: 16, First: 10}

// NewPool checks a pool: an IPv4 network that CheckPrefix accepts, split
// into prefixes of length plen (0: 16, or the pool's own length when it
// is longer).
func NewPool(base netip.Prefix, plen int) (Pool, error) {
	if err := CheckPrefix(base); err != nil {
		return Pool{}, fmt.Errorf("CIN pool: %w", err)
	}
	if plen == 0 {
		plen = max(16, base.Bits())
	}
	if plen < base.Bits() || plen > 32 {
		return Pool{}, fmt.Errorf("CIN prefix length /%d does not fit in pool %s", plen, base)
	}
	if _, err := SubnetLen(netip.PrefixFrom(base.Addr(), plen)); err != nil {
		return Pool{}, err
	}
	return Pool{Base: base, Len: plen}, nil
}

// Size is how many prefixes the pool holds.
func (p Pool) Size() int { return 1 << (p.Len - p.Base.Bits()) }

// Prefix returns the pool's i-th prefix.
func (p Pool) Prefix(i int) netip.Prefix {
	return netip.PrefixFrom(addAddr(p.Base.Addr(), uint32(i)<<(32-p.Len)), p.Len)
}

// Next returns the first prefix of the pool (in the pool's order) that
// overlaps none of used.
func (p Pool) Next(used []netip.Prefix) (netip.Prefix, error) {
	n := p.Size()
	for j := range n {
		pr := p.Prefix((p.First + j) % n)
		free := true
		for _, u := range used {
			if u.Overlaps(pr) {
				free = false
				break
			}
		}
		if free {
			return pr, nil
		}
	}
	return netip.Prefix{}, graph.Errorf(graph.ErrConflict, "the CIN pool %s has no free /%d left", p.Base, p.Len)
}

// SubnetLen is the length of a CEN's subnet in a CIN prefix: 8 bits
// longer, and at most /28 so that a subnet holds a gateway and members.
func SubnetLen(prefix netip.Prefix) (int, error) {
	n := prefix.Bits() + 8
	if n > 28 {
		return 0, graph.Errorf(graph.ErrInvalid, "prefix %s is too small for a CIN: want /20 or shorter", prefix)
	}
	return n, nil
}

// Subnets is how many CEN subnets a CIN prefix holds.
func Subnets(prefix netip.Prefix) int {
	n, _ := SubnetLen(prefix)
	return 1 << (n - prefix.Bits())
}

// Subnet returns subnet k of a CIN prefix.
func Subnet(prefix netip.Prefix, k int) netip.Prefix {
	n, _ := SubnetLen(prefix)
	return netip.PrefixFrom(addAddr(prefix.Addr(), uint32(k)<<(32-n)), n)
}

// Gateway is a subnet's gateway address (host 1).
func Gateway(subnet netip.Prefix) netip.Addr { return addAddr(subnet.Addr(), 1) }

// FirstHost is the host number of a subnet's first member.
const FirstHost = 10

// Capacity is how many members a subnet holds.
func Capacity(subnet netip.Prefix) int { return 1<<(32-subnet.Bits()) - FirstHost - 1 }

// HostAddr is member slot i (from 0) of a subnet.
func HostAddr(subnet netip.Prefix, i int) netip.Addr {
	return addAddr(subnet.Addr(), uint32(FirstHost+i))
}

// Allocate returns the lowest member address of subnet not in taken.
func Allocate(subnet netip.Prefix, taken map[netip.Addr]bool) (netip.Addr, error) {
	for i := range Capacity(subnet) {
		if a := HostAddr(subnet, i); !taken[a] {
			return a, nil
		}
	}
	return netip.Addr{}, graph.Errorf(graph.ErrConflict, "subnet %s is full (%d members)", subnet, Capacity(subnet))
}

// FreeSubnet returns the lowest subnet number of a CIN not in used.
func FreeSubnet(prefix netip.Prefix, used map[int]bool) (int, error) {
	for k := range Subnets(prefix) {
		if !used[k] {
			return k, nil
		}
	}
	return 0, graph.Errorf(graph.ErrConflict, "CIN prefix %s has no free subnet for another CEN", prefix)
}

func addAddr(a netip.Addr, n uint32) netip.Addr {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += n
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
