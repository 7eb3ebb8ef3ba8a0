package core

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/leviathan-net/leviathan/graph"
)

// Node kinds of a Topology.
const (
	NodeHost      = "host"
	NodeContainer = "container"
	NodeCEN       = "cen"
	NodeCIN       = "cin"
	NodeCPool     = "cpool"
)

// Topology is the fabric as a graph: hosts, containers, CENs and CINs as
// nodes (a container's parent is its host, a CEN's its CIN: the groups a
// drawing nests them in) and one link per CEN membership.
type Topology struct {
	Nodes []TopoNode `json:"nodes"`
	Links []TopoLink `json:"links"`
}

// TopoNode is one object. Fields beyond ID, Kind, Label and State are set
// for the kinds they belong to.
type TopoNode struct {
	ID     string `json:"id"` // "<kind>:<object ID>", a container's as "container:<host>/<id>"
	Kind   string `json:"kind"`
	Label  string `json:"label"`
	State  string `json:"state"`
	Error  string `json:"error,omitempty"`
	Parent string `json:"parent,omitempty"` // the group node it sits in
	// Containers.
	Host    string  `json:"hostID,omitempty"`
	Runtime string  `json:"runtime,omitempty"`
	Netns   string  `json:"netns,omitempty"`
	Tag     *string `json:"tag,omitempty"`
	// CENs.
	Wiring *string `json:"wiring_type,omitempty"`
	IfName string  `json:"ifname,omitempty"`
	// CINs.
	Prefix string   `json:"prefix,omitempty"`
	CENs   []string `json:"cenIDs,omitempty"`
	// Pools: their image and size; a pool's containers name it.
	Image     string `json:"type,omitempty"`
	StartWith *int   `json:"start_with,omitempty"`
	CPool     string `json:"cpoolID,omitempty"`
}

// TopoLink is a container's membership of a CEN. Interface, MAC and
// address are set once the CEN is made and wired; Pcap is the URL of a
// live capture of the link while it is in the kernel.
type TopoLink struct {
	ID        string  `json:"id"`
	Source    string  `json:"source"` // the container node
	Target    string  `json:"target"` // the CEN node
	CEN       string  `json:"cenID"`
	Container string  `json:"containerID"`
	Host      string  `json:"hostID"`
	State     string  `json:"state"` // "wired", or "unwired" when no link is in the kernel
	Interface string  `json:"interface,omitempty"`
	MAC       string  `json:"mac,omitempty"`
	IP        *string `json:"ipaddress,omitempty"`
	CIN       *string `json:"cinID,omitempty"`
	Pcap      string  `json:"pcap,omitempty"`
	// Impairment is what the link suffers (PUT .../link), when anything.
	Impairment *graph.LinkSettings `json:"impairment,omitempty"`
}

// Link states.
const (
	LinkWired   = "wired"
	LinkUnwired = "unwired"
)

// NodeID returns the topology node ID of an object.
func NodeID(kind, id string) string { return kind + ":" + id }

func containerNodeID(host, id string) string { return NodeID(NodeContainer, host+"/"+id) }

// PcapPath is the URL path of a live capture of a member's link.
func PcapPath(host, container, cenID string) string {
	return "/host/" + url.PathEscape(host) + "/" + url.PathEscape(container) + "/" + url.PathEscape(cenID) + "/pcap"
}

