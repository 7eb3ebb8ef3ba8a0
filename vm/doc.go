// Package vm runs leviathan's emulated VMs: VPCS processes (Debian's
// vpcs 0.5b2) on pseudo-terminals, their telnet consoles on 127.0.0.1,
// a driver that types commands into them, the allocator of the UDP
// and console ports they use, and the Manager of GNS3-style projects and
// VMs. It owns the vpcs processes it starts and nothing else.
//
// A Manager keeps projects and VMs in the graph store. Each VM's vpcs
// sends to a UDP tunnel of leviathan's on 127.0.0.1, and a netfab relay
// joins that tunnel to the VM's NIO (a GNS3 nio_udp), so NIOs change
// while the VM runs. A VM record is a graph.Member under its ID, ready to
// join CENs. The GNS3 2.2 compute API's nodes are the same VMs, and
// its Ethernet switches and hubs are CENs (switch.go) whose ports with a
// NIO are members of SwitchRuntime, each a relay between the NIO and a
// TAP on the CEN's bridge.
//
// Threading: Ports, VPCS and Manager are safe for concurrent use. A
// switch has a lock per switch, held for a whole request and across
// calls into core; a switch port's TAP is guarded by a mutex of its own,
// so core may attach it meanwhile. The
// Manager serializes requests on one VM with a lock per VM, held for the
// whole request, and changes to a project's membership with a lock per
// project (taken before a VM's); requests on different VMs run
// concurrently. A VPCS starts its process from a goroutine locked to its
// OS thread for the life of the process (Pdeathsig is tied to the thread
// that forked), so no vpcs outlives the daemon. Per VPCS, one goroutine reads the terminal and
// fans its output out; each console client has a reader and a writer
// goroutine and is dropped, never waited for, when it falls behind.
// Exec calls are serialized with each other, and console input waits
// while one runs.
package vm
