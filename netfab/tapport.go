package netfab

import (
	"strings"
	"sync"
)

// TAPPort is a CEN member whose frames are in no namespace: an emulated
// VM, or a GNS3 switch port, reached through leviathan's relay. netfab
// makes a TAP on the CEN's bridge for it and hands it over; the member
// relays frames between the TAP and wherever it lives (a UDP tunnel).
// The TAP goes away when its holder closes it, so a crash leaves none.
type TAPPort interface {
	// AttachTAP hands the port its TAP; it owns the TAP from then on.
	AttachTAP(t *TAP) error
	// DetachTAP closes the TAP the port holds, if any.
	DetachTAP()
	// SetImpairment applies a link's settings in the port's relay (nil
	// clears them): filters both ways, and down as a suspended relay.
	SetImpairment(i *Impairment) error
}

// tapPorts are the TAP members attached to bridges, by TAP name.
type tapPorts struct {
	mu sync.Mutex // guards m
	m  map[string]tapPortRef
}

type tapPortRef struct {
	group uint32
	port  TAPPort
}

// TAPPortName is the name of a TAP member's TAP: its host end name with
// "lt" for "lv".
func TAPPortName(hostIf string) string { return "lt" + strings.TrimPrefix(hostIf, "lv") }

func isTAPPort(name string) bool { return strings.HasPrefix(name, "lt~") }

// ensureTAPPort makes a TAP member's TAP on the bridge and attaches it,
// unless it is attached already; then it applies the link's settings.
func (f *Fabric) ensureTAPPort(c *CEN, p Port, exists bool) error {
	name := TAPPortName(p.HostIf)
	f.tp.mu.Lock()
	ref, ok := f.tp.m[name]
	f.tp.mu.Unlock()
	if !ok || ref.port != p.TAP || !exists {
		if ok {
			ref.port.DetachTAP()
		}
		if exists {
			f.c.delLink(name) // a TAP left without its holder
		}
		tap, err := CreateTAP(f.path, TAPSpec{Name: name, Group: c.Group, MAC: p.MAC, Master: c.Name})
		if err != nil {
			return err
		}
		if err := p.TAP.AttachTAP(tap); err != nil {
			tap.Close()
			return err
		}
		f.tp.mu.Lock()
		if f.tp.m == nil {
			f.tp.m = map[string]tapPortRef{}
		}
		f.tp.m[name] = tapPortRef{group: c.Group, port: p.TAP}
		f.tp.mu.Unlock()
	}
	return p.TAP.SetImpairment(p.Impair)
}

// detachTAPPort takes a TAP member off its bridge, by TAP name.
func (f *Fabric) detachTAPPort(name string) bool {
	f.tp.mu.Lock()
	ref, ok := f.tp.m[name]
	delete(f.tp.m, name)
	f.tp.mu.Unlock()
	if ok {
		ref.port.DetachTAP()
	}
	return ok
}

// detachTAPPortsOf takes every TAP member of a link group off.
func (f *Fabric) detachTAPPortsOf(group uint32) {
	f.tp.mu.Lock()
	var refs []tapPortRef
	for name, ref := range f.tp.m {
		if ref.group == group {
			refs = append(refs, ref)
			delete(f.tp.m, name)
		}
	}
	f.tp.mu.Unlock()
	for _, ref := range refs {
		ref.port.DetachTAP()
	}
}