// Topology returns the fabric as a graph. It is built from the same
// views as GET /cen, /cin and /host/{hostId}, so it shows what they show.
func (s *Service) Topology(ctx context.Context) (Topology, error) {
	t := Topology{Nodes: []TopoNode{}, Links: []TopoLink{}}
	cens, err := s.ListCENs(ctx)
	if err != nil {
		return t, err
	}
	cins, err := s.ListCINs(ctx)
	if err != nil {
		return t, err
	}
	ctrs, err := s.ListContainers(ctx, s.host)
	if err != nil {
		return t, err
	}

	t.Nodes = append(t.Nodes, TopoNode{ID: NodeID(NodeHost, s.host), Kind: NodeHost, Label: s.host, State: "running"})
	pools := map[string]bool{}
	if err := s.store.View(func(tx graph.Tx) error {
		ps, err := graph.ListCPools(tx)
		for _, p := range ps {
			pools[p.ID] = true
			t.Nodes = append(t.Nodes, TopoNode{
				ID: NodeID(NodeCPool, p.ID), Kind: NodeCPool, Label: p.ID, State: string(p.State), Error: p.Error,
				Image: p.Image, StartWith: &p.StartWith,
			})
		}
		return err
	}); err != nil {
		return t, err
	}
	cinOf := map[string]string{}
	for _, c := range cins {
		for _, id := range c.CENs {
			cinOf[id] = c.ID
		}
		t.Nodes = append(t.Nodes, TopoNode{
			ID: NodeID(NodeCIN, c.ID), Kind: NodeCIN, Label: c.ID, State: string(c.State), Error: c.Error,
			Prefix: c.Prefix, CENs: c.CENs,
		})
	}
	links := map[string]*graph.LinkSettings{} // by link ID
	for _, c := range cens {
		for k, l := range c.Links {
			links["link:"+c.ID+"/"+k] = l
		}
		n := TopoNode{
			ID: NodeID(NodeCEN, c.ID), Kind: NodeCEN, Label: c.ID, State: string(c.State), Error: c.Error,
			Wiring: c.Wiring, IfName: c.IfName,
		}
		if ci, ok := cinOf[c.ID]; ok {
			n.Parent = NodeID(NodeCIN, ci)
		}
		t.Nodes = append(t.Nodes, n)
	}
	for _, c := range ctrs {
		cid := containerNodeID(c.Host, c.ID)
		n := TopoNode{
			ID: cid, Kind: NodeContainer, Label: c.ID, State: string(c.State), Error: c.Error,
			Parent: NodeID(NodeHost, c.Host), Host: c.Host, Runtime: c.Runtime, Netns: c.Netns, Tag: c.Tag,
		}
		if c.Tag != nil && pools[*c.Tag] && c.Runtime == graph.RuntimeDocker {
			n.CPool = *c.Tag // a pool's containers carry its ID as their tag
		}
		t.Nodes = append(t.Nodes, n)
		ifs := map[string]InterfaceView{}
		for _, iv := range c.Interfaces {
			ifs[iv.CEN] = iv
		}
		for _, cenID := range c.CENs {
			l := TopoLink{
				ID: "link:" + cenID + "/" + c.Host + "/" + c.ID, Source: cid, Target: NodeID(NodeCEN, cenID),
				CEN: cenID, Container: c.ID, Host: c.Host, State: LinkUnwired,
			}
			l.Impairment = links[l.ID]
			if iv, ok := ifs[cenID]; ok {
				l.Interface, l.MAC, l.IP, l.CIN = iv.Name, iv.MAC, iv.IP, iv.CIN
				if c.State == "running" {
					l.State = LinkWired
					l.Pcap = PcapPath(c.Host, c.ID, cenID)
				}
			}
			t.Links = append(t.Links, l)
		}
	}
	return t, nil
}

// DOT renders the topology for Graphviz: CINs and hosts as clusters,
// containers as ellipses, CENs as boxes, a member link labelled with its
// interface and address.
func (t Topology) DOT() string {
	var b strings.Builder
	b.WriteString("graph leviathan {\n\tgraph [rankdir=LR, fontname=\"Helvetica\"];\n\tnode [fontname=\"Helvetica\"];\n\tedge [fontname=\"Helvetica\", fontsize=10];\n")
	children := t.children()
	var node func(n TopoNode, indent string)
	node = func(n TopoNode, indent string) {
		if n.Kind == NodeHost || n.Kind == NodeCIN {
			fmt.Fprintf(&b, "%ssubgraph %s {\n%s\tlabel=%s;\n%s\tstyle=rounded;\n", indent, dotID("cluster_"+n.ID), indent, dotID(groupLabel(n)), indent)
			for _, c := range children[n.ID] {
				node(c, indent+"\t")
			}
			fmt.Fprintf(&b, "%s}\n", indent)
			return
		}
		shape := "ellipse"
		if n.Kind == NodeCEN {
			shape = "box"
		}
		fmt.Fprintf(&b, "%s%s [label=%s, shape=%s, color=%s];\n", indent, dotID(n.ID), dotID(n.Label+"\n"+n.State), shape, dotID(stateColour(n.State)))
	}
	for _, n := range children[""] {
		node(n, "\t")
	}
	for _, l := range t.Links {
		style := "solid"
		if l.State != LinkWired {
			style = "dashed"
		}
		fmt.Fprintf(&b, "\t%s -- %s [label=%s, style=%s];\n", dotID(l.Source), dotID(l.Target), dotID(linkLabel(l)), style)
	}
	b.WriteString("}\n")
	return b.String()
}

