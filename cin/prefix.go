package cin

import (
	"net/netip"

	"github.com/leviathan-net/leviathan/graph"
)

// refusedBlock is a block of IPv4 space a CIN prefix may not overlap.
type refusedBlock struct {
	prefix netip.Prefix
	why    string
}

// refusedBlocks are the blocks of the IANA IPv4 Special-Purpose Address
// Registry (and the multicast and reserved space beside it) whose
// addresses cannot serve as the unicast host addresses and gateways a
// CIN hands out: the kernel refuses them, treats them as its own or never
// routes them. A CIN prefix that overlaps any of them is refused when it
// is defined, instead of failing at make or yielding addresses that do
// not work.
//
// The rest of the registry is unicast that the kernel addresses and
// routes like any other, and stays allowed: the private ranges
// (10/8, 172.16/12, 192.168/16, RFC 1918), shared address space
// (100.64/10, RFC 6598), benchmarking (198.18/15, RFC 2544), and the
// documentation and protocol blocks (192.0.0/24, 192.0.2/24,
// 198.51.100/24, 203.0.113/24), which a lab may have reasons to use.
var refusedBlocks = []refusedBlock{
	{netip.MustParsePrefix("0.0.0.0/8"), `"this network" (RFC 791): a source address only, never a host's`},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback (RFC 1122): it never leaves a host"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local (RFC 3927): never routed, and a CIN routes between its CENs"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast (RFC 5771): not unicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved (RFC 1112), and 255.255.255.255 the limited broadcast (RFC 919): not unicast"},
}

// ParsePrefix reads a CIN prefix (or a CIN pool): an IPv4 network, host
// bits zero, of unicast space (see CheckPrefix).
func ParsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, graph.Errorf(graph.ErrInvalid, "prefix %s: want an IPv4 network like 192.168.0.0/16", graph.Quote(s))
	}
	return p, CheckPrefix(p)
}

// CheckPrefix checks that p can be a CIN prefix (or a pool of them): an
// IPv4 network (IPv6 is not supported yet) with no host bits set, that
// overlaps none of refusedBlocks.
func CheckPrefix(p netip.Prefix) error {
	if !p.IsValid() {
		return graph.Errorf(graph.ErrInvalid, "prefix: want an IPv4 network like 192.168.0.0/16")
	}
	if !p.Addr().Is4() {
		return graph.Errorf(graph.ErrInvalid, "prefix %s: IPv6 is not supported yet: want an IPv4 network like 192.168.0.0/16", p)
	}
	if p != p.Masked() {
		return graph.Errorf(graph.ErrInvalid, "prefix %s has host bits set: want the network address, %s", p, p.Masked())
	}
	for _, b := range refusedBlocks {
		if b.prefix.Overlaps(p) {
			return graph.Errorf(graph.ErrInvalid, "prefix %s overlaps %s, %s; choose private space such as 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16", p, b.prefix, b.why)
		}
	}
	return nil
}
