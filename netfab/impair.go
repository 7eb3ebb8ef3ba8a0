package netfab

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Impairment is what a member's link on a CEN suffers, in each direction
// alike. Down takes the link down without removing it: the fabric end
// goes down, so the member's end has no carrier. Filters (delay, jitter,
// loss, corruption, duplication, rate) run in leviathan's relay, since
// this kernel has no netem: the member's fabric end leaves the bridge,
// and a relay carries its frames, through the filters, to and from a TAP
// on the bridge. An unimpaired link stays pure kernel.
type Impairment struct {
	Down    bool
	Filters Filters
}

// Relayed reports whether the link needs the relay.
func (i *Impairment) Relayed() bool { return i != nil && !i.Filters.IsZero() }

// Validate checks the filters.
func (i *Impairment) Validate() error {
	if i == nil {
		return nil
	}
	return i.Filters.validate()
}

// portRelay joins an impaired member's fabric end to its bridge.
type portRelay struct {
	group uint32
	relay *Relay
	tap   *TAP
}

// relays are the fabric's port relays by host end name.
type relays struct {
	mu sync.Mutex // guards m
	m  map[string]*portRelay
}

// RelayTAPName is the name of the TAP that stands on the bridge for an
// impaired member's fabric end: the host end's name with "lr" for "lv".
func RelayTAPName(hostIf string) string { return "lr" + strings.TrimPrefix(hostIf, "lv") }

// isRelayTAP reports whether a link name is a relay TAP's.
func isRelayTAP(name string) bool { return strings.HasPrefix(name, "lr~") }

// setPortMode puts a member's fabric end as its impairment wants: on the
// bridge (up or down) when it is not relayed, else off the bridge with a
// relay to a TAP on it, the relay's filters set.
func (f *Fabric) setPortMode(c *CEN, bridge int, p Port) error {
	down := p.Impair != nil && p.Impair.Down
	if !p.Impair.Relayed() {
		f.closeRelay(p.HostIf)
		if err := f.c.setLink(p.HostIf, !down, bridge); err != nil {
			return err
		}
		return nil
	}
	if err := f.c.setLink(p.HostIf, !down, -1); err != nil {
		return err
	}
	f.rel.mu.Lock()
	defer f.rel.mu.Unlock()
	if pr := f.rel.m[p.HostIf]; pr != nil {
		for _, d := range []Direction{AToB, BToA} {
			if err := pr.relay.SetFilters(d, p.Impair.Filters); err != nil {
				return err
			}
		}
		return nil
	}
	tap, err := CreateTAP(f.path, TAPSpec{Name: RelayTAPName(p.HostIf), Group: c.Group, Master: c.Name})
	if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST) {
		// A TAP of ours by that name, its relay gone: make it anew.
		f.c.delLink(RelayTAPName(p.HostIf))
		tap, err = CreateTAP(f.path, TAPSpec{Name: RelayTAPName(p.HostIf), Group: c.Group, Master: c.Name})
	}
	if err != nil {
		return fmt.Errorf("relay TAP for %s: %w", p.HostIf, err)
	}
	pe, err := OpenPacketEndpoint(f.path, p.HostIf)
	if err != nil {
		tap.Close()
		return err
	}
	r := NewRelay(pe, tap)
	for _, d := range []Direction{AToB, BToA} {
		if err := r.SetFilters(d, p.Impair.Filters); err != nil {
			r.Close()
			return err
		}
	}
	if f.rel.m == nil {
		f.rel.m = map[string]*portRelay{}
	}
	f.rel.m[p.HostIf] = &portRelay{group: c.Group, relay: r, tap: tap}
	return nil
}

// closeRelay stops a port's relay, if it has one; its TAP goes with it.
func (f *Fabric) closeRelay(hostIf string) {
	f.rel.mu.Lock()
	pr := f.rel.m[hostIf]
	delete(f.rel.m, hostIf)
	f.rel.mu.Unlock()
	if pr != nil {
		pr.relay.Close()
	}
}

// closeRelaysOf stops the relays of every port in a link group.
func (f *Fabric) closeRelaysOf(group uint32) {
	f.rel.mu.Lock()
	var prs []*portRelay
	for name, pr := range f.rel.m {
		if pr.group == group {
			prs = append(prs, pr)
			delete(f.rel.m, name)
		}
	}
	f.rel.mu.Unlock()
	for _, pr := range prs {
		pr.relay.Close()
	}
}

// hasRelay reports whether a member's fabric end has a relay.
func (f *Fabric) hasRelay(hostIf string) bool {
	f.rel.mu.Lock()
	defer f.rel.mu.Unlock()
	return f.rel.m[hostIf] != nil
}

// hostIfOfTAP finds the host end a relay TAP stands for.
func (f *Fabric) hostIfOfTAP(tap string) (string, bool) {
	f.rel.mu.Lock()
	defer f.rel.mu.Unlock()
	for name, pr := range f.rel.m {
		if pr.tap.Name() == tap {
			return name, true
		}
	}
	return "", false
}

// LinkStats are a relayed link's counters: ToMember is what the bridge
// sent toward the member, FromMember what the member sent.
type LinkStats struct {
	ToMember   RelayStats `json:"to_member"`
	FromMember RelayStats `json:"from_member"`
}

// LinkStats returns the counters of a member's relay, ok false when its
// link is not relayed.
func (f *Fabric) LinkStats(hostIf string) (LinkStats, bool) {
	f.rel.mu.Lock()
	pr := f.rel.m[hostIf]
	f.rel.mu.Unlock()
	if pr == nil {
		return LinkStats{}, false
	}
	// Side A is the member's fabric end, side B the TAP on the bridge.
	return LinkStats{ToMember: pr.relay.Stats(BToA), FromMember: pr.relay.Stats(AToB)}, true
}

// setLink sets a link up or down and its master: a bridge's index, 0 to
// leave it as it is, -1 to take it off any bridge; one request.
func (c *conn) setLink(name string, up bool, master int) error {
	req := c.request(unix.RTM_SETLINK, 0)
	m := upMsg()
	if !up {
		m.Flags = 0
	}
	req.AddData(m)
	req.AddData(nlIfName(name))
	switch {
	case master > 0:
		req.AddData(nlMaster(uint32(master)))
	case master < 0:
		req.AddData(nlMaster(0))
	}
	if err := c.exec(req); err != nil {
		return fmt.Errorf("set %q %s: %w", name, map[bool]string{true: "up", false: "down"}[up], err)
	}
	return nil
}

func nlIfName(name string) *nl.RtAttr  { return nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)) }
func nlMaster(index uint32) *nl.RtAttr { return nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(index)) }
