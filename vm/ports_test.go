package vm

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// freeRange finds n consecutive ports, none of which anyone has bound
// (UDP or TCP) right now, so tests do not trip over other processes.
func freeRange(t *testing.T, n int) Range {
	t.Helper()
	for range 100 {
		lo := 40000 + rand.IntN(20000)
		ok := true
		for i := range n {
			if !testBind(Port{UDP, lo + i}, netip.Addr{}) || !testBind(Port{TCP, lo + i}, netip.Addr{}) {
				ok = false
				break
			}
		}
		if ok {
			return Range{lo, lo + n - 1}
		}
	}
	t.Fatalf("no %d free consecutive ports found", n)
	return Range{}
}

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Range
		ok   bool
	}{
		{"20000-30000", Range{20000, 30000}, true},
		{"5000-5000", Range{5000, 5000}, true},
		{"30000-20000", Range{}, false},
		{"0-10", Range{}, false},
		{"1-65536", Range{}, false},
		{"100", Range{}, false},
		{"100-200x", Range{}, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseRange(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("ParseRange(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
			}
		})
	}
}

func TestPortsAlloc(t *testing.T) {
	for _, proto := range []Proto{UDP, TCP} {
		alloc := func(p *Ports, owner string) (int, error) {
			if proto == UDP {
				return p.AllocUDP(owner, netip.Addr{})
			}
			return p.AllocConsole(owner)
		}
		newPorts := func(r Range) *Ports {
			p, err := NewPorts(r, r)
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
		t.Run(proto.String()+"/exhaustion", func(t *testing.T) {
			r := freeRange(t, 3)
			p := newPorts(r)
			var got []int
			for range 3 {
				n, err := alloc(p, "p1")
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, n)
			}
			if diff := cmp.Diff([]int{r.Lo, r.Lo + 1, r.Lo + 2}, got); diff != "" {
				t.Errorf("allocated (-want +got):\n%s", diff)
			}
			_, err := alloc(p, "p1")
			if !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), r.String()) {
				t.Fatalf("fourth alloc: %v; want ErrExhausted naming %s", err, r)
			}
			// A released port comes back.
			if !p.Free(Port{proto, r.Lo + 1}) {
				t.Fatal("Free: port was not held")
			}
			if n, err := alloc(p, "p2"); err != nil || n != r.Lo+1 {
				t.Fatalf("alloc after Free = %d, %v; want %d", n, err, r.Lo+1)
			}
		})
		t.Run(proto.String()+"/bound-by-someone-else", func(t *testing.T) {
			r := freeRange(t, 2)
			addr := fmt.Sprintf("127.0.0.1:%d", r.Lo)
			if proto == UDP {
				c, err := net.ListenPacket("udp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
			} else {
				l, err := net.Listen("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
			}
			p := newPorts(r)
			if n, err := alloc(p, "p1"); err != nil || n != r.Lo+1 {
				t.Fatalf("alloc = %d, %v; want %d (skipping the bound %d)", n, err, r.Lo+1, r.Lo)
			}
			if _, err := alloc(p, "p1"); !errors.Is(err, ErrExhausted) {
				t.Fatalf("second alloc: %v; want ErrExhausted", err)
			}
		})
	}
}

func TestPortsOwners(t *testing.T) {
	r := freeRange(t, 20)
	p, err := NewPorts(r, r)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		do   func() error
	}{
		{"reserve a udp port", func() error { return p.Reserve("a", Port{UDP, r.Lo}) }},
		{"reserve the same number as tcp", func() error { return p.Reserve("a", Port{TCP, r.Lo}) }},
		{"reserve out of range", func() error { return p.Reserve("b", Port{UDP, r.Hi + 1}) }},
		{"alloc skips reserved", func() error {
			if n, err := p.AllocUDP("b", netip.Addr{}); err != nil || n != r.Lo+1 {
				return fmt.Errorf("AllocUDP = %d, %v; want %d", n, err, r.Lo+1)
			}
			return nil
		}},
		{"alloc vpcs holds the relay port", func() error {
			if n, err := p.AllocVPCS("a"); err != nil || n != r.Lo+2 {
				return fmt.Errorf("AllocVPCS = %d, %v; want %d", n, err, r.Lo+2)
			}
			return nil
		}},
		{"reserve held by another owner", func() error {
			if err := p.Reserve("b", Port{UDP, r.Lo}); !errors.Is(err, ErrHeld) {
				return fmt.Errorf("Reserve: %v; want ErrHeld", err)
			}
			return nil
		}},
		{"reserve held by the same owner", func() error {
			if err := p.Reserve("a", Port{UDP, r.Lo + 2 + RelayOffset}); !errors.Is(err, ErrHeld) {
				return fmt.Errorf("Reserve: %v; want ErrHeld", err)
			}
			return nil
		}},
		{"reserve a non-port", func() error {
			if err := p.Reserve("a", Port{UDP, 0}); err == nil {
				return errors.New("Reserve port 0: no error")
			}
			return nil
		}},
		{"release a", func() error {
			want := []Port{{UDP, r.Lo}, {UDP, r.Lo + 2}, {UDP, r.Lo + 2 + RelayOffset}, {TCP, r.Lo}}
			if diff := cmp.Diff(want, p.Release("a")); diff != "" {
				return fmt.Errorf("Release (-want +got):\n%s", diff)
			}
			if got := p.Held("a"); len(got) != 0 {
				return fmt.Errorf("a still holds %v", got)
			}
			return nil
		}},
		{"b keeps its ports", func() error {
			want := []Port{{UDP, r.Lo + 1}, {UDP, r.Hi + 1}}
			if diff := cmp.Diff(want, p.Held("b")); diff != "" {
				return fmt.Errorf("Held (-want +got):\n%s", diff)
			}
			return nil
		}},
		{"a released port can be reserved", func() error { return p.Reserve("b", Port{UDP, r.Lo}) }},
	}
	for _, s := range steps {
		if !t.Run(s.name, func(t *testing.T) {
			if err := s.do(); err != nil {
				t.Fatal(err)
			}
		}) {
			return
		}
	}
}

func TestPortsConcurrent(t *testing.T) {
	r := freeRange(t, 40)
	p, err := NewPorts(r, r)
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seen = map[int]bool{}
	)
	for i := range 8 {
		wg.Go(func() {
			for range 5 {
				n, err := p.AllocUDP(fmt.Sprint("owner", i), netip.Addr{})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[n] {
					t.Errorf("port %d handed out twice", n)
				}
				seen[n] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != 40 {
		t.Errorf("handed out %d ports; want 40", len(seen))
	}
}
