package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/leviathan-net/leviathan/cin"
)

// censPerCIN is how many CENs one CIN groups: CIN n (from 0) holds CENs
// 10n to 10n+9, the last one fewer when the CENs do not divide evenly.
const censPerCIN = 10

// cinPhase addresses every member of the layout: the CENs grouped into
// CINs of censPerCIN, each CIN an IP network over its CENs.
func cinPhase() phase {
	return phase{
		name:    "cin",
		members: layout.members,
		targets: []target{
			{op: "make", maxShare: 10, maxPerMember: time.Millisecond},
			{op: "destroy", maxShare: 10, maxPerMember: time.Millisecond},
		},
		leviathan: cinLeviathan,
		shell:     cinShell,
	}
}

// cins is how many CINs the layout's CENs make.
func (l layout) cins() int { return (l.cens + censPerCIN - 1) / censPerCIN }

// cinID names CIN n (from 0).
func (l layout) cinID(n int) string { return fmt.Sprintf("cin%d", n+1) }

// cinCENs is the range [first, end) of the CENs of CIN n.
func (l layout) cinCENs(n int) (first, end int) {
	return n * censPerCIN, min((n+1)*censPerCIN, l.cens)
}

// The addressing plan, leviathan's own (package cin): CIN n gets the
// pool's n-th prefix, 10.(10+n).0.0/16; the k-th CEN of a CIN subnet k of
// it, 10.(10+n).k.0/24, with its gateway at .1 on the CEN's bridge in the
// fabric; member j of a CEN .(10+j); and the fabric a routing table per
// CIN. The shell baseline realizes exactly this plan; leviathan's answers
// are checked against it.

func (l layout) cinPrefix(n int) netip.Prefix {
	p := cin.DefaultPool
	return p.Prefix((p.First + n) % p.Size())
}

// cinSubnet is the subnet of CEN i.
func (l layout) cinSubnet(i int) netip.Prefix {
	return cin.Subnet(l.cinPrefix(i/censPerCIN), i%censPerCIN)
}

// cinGateway is CEN i's gateway, with the subnet's length.
func (l layout) cinGateway(i int) netip.Prefix {
	s := l.cinSubnet(i)
	return netip.PrefixFrom(cin.Gateway(s), s.Bits())
}

// cinAddr is the address of member j of CEN i, with the subnet's length.
func (l layout) cinAddr(i, j int) netip.Prefix {
	s := l.cinSubnet(i)
	return netip.PrefixFrom(cin.HostAddr(s, j), s.Bits())
}

// cinTable is the fabric routing table of CIN n in the baseline (the
// table leviathan gives the n-th CIN it creates).
func (l layout) cinTable(n int) int { return cin.TableBase + n }

