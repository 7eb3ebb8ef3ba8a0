package vm

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
)

// Errors callers branch on.
var (
	// ErrExhausted: every port of a range is held or bound by someone else.
	ErrExhausted = errors.New("port range exhausted")
	// ErrHeld: the port is already held (by this owner or another).
	ErrHeld = errors.New("port already held")
)

// Proto says which kind of port a Port is.
type Proto uint8

// The two kinds of port the allocator hands out.
const (
	UDP Proto = iota + 1 // a UDP tunnel end (NIO) or a VPCS local port
	TCP                  // a console
)

func (p Proto) String() string {
	switch p {
	case UDP:
		return "udp"
	case TCP:
		return "tcp"
	}
	return "proto(" + strconv.Itoa(int(p)) + ")"
}

// Port is one held port.
type Port struct {
	Proto Proto
	Num   int
}

func (p Port) String() string { return p.Proto.String() + "/" + strconv.Itoa(p.Num) }

// Range is an inclusive range of port numbers.
type Range struct{ Lo, Hi int }

// Default ranges, as GNS3 has them and as leviathan's flags default.
var (
	DefaultUDPRange     = Range{20000, 30000}
	DefaultConsoleRange = Range{5000, 10000}
)

func (r Range) String() string { return strconv.Itoa(r.Lo) + "-" + strconv.Itoa(r.Hi) }

func (r Range) valid() bool { return r.Lo >= 1 && r.Lo <= r.Hi && r.Hi <= 65535 }

func (r Range) size() int { return r.Hi - r.Lo + 1 }

// ParseRange reads "LO-HI", as the --udp-ports and --console-ports flags
// give it.
func ParseRange(s string) (Range, error) {
	var r Range
	if _, err := fmt.Sscanf(s, "%d-%d", &r.Lo, &r.Hi); err != nil || !r.valid() ||
		s != r.String() {
		return Range{}, fmt.Errorf("port range %q: want LO-HI within 1-65535", s)
	}
	return r, nil
}

// RelayOffset is how far above its local port vpcs 0.5b2 binds a second
// UDP port (its relay, on all addresses): a VPCS with -s P holds P and
// P+RelayOffset. AllocVPCS holds both.
const RelayOffset = 9

// Ports hands out UDP ports and TCP console ports, each test-bound
// before it is handed out, and remembers which owner (a project ID)
// holds which, so that a project's ports go back in one call.
//
// A test bind proves the port free at that moment only: the holder
// should bind it soon. Ports is safe for concurrent use.
type Ports struct {
	udp, tcp Range

	mu      sync.Mutex
	held    map[Port]string // port → owner; guarded by mu
	nextUDP int             // where the next UDP search starts; guarded by mu
	nextTCP int             // where the next TCP search starts; guarded by mu
}

// NewPorts returns an allocator for UDP ports from udp and console
// ports from console.
func NewPorts(udp, console Range) (*Ports, error) {
	if !udp.valid() {
		return nil, fmt.Errorf("udp port range %s is not within 1-65535", udp)
	}
	if !console.valid() {
		return nil, fmt.Errorf("console port range %s is not within 1-65535", console)
	}
	return &Ports{
		udp: udp, tcp: console,
		held:    map[Port]string{},
		nextUDP: udp.Lo, nextTCP: console.Lo,
	}, nil
}

// AllocUDP holds a UDP port from the UDP range for owner. It is bound
// on 127.0.0.1 and, when host is valid, on host (the address the
// caller will bind) before it is handed out.
func (p *Ports) AllocUDP(owner string, host netip.Addr) (int, error) {
	return p.alloc(owner, UDP, host, nil)
}

// AllocVPCS holds a UDP port P for a VPCS's local port, and P+RelayOffset
// with it, which vpcs 0.5b2 binds for its relay.
func (p *Ports) AllocVPCS(owner string) (int, error) {
	return p.alloc(owner, UDP, netip.Addr{}, []int{RelayOffset})
}

