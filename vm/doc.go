// Package vm runs leviathan's emulated VMs: VPCS processes (Debian's
// vpcs 0.5b2) on pseudo-terminals, their telnet consoles on 127.0.0.1,
// a driver that types commands into them, and the allocator of the UDP
// and console ports they use. It owns the vpcs processes it starts and
// nothing else: the REST API decides when they run, the data plane what
// their UDP ports connect to.
//
// Threading: Ports and VPCS are safe for concurrent use. A VPCS starts
// its process from a goroutine locked to its OS thread for the life of
// the process (Pdeathsig is tied to the thread that forked), so no vpcs
// outlives the daemon. Per VPCS, one goroutine reads the terminal and
// fans its output out; each console client has a reader and a writer
// goroutine and is dropped, never waited for, when it falls behind.
// Exec calls are serialized with each other, and console input waits
// while one runs.
package vm