// cinFile is the CIN file of the layout, as POST /cin/import takes it,
// with the CINs in order (a Go map would sort cin10 before cin2, and
// prefixes are handed out in the file's order).
func cinFile(lay layout) json.RawMessage {
	var b bytes.Buffer
	b.WriteByte('{')
	for n := range lay.cins() {
		if n > 0 {
			b.WriteByte(',')
		}
		first, end := lay.cinCENs(n)
		k, _ := json.Marshal(lay.cinID(n))
		v, _ := json.Marshal(cenIDs(lay)[first:end])
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes()
}

func cinIDs(lay layout) []string {
	ids := make([]string, lay.cins())
	for n := range ids {
		ids[n] = lay.cinID(n)
	}
	return ids
}

// cinJSON is what the benchmark reads of GET /cin/{id}.
type cinJSON struct {
	ID      string `json:"cinID"`
	Prefix  string `json:"prefix"`
	State   string `json:"state"`
	Members []struct {
		Container string  `json:"containerID"`
		CEN       string  `json:"cenID"`
		IP        *string `json:"ipaddress"`
	} `json:"members"`
}

// cinLeviathan: make is POST /cin/import of the CIN file and POST
// /cin/make of every CIN in one request; destroy is POST /cin/destroy of
// every CIN.
func cinLeviathan(lay layout, d *daemon) stage {
	ids := cinIDs(lay)
	batch := func(ctx context.Context, op, want string) error {
		var res struct {
			Results []resultJSON `json:"results"`
		}
		if err := d.call(ctx, http.MethodPost, "/cin/"+op, ids, &res); err != nil {
			return err
		}
		if len(res.Results) != len(ids) {
			return fmt.Errorf("%s: %d results for %d CINs", op, len(res.Results), len(ids))
		}
		for _, r := range res.Results {
			if r.State != want {
				return fmt.Errorf("%s: CIN %s is %q, want %q: %s", op, r.CIN, r.State, want, r.Error)
			}
		}
		return nil
	}
	k := cinKernel{
		lay:    lay,
		fabric: d.fab.Path(),
		member: func(i, j int) string { return d.netnsPath(lay.containerID(i, j)) },
	}
	// addrs are the members' addresses as GET /cin/{id} reports them,
	// read after make: destroy must remove exactly these.
	var addrs map[string]netip.Prefix
	return stage{
		make: func(ctx context.Context, p *parts) error {
			var sum struct {
				Created []string `json:"created"`
			}
			if err := d.call(ctx, http.MethodPost, "/cin/import", cinFile(lay), &sum); err != nil {
				return err
			}
			p.lap("import")
			if len(sum.Created) != lay.cins() {
				return fmt.Errorf("import created %d CINs, want %d", len(sum.Created), lay.cins())
			}
			if err := batch(ctx, "make", "configured"); err != nil {
				return err
			}
			p.lap("make")
			return nil
		},
		checkMade: func(ctx context.Context) error {
			var err error
			if addrs, err = cinAPIAddrs(ctx, d, lay, "configured"); err != nil {
				return err
			}
			k.addr = func(i, j int) netip.Prefix { return addrs[lay.containerID(i, j)] }
			// GET /host shows the address on the CEN's interface, with
			// its CIN.
			for _, s := range lay.spots() {
				cid, cenID := lay.containerID(s[0], s[1]), lay.cenID(s[0])
				var v struct {
					Interfaces []struct {
						CEN  string  `json:"cenID"`
						IP   *string `json:"ipaddress"`
						CIN  *string `json:"cinID"`
						Name string  `json:"name"`
					} `json:"interfaces"`
				}
				if err := d.call(ctx, http.MethodGet, "/host/"+hostID+"/"+cid, nil, &v); err != nil {
					return err
				}
				ok := false
				for _, ifc := range v.Interfaces {
					ok = ok || ifc.CEN == cenID && ifc.IP != nil && *ifc.IP == addrs[cid].String() &&
						ifc.CIN != nil && *ifc.CIN == lay.cinID(s[0]/censPerCIN)
				}
				if !ok {
					return fmt.Errorf("GET /host/%s/%s: no interface on CEN %s with %s in CIN %s: %+v",
						hostID, cid, cenID, addrs[cid], lay.cinID(s[0]/censPerCIN), v.Interfaces)
				}
			}
			return k.checkMade(ctx)
		},
		destroy: func(ctx context.Context, p *parts) error {
			return batch(ctx, "destroy", "pending")
		},
		checkDestroyed: func(ctx context.Context) error {
			if _, err := cinAPIAddrs(ctx, d, lay, "pending"); err != nil {
				return err
			}
			return k.checkDestroyed()
		},
	}
}

// cinAPIAddrs reads every CIN with GET /cin/{id}, checks its state and
// that its addressing is the plan's (its prefix, each CEN its subnet,
// each member a distinct address of its CEN's subnet from host 10 up),
// and returns the members' addresses by container.
func cinAPIAddrs(ctx context.Context, d *daemon, lay layout, state string) (map[string]netip.Prefix, error) {
	out := map[string]netip.Prefix{}
	for n := range lay.cins() {
		var v cinJSON
		if err := d.call(ctx, http.MethodGet, "/cin/"+lay.cinID(n), nil, &v); err != nil {
			return nil, err
		}
		if v.State != state {
			return nil, fmt.Errorf("GET /cin/%s: state %q, want %q", lay.cinID(n), v.State, state)
		}
		if v.Prefix != lay.cinPrefix(n).String() {
			return nil, fmt.Errorf("GET /cin/%s: prefix %s, the plan's is %s", lay.cinID(n), v.Prefix, lay.cinPrefix(n))
		}
		first, end := lay.cinCENs(n)
		if want := (end - first) * lay.per; len(v.Members) != want {
			return nil, fmt.Errorf("GET /cin/%s: %d members, want %d", lay.cinID(n), len(v.Members), want)
		}
		seen := map[netip.Addr]bool{}
		for _, m := range v.Members {
			if m.IP == nil {
				return nil, fmt.Errorf("GET /cin/%s: member %s has no address", lay.cinID(n), m.Container)
			}
			a, err := netip.ParsePrefix(*m.IP)
			if err != nil {
				return nil, fmt.Errorf("GET /cin/%s: member %s: %w", lay.cinID(n), m.Container, err)
			}
			i := cenIndex(lay, m.CEN)
			if i < first || i >= end {
				return nil, fmt.Errorf("GET /cin/%s: member %s on CEN %q, not one of the CIN's", lay.cinID(n), m.Container, m.CEN)
			}
			s := lay.cinSubnet(i)
			host := int(a.Addr().As4()[3]) - int(s.Addr().As4()[3])
			if a.Bits() != s.Bits() || !s.Contains(a.Addr()) || host < cin.FirstHost || host >= cin.FirstHost+lay.per || seen[a.Addr()] {
				return nil, fmt.Errorf("GET /cin/%s: member %s of CEN %s has %s; the plan gives the CEN's members distinct addresses from %s up in %s",
					lay.cinID(n), m.Container, m.CEN, a, lay.cinAddr(i, 0).Addr(), s)
			}
			seen[a.Addr()] = true
			out[m.Container] = a
		}
	}
	return out, nil
}

// cenIndex is the index of the CEN named id, or -1.
func cenIndex(lay layout, id string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(id, "cen"))
	if err != nil || lay.cenID(n-1) != id || n < 1 || n > lay.cens {
		return -1
	}
	return n - 1
}