// Mermaid renders the topology as a Mermaid flowchart: CINs and hosts as
// subgraphs, containers as rounded nodes, CENs as hexagons.
func (t Topology) Mermaid() string {
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	ids := map[string]string{}
	for i, n := range t.Nodes {
		ids[n.ID] = fmt.Sprintf("n%d", i)
	}
	children := t.children()
	var node func(n TopoNode, indent string)
	node = func(n TopoNode, indent string) {
		if n.Kind == NodeHost || n.Kind == NodeCIN {
			fmt.Fprintf(&b, "%ssubgraph %s[%s]\n", indent, ids[n.ID], mermaidText(groupLabel(n)))
			for _, c := range children[n.ID] {
				node(c, indent+"  ")
			}
			fmt.Fprintf(&b, "%send\n", indent)
			return
		}
		open, shut := "(", ")"
		if n.Kind == NodeCEN {
			open, shut = "{{", "}}"
		}
		fmt.Fprintf(&b, "%s%s%s%s%s\n", indent, ids[n.ID], open, mermaidText(n.Label+" ("+n.State+")"), shut)
	}
	for _, n := range children[""] {
		node(n, "  ")
	}
	for _, l := range t.Links {
		arrow := "---"
		if l.State != LinkWired {
			arrow = "-.-"
		}
		fmt.Fprintf(&b, "  %s %s|%s| %s\n", ids[l.Source], arrow, mermaidText(linkLabel(l)), ids[l.Target])
	}
	return b.String()
}

// children groups nodes by parent, in the topology's order; a parent
// that is not a node leaves its children at the top.
func (t Topology) children() map[string][]TopoNode {
	known := map[string]bool{}
	for _, n := range t.Nodes {
		known[n.ID] = true
	}
	out := map[string][]TopoNode{}
	for _, n := range t.Nodes {
		p := n.Parent
		if !known[p] {
			p = ""
		}
		out[p] = append(out[p], n)
	}
	return out
}

func groupLabel(n TopoNode) string {
	if n.Kind == NodeCIN {
		return "CIN " + n.Label + " " + n.Prefix + " (" + n.State + ")"
	}
	return "host " + n.Label
}

func linkLabel(l TopoLink) string {
	parts := []string{}
	if l.Interface != "" {
		parts = append(parts, l.Interface)
	}
	if l.IP != nil {
		parts = append(parts, *l.IP)
	}
	if len(parts) == 0 {
		parts = append(parts, l.State)
	}
	return strings.Join(parts, " ")
}

// stateColour is the colour of a state in renderings.
func stateColour(state string) string {
	switch graph.State(state) {
	case graph.StateConfigured, graph.StateRunning:
		return "darkgreen"
	case graph.StateUnconfigured:
		return "darkorange"
	case graph.StateFailed, graph.StateUnknown:
		return "red"
	case graph.StateStopped, graph.StateOff:
		return "grey"
	}
	return "goldenrod" // pending, deleting
}

// dotID quotes s as a DOT ID.
func dotID(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

// mermaidText quotes s as a Mermaid label; '"' has no escape there but
// its entity.
func mermaidText(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, "#quot;") + `"`
}
