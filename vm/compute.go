package vm

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/monitor"
)

// The GNS3 2.2 compute API (/v2/compute/...) names VMs "nodes", and adds
// switches and hubs (switch.go). A VPCS node is a VM of this Manager
// under its node_id; the node JSON is the GNS3 2.2 compute's.

// Node types a GNS3 2.2 controller may create here.
const (
	NodeTypeVPCS           = "vpcs"
	NodeTypeEthernetSwitch = "ethernet_switch"
	NodeTypeEthernetHub    = "ethernet_hub"
)

// NodeTypes are the node types served, as capabilities lists them.
var NodeTypes = []string{NodeTypeVPCS, NodeTypeEthernetSwitch, NodeTypeEthernetHub}

// ComputeProjectSpec is the body of POST /v2/compute/projects.
type ComputeProjectSpec struct {
	ID        string          `json:"project_id"`
	Name      string          `json:"name"`
	Variables json.RawMessage `json:"variables"`
}

// ComputeProjectView is a project as a GNS3 2.2 compute shows it.
type ComputeProjectView struct {
	Name      string          `json:"name"`
	ID        string          `json:"project_id"`
	Variables json.RawMessage `json:"variables"`
}

// OpenComputeProject creates a project, or returns the one with that ID
// (a controller posts it again when it re-opens the project).
func (m *Manager) OpenComputeProject(ctx context.Context, spec ComputeProjectSpec) (ComputeProjectView, error) {
	if spec.ID == "" {
		return ComputeProjectView{}, graph.Errorf(graph.ErrInvalid, "project_id is required")
	}
	v, _, err := m.CreateProject(ctx, ProjectSpec{ID: spec.ID, Name: spec.Name})
	vars := spec.Variables
	if len(vars) == 0 {
		vars = json.RawMessage("null")
	}
	return ComputeProjectView{Name: v.Name, ID: v.ID, Variables: vars}, err
}

// ComputeProject returns a project as the compute API shows it.
func (m *Manager) ComputeProject(ctx context.Context, id string) (ComputeProjectView, error) {
	v, err := m.GetProject(ctx, id)
	return ComputeProjectView{Name: v.Name, ID: v.ID, Variables: json.RawMessage("null")}, err
}

// ComputeProjects lists the projects as the compute API shows them.
func (m *Manager) ComputeProjects(ctx context.Context) ([]ComputeProjectView, error) {
	ps, err := m.ListProjects(ctx)
	out := make([]ComputeProjectView, len(ps))
	for i, p := range ps {
		out[i] = ComputeProjectView{Name: p.Name, ID: p.ID, Variables: json.RawMessage("null")}
	}
	return out, err
}

// CloseProject is a controller closing a project: its switches and hubs
// go with their CENs, its VMs stop and go, every port it held is freed,
// and nothing of it runs. Its directory stays; a controller that opens
// the project again creates its nodes again, with the same IDs.
func (m *Manager) CloseProject(ctx context.Context, id string) error {
	return m.removeProject(ctx, id, true)
}

// NodeSpec is the body of POST and PUT /v2/compute/projects/{pid}/{type}/nodes.
type NodeSpec struct {
	ID            string  `json:"node_id"`
	Name          *string `json:"name"`
	Console       *int    `json:"console"`
	ConsoleType   *string `json:"console_type"`
	StartupScript *string `json:"startup_script"`
	// PortsMapping is a switch's or hub's ports (switch.go).
	PortsMapping []SwitchPort `json:"ports_mapping"`
}

// NodeView is a VPCS node as a GNS3 2.2 compute shows it.
type NodeView struct {
	Name          string `json:"name"`
	NodeID        string `json:"node_id"`
	NodeDirectory string `json:"node_directory"`
	Status        string `json:"status"`
	Console       *int   `json:"console"`
	ConsoleType   string `json:"console_type"`
	ProjectID     string `json:"project_id"`
	CommandLine   string `json:"command_line"`
}

// nodeView is the VM as a compute node; n.lock is held.
func (n *node) nodeView() NodeView {
	console := n.rec.Console
	return NodeView{
		Name: n.rec.Name, NodeID: n.rec.ID, NodeDirectory: n.dir, Status: n.status(),
		Console: &console, ConsoleType: "telnet", ProjectID: n.rec.Project,
		CommandLine: strings.Join(n.rec.Argv, " "),
	}
}

// nodeEvent is the node.updated of a VM; n.lock is held.
func (n *node) nodeEvent() monitor.NodeEvent {
	v := n.nodeView()
	return monitor.NodeEvent{
		NodeID: v.NodeID, ProjectID: v.ProjectID, Name: v.Name, Status: v.Status,
		Console: v.Console, ConsoleType: v.ConsoleType, NodeDirectory: v.NodeDirectory, CommandLine: v.CommandLine,
	}
}