// cinShell: leviathan's plan, one ip process per operation. Make: per CIN
// the table's "unreachable default"; per bridge its gateway address,
// forwarding on, the subnet's route in the CIN's table and the rule
// sending what arrives on the bridge to that table; per member its
// address and its route to the CIN's prefix via its gateway.
//
// leviathan also puts each gateway's local route in the CIN's table and
// moves the fabric's local-table rule behind the CIN rules (so a CIN
// cannot reach another CIN's gateways either); the baseline leaves that
// out, which makes it, if anything, cheaper than leviathan's work.
func cinShell(lay layout, sh *shellEnv) stage {
	k := cinKernel{
		lay:    lay,
		fabric: sh.fabricPath(),
		member: func(i, j int) string { return netnsPathOf(sh.netns(lay, i, j)) },
		addr:   lay.cinAddr,
	}
	return stage{
		make: func(ctx context.Context, p *parts) error {
			for n := range lay.cins() {
				table := strconv.Itoa(lay.cinTable(n))
				if err := sh.fab(ctx, p, "table", "route", "add", "unreachable", "default", "table", table); err != nil {
					return err
				}
				first, end := lay.cinCENs(n)
				for i := first; i < end; i++ {
					br, gw := lay.cenID(i), lay.cinGateway(i)
					if err := sh.fab(ctx, p, "gateway", "addr", "add", gw.String(), "dev", br); err != nil {
						return err
					}
					// No ip subcommand sets an interface's forwarding:
					// ip netns exec runs sysctl in the fabric (one ip
					// process that becomes sysctl).
					if err := p.time("forwarding", func() error {
						return sh.run(ctx, "netns", "exec", sh.fabric, "sysctl", "-qw", "net.ipv4.conf."+br+".forwarding=1")
					}); err != nil {
						return err
					}
					if err := sh.fab(ctx, p, "table", "route", "add", lay.cinSubnet(i).String(), "dev", br, "table", table); err != nil {
						return err
					}
					if err := sh.fab(ctx, p, "rule", "rule", "add", "iif", br, "lookup", table); err != nil {
						return err
					}
				}
				prefix := lay.cinPrefix(n).String()
				for i := first; i < end; i++ {
					ifname, gw := lay.cenID(i), lay.cinGateway(i).Addr().String()
					for j := range lay.per {
						ns := sh.netns(lay, i, j)
						if err := p.time("address", func() error {
							return sh.run(ctx, "-n", ns, "addr", "add", lay.cinAddr(i, j).String(), "dev", ifname)
						}); err != nil {
							return err
						}
						if err := p.time("route", func() error {
							return sh.run(ctx, "-n", ns, "route", "add", prefix, "via", gw, "dev", ifname)
						}); err != nil {
							return err
						}
					}
				}
			}
			return nil
		},
		checkMade: k.checkMade,
		// Destroy: per member its address, which takes the member's route
		// with it (the kernel drops the routes through an interface when
		// its last IPv4 address goes, and the CIN's is its only one: the
		// check below makes sure), as an administrator would; per bridge
		// its gateway address (its route in the CIN's table goes with it,
		// likewise) and its rule; per CIN what is left of its table.
		destroy: func(ctx context.Context, p *parts) error {
			for n := range lay.cins() {
				first, end := lay.cinCENs(n)
				for i := first; i < end; i++ {
					for j := range lay.per {
						ns := sh.netns(lay, i, j)
						if err := p.time("address", func() error {
							return sh.run(ctx, "-n", ns, "addr", "del", lay.cinAddr(i, j).String(), "dev", lay.cenID(i))
						}); err != nil {
							return err
						}
					}
				}
				table := strconv.Itoa(lay.cinTable(n))
				for i := first; i < end; i++ {
					br := lay.cenID(i)
					if err := sh.fab(ctx, p, "gateway", "addr", "del", lay.cinGateway(i).String(), "dev", br); err != nil {
						return err
					}
					if err := sh.fab(ctx, p, "rule", "rule", "del", "iif", br, "lookup", table); err != nil {
						return err
					}
				}
				if err := sh.fab(ctx, p, "table", "route", "flush", "table", table); err != nil {
					return err
				}
			}
			return nil
		},
		checkDestroyed: func(ctx context.Context) error { return k.checkDestroyed() },
	}
}

