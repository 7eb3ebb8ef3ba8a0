package netfab

import (
	"context"
	"net"
	"sort"

	"github.com/vishvananda/netlink"
)

// LinkInfo is what leviathan reports about a link.
type LinkInfo struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Index  int    `json:"index"`
	Group  uint32 `json:"group"`
	Master string `json:"master,omitempty"`
	MAC    string `json:"mac"`
	Up     bool   `json:"up"`
	// Peer is the ifindex of a veth's other end (in its own namespace).
	Peer int `json:"peer,omitempty"`
}

// ListLinks lists the links of the namespace at path, by name.
func ListLinks(path string) ([]LinkInfo, error) {
	var out []LinkInfo
	err := withConn(path, func(c *conn) error {
		// No ctx to bound the retries of the dump by: they are few and short.
		ls, err := c.links(context.Background())
		if err != nil {
			return err
		}
		names := linkNames(ls)
		for _, l := range ls {
			a := l.Attrs()
			out = append(out, LinkInfo{
				Name:   a.Name,
				Kind:   l.Type(),
				Index:  a.Index,
				Group:  a.Group,
				Master: names[a.MasterIndex],
				MAC:    a.HardwareAddr.String(),
				Up:     a.Flags&net.FlagUp != 0,
				Peer:   peerIndex(l.Type(), a.ParentIndex),
			})
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

func peerIndex(kind string, parent int) int {
	if kind == "veth" {
		return parent
	}
	return 0
}

// linkNames maps ifindex to name.
func linkNames(ls []netlink.Link) map[int]string {
	names := make(map[int]string, len(ls))
	for _, l := range ls {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	return names
}
