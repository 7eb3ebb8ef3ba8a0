// Package cen owns the CEN file format, its validation, and the planning of
// how a CEN is wired: wire or bridge, interface names that fit the kernel's
// 15 bytes, MAC addresses and link groups. It does no I/O beyond decoding;
// everything here is a pure function and safe for concurrent use.
package cen

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/leviathan-net/leviathan/graph"
)

// Spec is one CEN as a CEN file describes it.
type Spec struct {
	ID string
	// Containers are the members: a container ID names a container of
	// the host whose API takes the file, "hostID/containerID" one of
	// another host.
	Containers []string
}

// SplitMember splits a member of a CEN file into its host ("" when it
// names none) and container ID.
func SplitMember(s string) (host, id string) {
	if h, c, ok := strings.Cut(s, "/"); ok {
		return h, c
	}
	return "", s
}

type fileJSON struct {
	CENList *[]struct {
		CENID        *string   `json:"cenID"`
		ContainerIDs *[]string `json:"containerIDs"`
	} `json:"cenList"`
}

// ParseFile decodes and validates a CEN file:
//
//	{"cenList":[{"cenID":"cen1","containerIDs":["c1","c2","host2/c3"]}, ...]}
//
// Unknown keys are ignored, as leviathan did. Every entry has its
// containerIDs: a missing (or null) list is malformed, not an empty CEN,
// which says []. Every ID is validated, a CEN may appear once, and a
// container once per CEN. Short interface names of
// CENs in the file must not collide.
func ParseFile(r io.Reader) ([]Spec, error) {
	dec := json.NewDecoder(r)
	var f fileJSON
	if err := dec.Decode(&f); err != nil {
		return nil, graph.Errorf(graph.ErrInvalid, "CEN file: %w", err)
	}
	if dec.More() {
		return nil, graph.Errorf(graph.ErrInvalid, "CEN file: trailing data after the JSON object")
	}
	if f.CENList == nil {
		return nil, graph.Errorf(graph.ErrInvalid, `CEN file: want {"cenList":[{"cenID":...,"containerIDs":[...]}]}`)
	}
	specs := make([]Spec, 0, len(*f.CENList))
	seen := map[string]bool{}
	names := map[string]string{}
	for i, e := range *f.CENList {
		if e.CENID == nil {
			return nil, graph.Errorf(graph.ErrInvalid, "CEN file: cenList[%d] has no cenID", i)
		}
		id := *e.CENID
		if err := ValidateCENID(id); err != nil {
			return nil, fmt.Errorf("CEN file: cenList[%d]: %w", i, err)
		}
		if seen[id] {
			return nil, graph.Errorf(graph.ErrInvalid, "CEN file: CEN %q listed twice", id)
		}
		seen[id] = true
		if other, ok := names[IfName(id)]; ok {
			return nil, graph.Errorf(graph.ErrConflict, "CEN file: CENs %q and %q share the interface name %q", other, id, IfName(id))
		}
		names[IfName(id)] = id
		if e.ContainerIDs == nil {
			return nil, graph.Errorf(graph.ErrInvalid, `CEN file: CEN %q has no containerIDs (a CEN of no containers says "containerIDs":[])`, id)
		}
		members := map[string]bool{}
		for _, c := range *e.ContainerIDs {
			h, ctr := SplitMember(c)
			if strings.Contains(c, "/") {
				if err := graph.ValidateID("host", h); err != nil {
					return nil, fmt.Errorf("CEN file: CEN %q: member %q: %w", id, c, err)
				}
			}
			if err := graph.ValidateID("container", ctr); err != nil {
				return nil, fmt.Errorf("CEN file: CEN %q: %w", id, err)
			}
			if members[c] {
				return nil, graph.Errorf(graph.ErrInvalid, "CEN file: CEN %q lists container %q twice", id, c)
			}
			members[c] = true
		}
		specs = append(specs, Spec{ID: id, Containers: append([]string{}, *e.ContainerIDs...)})
	}
	return specs, nil
}