// cinKernel checks what the kernel holds of the CINs, on either system.
type cinKernel struct {
	lay    layout
	fabric string                      // the fabric namespace's path
	member func(i, j int) string       // the path of member j of CEN i's namespace
	addr   func(i, j int) netip.Prefix // member j of CEN i's address
}

// checkMade checks the whole fabric (every bridge its gateway and its
// rule, every CIN its table), the spots' namespaces (the address on the
// CEN's interface and the route to the CIN's prefix via the gateway), and
// pings a few pairs: inside a CEN and across CENs of a CIN they answer;
// across CINs they do not, and the fabric refuses to forward between them.
func (k cinKernel) checkMade(ctx context.Context) error {
	lay := k.lay
	if err := k.checkFabric(true); err != nil {
		return err
	}
	for _, s := range lay.spots() {
		i, j := s[0], s[1]
		if err := checkCINMember(k.member(i, j), lay.cenID(i), k.addr(i, j), lay.cinPrefix(i/censPerCIN), lay.cinGateway(i).Addr()); err != nil {
			return fmt.Errorf("member %d of CEN %s: %w", j, lay.cenID(i), err)
		}
	}
	type pair struct{ fi, fj, ti, tj int }
	var reach []pair
	reach = append(reach, pair{0, 0, 0, 1})
	if _, end := lay.cinCENs(0); end > 1 {
		reach = append(reach, pair{0, 0, 1, lay.per - 1})
	}
	last := lay.cins() - 1
	if first, end := lay.cinCENs(last); last > 0 && end-first > 1 {
		reach = append(reach, pair{end - 1, lay.per - 1, first, 0})
	}
	for _, pr := range reach {
		if err := ping(ctx, k.member(pr.fi, pr.fj), k.addr(pr.ti, pr.tj).Addr(), true); err != nil {
			return fmt.Errorf("member %d of %s to member %d of %s: %w", pr.fj, lay.cenID(pr.fi), pr.tj, lay.cenID(pr.ti), err)
		}
	}
	if last > 0 {
		ti, _ := lay.cinCENs(last)
		src, dst := k.addr(0, 0).Addr(), k.addr(ti, 0).Addr()
		if err := ping(ctx, k.member(0, 0), dst, false); err != nil {
			return fmt.Errorf("member 0 of %s to member 0 of %s: %w", lay.cenID(0), lay.cenID(ti), err)
		}
		if err := fabricRefuses(k.fabric, lay.cenID(0), src, dst); err != nil {
			return err
		}
	}
	return nil
}

