package core

import (
	"context"
	"net/netip"

	"github.com/leviathan-net/leviathan/cin"
	"github.com/leviathan-net/leviathan/graph"
)

// tapAddr is a TAP member's address in a CIN and its CEN's gateway.
type tapAddr struct {
	addr netip.Prefix
	gw   netip.Addr
}

// syncTAPAddresses gives every TAP member (an emulated VM) the address a
// made CIN holds for it, and takes it away from those in none: a VM has
// no namespace for netlink to address, its runtime sets it (through its
// console). Like the rest of reconcile it is level-triggered: it reads
// what the graph says and hands each member its address again, which
// changes nothing when it holds it already. Without TAP members it costs
// one read of the containers.
func (s *Service) syncTAPAddresses(ctx context.Context) {
	if !s.hasTAPRuntime() {
		return
	}
	var ctrs []*graph.Container
	want := map[graph.Member]tapAddr{}
	err := s.store.View(func(tx graph.Tx) error {
		all, err := graph.ListContainers(tx)
		if err != nil {
			return err
		}
		for _, c := range all {
			if c.Host == s.host && s.tapRuntimeOf(c) != nil {
				ctrs = append(ctrs, c)
			}
		}
		if len(ctrs) == 0 {
			return nil
		}
		cins, err := graph.ListCINs(tx)
		if err != nil {
			return err
		}
		for _, ci := range cins {
			if ci.State != graph.StateConfigured {
				continue
			}
			w, err := loadCINWorld(tx, ci)
			if err != nil {
				return err
			}
			p := netip.MustParsePrefix(ci.Prefix)
			for _, id := range ci.CENs {
				n := w.cens[id]
				if n.State != graph.StateConfigured || len(n.TAPMembers) == 0 {
					continue
				}
				subnet := cin.Subnet(p, ci.Subnets[id])
				for _, m := range n.Members {
					a, ok := ci.Addrs[graph.AddrKey(id, m)]
					if !ok || !wired(n, m, w.ctrs) || w.ctrs[m].Netns != "" {
						continue
					}
					want[m] = tapAddr{netip.PrefixFrom(netip.MustParseAddr(a), subnet.Bits()), cin.Gateway(subnet)}
				}
			}
		}
		return nil
	})
	if err != nil {
		s.log.Warn("addressing emulated VMs", "err", err)
		return
	}
	for _, c := range ctrs {
		a := want[c.Member()]
		if err := s.tapRuntimeOf(c).SetAddress(ctx, c, a.addr, a.gw); err != nil {
			s.log.Warn("addressing an emulated VM", "vm", c.ID, "err", err)
		}
	}
}

// hasTAPMembers reports whether any CEN of the worlds has a TAP member:
// only then can a change of them change a TAP member's address.
func hasTAPMembers(ws ...*cinWorld) bool {
	for _, w := range ws {
		for _, n := range w.cens {
			if len(n.TAPMembers) > 0 {
				return true
			}
		}
	}
	return false
}

func (s *Service) hasTAPRuntime() bool {
	for _, r := range s.runtimes {
		if _, ok := r.(TAPRuntime); ok {
			return true
		}
	}
	return false
}
