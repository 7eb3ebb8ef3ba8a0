package core

import (
	"context"

	"github.com/leviathan-net/leviathan/cen"
	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/netfab"
)

// fabricPath is what a Fabric that lives in a namespace of its own
// answers (netfab.Fabric does); captures on a bridge CEN need it.
type fabricPath interface{ Path() string }

// CaptureTarget says where to capture a member's link on a CEN: the
// fabric end of its veth on a bridge CEN, or, on a wire (two members
// joined by one veth pair, nothing in the fabric), the member's own end
// inside its namespace. It reads the graph only; the caller opens the
// capture (netfab.OpenCapture).
//
// Unknown host, container or CEN, or a container that is not a member
// of the CEN, is ErrNotFound; a CEN that is not made, or a link not
// wired now (fewer than two members, or the member does not run), is
// ErrConflict.
func (s *Service) CaptureTarget(ctx context.Context, host, id, cenID string) (netfab.CaptureSpec, error) {
	var sp netfab.CaptureSpec
	if err := s.checkHost(host); err != nil {
		return sp, err
	}
	if host != s.host {
		// Its link is in its own host's kernel.
		return sp, graph.Errorf(graph.ErrConflict, "container %q is on host %q: capture its link through that host's API", id, host)
	}
	if err := graph.ValidateID("container", id); err != nil {
		return sp, err
	}
	if err := graph.ValidateID("CEN", cenID); err != nil {
		return sp, err
	}
	var (
		c   *graph.CEN
		ctr *graph.Container
	)
	err := s.store.View(func(tx graph.Tx) error {
		var err error
		if ctr, err = graph.GetContainer(tx, host, id); err != nil {
			return err
		}
		c, err = graph.GetCEN(tx, cenID)
		return err
	})
	if err != nil {
		return sp, err
	}
	m := ctr.Member()
	if !c.HasMember(m) {
		return sp, graph.Errorf(graph.ErrNotFound, "container %q is not a member of CEN %q", id, cenID)
	}
	if c.State != graph.StateConfigured {
		return sp, graph.Errorf(graph.ErrConflict, "CEN %q is not made (state %s): its links are not in the kernel", cenID, c.State)
	}
	if !ctr.Running() {
		return sp, graph.Errorf(graph.ErrConflict, "container %q does not run (state %s): its link on CEN %q is not wired", id, ctr.State, cenID)
	}
	switch cen.WiringOf(c) {
	case graph.WiringWire:
		return netfab.CaptureSpec{Netns: ctr.Netns, IfName: c.IfName, Group: c.Group}, nil
	case graph.WiringBridge:
		fp, ok := s.fab.(fabricPath)
		if !ok {
			return sp, graph.Errorf(graph.ErrConflict, "CEN %q: this fabric has no namespace to capture in", cenID)
		}
		name := cen.HostIfName(cenID, m)
		if s.tapRuntimeOf(ctr) != nil {
			name = netfab.TAPPortName(name) // an emulated VM's TAP on the bridge
		}
		return netfab.CaptureSpec{Netns: fp.Path(), IfName: name, Group: c.Group, Fabric: true}, nil
	}
	return sp, graph.Errorf(graph.ErrConflict, "CEN %q has %d member(s): no link to capture", cenID, len(c.Members))
}