// checkDestroyed checks that no address, route, rule or table of the
// CINs is left in the fabric or in the spots' namespaces.
func (k cinKernel) checkDestroyed() error {
	lay := k.lay
	if err := k.checkFabric(false); err != nil {
		return err
	}
	for _, s := range lay.spots() {
		i, j := s[0], s[1]
		if err := checkCINMember(k.member(i, j), lay.cenID(i), netip.Prefix{}, lay.cinPrefix(i/censPerCIN), netip.Addr{}); err != nil {
			return fmt.Errorf("member %d of CEN %s: %w", j, lay.cenID(i), err)
		}
	}
	return nil
}

// withHandle runs fn with a netlink handle in the namespace at path.
func withHandle(path string, fn func(h *netlink.Handle) error) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer h.Close()
	return fn(h)
}

// checkFabric checks, made, that each bridge holds exactly its gateway
// among the CINs' addresses, and has one rule sending it to a table of
// leviathan's range, the same for a CIN's bridges and another for each
// CIN, holding "unreachable default" and a route to each of the CIN's
// subnets through its bridge; or, not made, that no address of a CIN, no
// such rule and no such table is left.
func (k cinKernel) checkFabric(made bool) error {
	lay := k.lay
	return withHandle(k.fabric, func(h *netlink.Handle) error {
		links, err := h.LinkList()
		if err != nil {
			return err
		}
		byName, names := map[string]int{}, map[int]string{}
		for _, l := range links {
			byName[l.Attrs().Name], names[l.Attrs().Index] = l.Attrs().Index, l.Attrs().Name
		}
		addrs, err := h.AddrList(nil, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		rules, err := h.RuleList(netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return err
		}
		var odd []string
		// Addresses in a CIN's prefix, by interface.
		have := map[string][]netip.Prefix{}
		for _, a := range addrs {
			p := prefixOf(a.IPNet)
			for n := range lay.cins() {
				if lay.cinPrefix(n).Contains(p.Addr()) {
					have[names[a.LinkIndex]] = append(have[names[a.LinkIndex]], p)
				}
			}
		}
		tableOf := map[string][]int{} // bridge → tables of its rules
		for _, r := range rules {
			if cin.IsOwnTable(r.Table) {
				if !made {
					odd = append(odd, fmt.Sprintf("rule iif %q lookup %d", r.IifName, r.Table))
				}
				tableOf[r.IifName] = append(tableOf[r.IifName], r.Table)
			}
		}
		tables := map[int][]netlink.Route{}
		for _, r := range routes {
			if cin.IsOwnTable(r.Table) {
				if !made {
					odd = append(odd, fmt.Sprintf("route %s in table %d", r.Dst, r.Table))
				}
				tables[r.Table] = append(tables[r.Table], r)
			}
		}
		if !made {
			for name, ps := range have {
				odd = append(odd, fmt.Sprintf("%v on %s", ps, name))
			}
		}
		cinOfTable := map[int]int{}
		for n := range lay.cins() {
			if !made {
				break
			}
			first, end := lay.cinCENs(n)
			table := -1
			for i := first; i < end; i++ {
				br := lay.cenID(i)
				if ps := have[br]; len(ps) != 1 || ps[0] != lay.cinGateway(i) {
					odd = append(odd, fmt.Sprintf("%s holds %v, want its gateway %s", br, ps, lay.cinGateway(i)))
				}
				ts := tableOf[br]
				if len(ts) != 1 {
					odd = append(odd, fmt.Sprintf("%s has %d rules to CIN tables, want 1", br, len(ts)))
					continue
				}
				if table == -1 {
					table = ts[0]
				}
				if ts[0] != table {
					odd = append(odd, fmt.Sprintf("%s looks up table %d, another bridge of %s table %d", br, ts[0], lay.cinID(n), table))
				}
				found := false
				for _, r := range tables[ts[0]] {
					found = found || r.Dst != nil && prefixOf(r.Dst) == lay.cinSubnet(i) && r.LinkIndex == byName[br]
				}
				if !found {
					odd = append(odd, fmt.Sprintf("table %d has no route to %s dev %s", ts[0], lay.cinSubnet(i), br))
				}
			}
			if table == -1 {
				continue
			}
			if m, ok := cinOfTable[table]; ok {
				odd = append(odd, fmt.Sprintf("%s and %s share table %d", lay.cinID(m), lay.cinID(n), table))
			}
			cinOfTable[table] = n
			found := false
			for _, r := range tables[table] {
				found = found || r.Type == unix.RTN_UNREACHABLE && (r.Dst == nil || prefixOf(r.Dst).Bits() == 0)
			}
			if !found {
				odd = append(odd, fmt.Sprintf("table %d of %s has no unreachable default", table, lay.cinID(n)))
			}
		}
		if len(odd) > 0 {
			return fmt.Errorf("fabric %s: %d problems: %s", k.fabric, len(odd), strings.Join(head(odd, 10), "; "))
		}
		return nil
	})
}

// checkCINMember checks that the interface ifname in the namespace at
// path holds addr as its only IPv4 address and a route to prefix via gw
// and nothing else of prefix; or, when addr is zero, neither an address
// nor a route in prefix.
func checkCINMember(path, ifname string, addr, prefix netip.Prefix, gw netip.Addr) error {
	return withHandle(path, func(h *netlink.Handle) error {
		l, err := h.LinkByName(ifname)
		if err != nil {
			return fmt.Errorf("%s: interface %s: %w", path, ifname, err)
		}
		as, err := h.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		var got []netip.Prefix
		for _, a := range as {
			got = append(got, prefixOf(a.IPNet))
		}
		if addr.IsValid() && (len(got) != 1 || got[0] != addr) {
			return fmt.Errorf("%s: %s holds %v, want %s", path, ifname, got, addr)
		}
		if !addr.IsValid() {
			for _, g := range got {
				if prefix.Contains(g.Addr()) {
					return fmt.Errorf("%s: %s still holds %s", path, ifname, g)
				}
			}
		}
		rs, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return err
		}
		var toPrefix []string
		ok := false
		for _, r := range rs {
			if r.Dst == nil || prefixOf(r.Dst) != prefix {
				continue
			}
			toPrefix = append(toPrefix, r.String())
			gwOK := false
			if a, okGw := netip.AddrFromSlice(r.Gw); okGw {
				gwOK = a.Unmap() == gw
			}
			ok = ok || r.LinkIndex == l.Attrs().Index && gwOK
		}
		if addr.IsValid() && (!ok || len(toPrefix) != 1) {
			return fmt.Errorf("%s: routes to %s: %v, want one via %s dev %s", path, prefix, toPrefix, gw, ifname)
		}
		if !addr.IsValid() && len(toPrefix) > 0 {
			return fmt.Errorf("%s: routes to %s left: %v", path, prefix, toPrefix)
		}
		return nil
	})
}