// ParseIDList decodes a JSON list of IDs (the body of make and destroy),
// validating each and dropping repeats.
func ParseIDList(kind string, r io.Reader) ([]string, error) {
	dec := json.NewDecoder(r)
	var ids []string
	if err := dec.Decode(&ids); err != nil {
		return nil, graph.Errorf(graph.ErrInvalid, `want a JSON list of %s IDs, like ["a","b"]: %w`, kind, err)
	}
	if dec.More() {
		return nil, graph.Errorf(graph.ErrInvalid, "trailing data after the list of %s IDs", kind)
	}
	seen := map[string]bool{}
	out := ids[:0]
	for _, id := range ids {
		if err := graph.ValidateID(kind, id); err != nil {
			return nil, err
		}
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out, nil
}

// reservedIfNames are interface names the kernel refuses or every
// namespace already has, so no CEN may be called so.
var reservedIfNames = map[string]bool{"lo": true, "all": true, "default": true, "bonding_masters": true}

// ValidateCENID checks the ID of a new CEN: a valid ID, not one of the
// API's route words (graph.RouteWords), whose interface name the kernel
// accepts.
func ValidateCENID(id string) error {
	if err := graph.ValidateObjectID("CEN", id); err != nil {
		return err
	}
	if reservedIfNames[IfName(id)] {
		return graph.Errorf(graph.ErrInvalid, "CEN ID %q: reserved: the kernel has or refuses an interface of that name", id)
	}
	return nil
}

// Plan returns the wiring a CEN of n members gets: none below 2, a single
// veth pair for exactly 2, a bridge from 3.
func Plan(n int) graph.Wiring {
	switch {
	case n < 2:
		return graph.WiringNone
	case n == 2:
		return graph.WiringWire
	default:
		return graph.WiringBridge
	}
}

// WiringOf returns a CEN's wiring: Plan of its member count, except that
// a CEN with an impaired link is always a bridge (from 2 members): the
// impaired member's frames go through leviathan's relay to a TAP on the
// bridge, and its settings live on its fabric end.
//
// A CEN with a TAP member (an emulated VM) is a bridge too: the VM's TAP
// is a port of it. So is a CEN whose members are on several hosts, on
// each of them: a VXLAN port on each host's bridge joins them.
func WiringOf(c *graph.CEN) graph.Wiring {
	if len(c.Hosts()) > 1 {
		return graph.WiringBridge
	}
	if (len(c.Links) > 0 || len(c.TAPMembers) > 0) && len(c.Members) >= 2 {
		return graph.WiringBridge
	}
	return Plan(len(c.Members))
}

// MaxIfName is the longest interface name the kernel takes (IFNAMSIZ-1).
const MaxIfName = 15

// IfName is the interface name of a CEN: its ID when that fits in 15
// bytes, else the first 8 bytes, '~' and 6 hex digits of the ID's hash.
// IDs cannot contain '~', so a short name never equals another CEN's ID.
func IfName(id string) string {
	if len(id) <= MaxIfName {
		return id
	}
	return id[:8] + "~" + hashHex(6, "ifname", id)
}

// HostIfName names the fabric end of a member's veth on a bridge CEN:
// "lv~" and 12 hex digits of a hash of the CEN and the member. The '~' at
// index 2 keeps it apart from CEN interface names.
func HostIfName(cenID string, m graph.Member) string {
	return "lv~" + hashHex(12, "host", cenID, m.Host, m.Container)
}

// MAC is the deterministic, locally administered unicast address of a
// member's interface on a CEN, stable across make, destroy and restarts.
func MAC(cenID string, m graph.Member) net.HardwareAddr {
	return mac("member", cenID, m.Host, m.Container)
}

// BridgeMAC is the bridge's own address; fixing it keeps it from changing
// as ports come and go.
func BridgeMAC(cenID string) net.HardwareAddr { return mac("bridge", cenID) }

// HostBridgeMAC is the MAC of a CEN's bridge on a host that does not
// route it, when the CEN spans hosts: BridgeMAC is the gateway's, and a
// second bridge with it on the same segment would take the gateway's
// frames for itself.
func HostBridgeMAC(cenID, host string) net.HardwareAddr { return mac("bridge", cenID, host) }

func mac(parts ...string) net.HardwareAddr {
	sum := hash(parts...)
	hw := net.HardwareAddr(append([]byte(nil), sum[:6]...))
	hw[0] = hw[0]&^0x01 | 0x02 // unicast, locally administered
	return hw
}

func hash(parts ...string) [32]byte {
	var b bytes.Buffer
	for _, p := range parts {
		b.WriteString(p)
		b.WriteByte(0)
	}
	return sha256.Sum256(b.Bytes())
}

func hashHex(n int, parts ...string) string {
	sum := hash(parts...)
	return hex.EncodeToString(sum[:])[:n]
}

// GroupBase is the first kernel link group leviathan uses; CEN n (from 0)
// marks its links with GroupBase+n. Links in [GroupBase, GroupBase+MaxGroups)
// are leviathan's; every other link is someone else's and never touched.
const (
	GroupBase = 0x4c560000 // "LV"
	MaxGroups = 0x10000
)

// DyingGroup is the last group of the range, never given to a CEN: a
// destroy of many CENs gathers their links in it to delete them all in
// one request. Whatever a crash leaves in it is a leftover.
const DyingGroup = GroupBase + MaxGroups - 1

// IsOwnGroup reports whether a link group is in leviathan's range.
func IsOwnGroup(g uint32) bool { return g >= GroupBase && g < GroupBase+MaxGroups }

// FreeGroup returns the lowest group not in used.
func FreeGroup(used map[uint32]bool) (uint32, error) {
	for g := uint32(GroupBase); g < DyingGroup; g++ {
		if !used[g] {
			return g, nil
		}
	}
	return 0, graph.Errorf(graph.ErrConflict, "all %d CEN link groups are in use", MaxGroups-1)
}