// AllocConsole holds a TCP port from the console range for owner, bound
// on 127.0.0.1 before it is handed out.
func (p *Ports) AllocConsole(owner string) (int, error) {
	return p.alloc(owner, TCP, netip.Addr{}, nil)
}

// alloc searches the range of proto round-robin from where the last
// search ended (so a port just released is not handed out again at
// once) for a port that, with each of port+extra, is neither held nor
// bound by anyone, and holds them for owner.
func (p *Ports) alloc(owner string, proto Proto, host netip.Addr, extra []int) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, next := p.udp, &p.nextUDP
	if proto == TCP {
		r, next = p.tcp, &p.nextTCP
	}
	for range r.size() {
		n := *next
		if *next++; *next > r.Hi {
			*next = r.Lo
		}
		ports := []Port{{proto, n}}
		for _, off := range extra {
			ports = append(ports, Port{proto, n + off})
		}
		if p.free(ports, host) {
			for _, q := range ports {
				p.held[q] = owner
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("%w: no free %s port in %s", ErrExhausted, proto, r)
}

// free reports whether none of ports is held and each can be bound.
// p.mu is held.
func (p *Ports) free(ports []Port, host netip.Addr) bool {
	for _, q := range ports {
		if q.Num > 65535 {
			return false
		}
		if _, ok := p.held[q]; ok {
			return false
		}
	}
	for _, q := range ports {
		if !testBind(q, host) {
			return false
		}
	}
	return true
}

// Reserve holds a given port for owner, as a restart does for the ports
// a project had. The port may lie outside the ranges (they may have
// changed since); it is not test-bound, since its holder may be the one
// coming back. A port already held, by anyone, is an error wrapping
// ErrHeld.
func (p *Ports) Reserve(owner string, port Port) error {
	if port.Num < 1 || port.Num > 65535 || (port.Proto != UDP && port.Proto != TCP) {
		return fmt.Errorf("reserve %s: not a port", port)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if o, ok := p.held[port]; ok {
		return fmt.Errorf("reserve %s for %q: %w by %q", port, owner, ErrHeld, o)
	}
	p.held[port] = owner
	return nil
}

// Free lets go of one port, whoever holds it; it reports whether the
// port was held.
func (p *Ports) Free(port Port) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.held[port]
	delete(p.held, port)
	return ok
}

// Owner says who holds port, if anyone does.
func (p *Ports) Owner(port Port) (owner string, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	owner, ok = p.held[port]
	return owner, ok
}

// Release lets go of every port owner holds and returns them, sorted.
func (p *Ports) Release(owner string) []Port {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Port
	for q, o := range p.held {
		if o == owner {
			out = append(out, q)
			delete(p.held, q)
		}
	}
	sortPorts(out)
	return out
}

// Held returns the ports owner holds, sorted.
func (p *Ports) Held(owner string) []Port {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Port
	for q, o := range p.held {
		if o == owner {
			out = append(out, q)
		}
	}
	sortPorts(out)
	return out
}

func sortPorts(ps []Port) {
	slices.SortFunc(ps, func(a, b Port) int {
		if a.Proto != b.Proto {
			return int(a.Proto) - int(b.Proto)
		}
		return a.Num - b.Num
	})
}

var localhost = netip.AddrFrom4([4]byte{127, 0, 0, 1})

// testBind binds port on 127.0.0.1 and, when host is another valid
// address, on host too, and lets go at once.
func testBind(port Port, host netip.Addr) bool {
	addrs := []netip.Addr{localhost}
	if host.IsValid() && host != localhost {
		addrs = append(addrs, host)
	}
	for _, a := range addrs {
		ap := net.JoinHostPort(a.String(), strconv.Itoa(port.Num))
		switch port.Proto {
		case UDP:
			c, err := net.ListenPacket("udp", ap)
			if err != nil {
				return false
			}
			c.Close()
		case TCP:
			l, err := net.Listen("tcp", ap)
			if err != nil {
				return false
			}
			l.Close()
		}
	}
	return true
}
