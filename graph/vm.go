package graph

import "fmt"

// Project is a GNS3-style project: a set of emulated VMs and the UDP
// ports handed out for their links.
type Project struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Temporary bool   `json:"temporary"`
	// UDPPorts were handed out to the project (POST .../ports/udp) and
	// are held for it until the project goes, or a NIO that used one
	// goes.
	UDPPorts []int `json:"udp_ports,omitempty"`
}

// VM states, as GNS3 names them.
const (
	VMStarted = "started"
	VMStopped = "stopped"
)

// VM is an emulated VM (a VPCS) of a project. Its ID is unique across
// projects: as a CEN member it is Member{Host, ID}, like a container.
type VM struct {
	ID      string `json:"id"`
	Project string `json:"project"`
	Host    string `json:"host"` // the host that runs it
	Name    string `json:"name"`
	Type    string `json:"type"` // "vpcs"
	// Console is the TCP port on 127.0.0.1 leviathan serves its console on.
	Console int `json:"console"`
	// LocalPort is the UDP port vpcs binds (and LocalPort+9, its relay);
	// RelayPort is leviathan's end of the VM's tunnel on 127.0.0.1, where
	// vpcs sends its frames. Both are held as long as the VM exists.
	LocalPort int `json:"local_port"`
	RelayPort int `json:"relay_port"`
	MAC       int `json:"mac"` // last byte of 00:50:79:66:68:xx
	// Status is what the user asked for last: VMStarted or VMStopped. A
	// restart starts again the VMs that are VMStarted.
	Status string `json:"status"`
	NIOs   []NIO  `json:"nios,omitempty"`
	// PID and Argv name the vpcs last started for the VM, so that a
	// later run can end it if it outlived its daemon.
	PID   int      `json:"pid,omitempty"`
	Argv  []string `json:"argv,omitempty"`
	Error string   `json:"error,omitempty"`
	// Address and Gateway are what a made CIN gives the VM as a CEN
	// member ("" for none): set through its console whenever vpcs
	// (re)starts.
	Address string `json:"address,omitempty"`
	Gateway string `json:"gateway,omitempty"`
}

// Member is the VM as a CEN member.
func (v *VM) Member() Member { return Member{Host: v.Host, Container: v.ID} }

// NIO is what one port of a VM's adapter is connected to: a UDP tunnel
// (GNS3's nio_udp).
type NIO struct {
	Adapter int              `json:"adapter"`
	Port    int              `json:"port"`
	Type    string           `json:"type"` // "nio_udp"
	LPort   int              `json:"lport"`
	RHost   string           `json:"rhost"`
	RPort   int              `json:"rport"`
	Filters map[string][]int `json:"filters,omitempty"` // as GNS3 gives them
	Suspend bool             `json:"suspend,omitempty"`
}

// Bucket names of the GNS3-style objects.
const (
	bucketProjects = "projects"
	bucketVMs      = "vms"
)

// GetProject reads one project; ErrNotFound if there is none.
func GetProject(tx Tx, id string) (*Project, error) {
	var p Project
	if err := get(tx, bucketProjects, id, &p); err != nil {
		return nil, fmt.Errorf("project %q: %w", id, err)
	}
	return &p, nil
}

// PutProject writes a project.
func PutProject(tx Tx, p *Project) error { return put(tx, bucketProjects, p.ID, p) }

// DeleteProject removes a project record (not its VMs).
func DeleteProject(tx Tx, id string) error { return tx.Delete(bucketProjects, id) }

// ListProjects returns every project, ordered by ID.
func ListProjects(tx Tx) ([]*Project, error) { return list[Project](tx, bucketProjects) }

// GetVM reads one VM; ErrNotFound if there is none.
func GetVM(tx Tx, id string) (*VM, error) {
	var v VM
	if err := get(tx, bucketVMs, id, &v); err != nil {
		return nil, fmt.Errorf("VM %q: %w", id, err)
	}
	return &v, nil
}

// PutVM writes a VM.
func PutVM(tx Tx, v *VM) error { return put(tx, bucketVMs, v.ID, v) }

// DeleteVM removes a VM.
func DeleteVM(tx Tx, id string) error { return tx.Delete(bucketVMs, id) }

// ListVMs returns every VM of every project, ordered by ID.
func ListVMs(tx Tx) ([]*VM, error) { return list[VM](tx, bucketVMs) }