// fabricRefuses checks that the fabric does not forward from src, coming
// in on bridge br, to dst: the CIN's table answers "unreachable".
func fabricRefuses(fabric, br string, src, dst netip.Addr) error {
	return withHandle(fabric, func(h *netlink.Handle) error {
		rs, err := h.RouteGetWithOptions(dst.AsSlice(), &netlink.RouteGetOptions{Iif: br, SrcAddr: src.AsSlice()})
		if errors.Is(err, unix.EHOSTUNREACH) || errors.Is(err, unix.ENETUNREACH) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("fabric: route get %s from %s iif %s: %w", dst, src, br, err)
		}
		return fmt.Errorf("fabric forwards %s from %s in on %s to another CIN: %v", dst, src, br, rs)
	})
}

// ping pings addr once from the namespace at path and fails unless the
// answer is as wanted.
func ping(ctx context.Context, path string, addr netip.Addr, want bool) error {
	cmd := exec.CommandContext(ctx, "nsenter", "--net="+path, "ping", "-n", "-q", "-c", "1", "-W", "2", addr.String())
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err != nil && !errors.As(err, &exit):
		return fmt.Errorf("ping: %w (nsenter and ping are needed)", err)
	case want && err != nil:
		return fmt.Errorf("ping %s from %s: no answer: %s", addr, path, bytes.TrimSpace(out))
	case !want && err == nil:
		return fmt.Errorf("ping %s from %s: answered, want no answer", addr, path)
	}
	return nil
}

func prefixOf(n *net.IPNet) netip.Prefix {
	a, _ := netip.AddrFromSlice(n.IP)
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones)
}