// checkConsoleType refuses a console a VPCS has not.
func checkConsoleType(t *string) error {
	if t != nil && *t != "telnet" {
		return graph.Errorf(graph.ErrInvalid, "console_type %q: a VPCS has a telnet console", *t)
	}
	return nil
}

// CreateVPCSNode creates a stopped VPCS node: a VM under the node_id, on
// the console port given (a re-opened project's) or a free one.
func (m *Manager) CreateVPCSNode(ctx context.Context, pid string, spec NodeSpec) (NodeView, error) {
	if spec.ID == "" {
		return NodeView{}, graph.Errorf(graph.ErrInvalid, "node_id is required")
	}
	if spec.Name == nil {
		return NodeView{}, graph.Errorf(graph.ErrInvalid, "name is required")
	}
	if err := checkConsoleType(spec.ConsoleType); err != nil {
		return NodeView{}, err
	}
	if m.switchByID(spec.ID) != nil {
		return NodeView{}, graph.Errorf(graph.ErrConflict, "node %q exists (a switch or hub)", spec.ID)
	}
	vs := VMSpec{ID: spec.ID, Name: *spec.Name, Type: VMTypeVPCS}
	if spec.StartupScript != nil {
		// As GNS3 does: %h in a startup script is the node's name.
		script := strings.ReplaceAll(*spec.StartupScript, "%h", *spec.Name)
		vs.StartupScript = &script
	}
	if spec.Console != nil {
		vs.Console = *spec.Console
	}
	if _, err := m.CreateVM(ctx, pid, vs); err != nil {
		return NodeView{}, err
	}
	return m.VPCSNode(ctx, pid, spec.ID)
}

// VPCSNode returns a VPCS node as it is now.
func (m *Manager) VPCSNode(ctx context.Context, pid, id string) (NodeView, error) {
	n, err := m.lockVM(ctx, pid, id)
	if err != nil {
		return NodeView{}, err
	}
	defer unlock(n.lock)
	return n.nodeView(), nil
}

// VPCSNodes lists a project's VPCS nodes.
func (m *Manager) VPCSNodes(ctx context.Context, pid string) ([]NodeView, error) {
	vms, err := m.ListVMs(ctx, pid)
	if err != nil {
		return nil, err
	}
	out := []NodeView{}
	for _, v := range vms {
		nv, err := m.VPCSNode(ctx, pid, v.ID)
		if errors.Is(err, graph.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, nv)
	}
	return out, nil
}

// UpdateVPCSNode renames a node and moves its console: the controller
// sends name, console and console_type on every PUT. A console moves
// only while the node is stopped.
func (m *Manager) UpdateVPCSNode(ctx context.Context, pid, id string, spec NodeSpec) (NodeView, error) {
	if err := checkConsoleType(spec.ConsoleType); err != nil {
		return NodeView{}, err
	}
	if spec.Name != nil && strings.TrimSpace(*spec.Name) == "" {
		return NodeView{}, graph.Errorf(graph.ErrInvalid, "name is empty")
	}
	n, err := m.lockVM(ctx, pid, id)
	if err != nil {
		return NodeView{}, err
	}
	defer unlock(n.lock)
	if spec.Console != nil && *spec.Console != n.rec.Console {
		c := *spec.Console
		if n.vpcs != nil {
			return NodeView{}, graph.Errorf(graph.ErrConflict, "VPCS %q runs: stop it before moving its console", n.rec.Name)
		}
		if c < 1024 || c > 65535 {
			return NodeView{}, graph.Errorf(graph.ErrInvalid, "console %d: want a TCP port from 1024 to 65535", c)
		}
		if err := m.cfg.Ports.Reserve(pid, Port{TCP, c}); err != nil {
			return NodeView{}, graph.Errorf(graph.ErrConflict, "console: %w", err)
		}
		m.cfg.Ports.Free(Port{TCP, n.rec.Console})
		n.rec.Console = c
	}
	if spec.Name != nil {
		n.rec.Name = *spec.Name
	}
	if err := m.save(n); err != nil {
		return NodeView{}, err
	}
	m.cfg.Bus.Publish(monitor.Event{Action: monitor.ActionNodeUpdated, Data: n.nodeEvent()})
	return n.nodeView(), nil
}

// SuspendVPCSNode does nothing but check the node exists, as GNS3's
// VPCS does: a VPCS has no suspended state.
func (m *Manager) SuspendVPCSNode(ctx context.Context, pid, id string) error {
	_, err := m.GetVM(ctx, pid, id)
	return err
}
