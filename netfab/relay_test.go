package netfab_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leviathan-net/leviathan/cen"
	"github.com/leviathan-net/leviathan/internal/ktest"
	"github.com/leviathan-net/leviathan/netfab"
)

// netnsFor makes throwaway namespaces prefix+name for each name, removed
// when the test ends, and returns their paths by name.
func netnsFor(t *testing.T, names ...string) map[string]string {
	t.Helper()
	ktest.NeedRoot(t)
	p := ktest.Prefix(t)
	paths := map[string]string{}
	var all []string
	for _, n := range names {
		paths[n] = netfab.NetnsPath(p + n)
		all = append(all, paths[n])
	}
	if err := netfab.CreateNetns(context.Background(), all, 1); err != nil {
		t.Fatal(err)
	}
	return paths
}

func nsName(path string) string { return filepath.Base(path) }

func TestTAP(t *testing.T) {
	ns := netnsFor(t, "fab")
	fab := ns["fab"]
	ktest.IP(t, "-n", nsName(fab), "link", "add", "lvbr0", "up", "type", "bridge")
	mac := net.HardwareAddr{0x02, 0x4c, 0x56, 0, 0, 1}
	tests := []struct {
		name    string
		spec    netfab.TAPSpec
		want    netfab.LinkInfo // Name "" means: whatever the kernel picked
		wantErr bool
	}{
		{"on a bridge", netfab.TAPSpec{Name: "tap0", Group: cen.GroupBase + 7, MAC: mac, Master: "lvbr0"},
			netfab.LinkInfo{Name: "tap0", Kind: "tuntap", Group: cen.GroupBase + 7, Master: "lvbr0", MAC: mac.String(), Up: true}, false},
		{"alone, named by the kernel", netfab.TAPSpec{Group: cen.GroupBase + 8},
			netfab.LinkInfo{Kind: "tuntap", Group: cen.GroupBase + 8, Up: true}, false},
		{"missing bridge", netfab.TAPSpec{Name: "tap1", Group: cen.GroupBase, Master: "nobr"}, netfab.LinkInfo{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tap, err := netfab.CreateTAP(fab, tt.spec)
			if tt.wantErr {
				if err == nil {
					tap.Close()
					t.Fatal("no error")
				}
				if _, ok := ktest.Links(t, fab)[tt.spec.Name]; ok {
					t.Errorf("failed creation left %q behind", tt.spec.Name)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := ktest.Links(t, fab)[tap.Name()]
			want := tt.want
			if want.Name == "" {
				want.Name = tap.Name()
				want.MAC = got.MAC
			}
			want.Index = tap.Index()
			if got != want {
				t.Errorf("link:\n got %+v\nwant %+v", got, want)
			}
			if err := tap.Close(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "tap gone after Close", func() bool {
				_, ok := ktest.Links(t, fab)[want.Name]
				return !ok
			})
		})
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting: %s", what)
		}
	}
}

// pingResult is what ping -q says.
type pingResult struct {
	received int
	min      time.Duration
	dups     bool
}

var (
	receivedRE = regexp.MustCompile(`(\d+) received`)
	rttRE      = regexp.MustCompile(`= ([\d.]+)/`)
)

// ping runs count pings from the namespace at from to addr, 0.2 s apart.
func ping(t *testing.T, from, addr string, count int) pingResult {
	t.Helper()
	out, _ := exec.Command("ip", "netns", "exec", nsName(from), "ping", "-n", "-q",
		"-c", strconv.Itoa(count), "-i", "0.2", "-W", "1", addr).CombinedOutput()
	var r pingResult
	m := receivedRE.FindSubmatch(out)
	if m == nil {
		t.Fatalf("ping: %s", out)
	}
	r.received, _ = strconv.Atoi(string(m[1]))
	if m := rttRE.FindSubmatch(out); m != nil {
		ms, _ := strconv.ParseFloat(string(m[1]), 64)
		r.min = time.Duration(ms * float64(time.Millisecond))
	}
	r.dups = bytes.Contains(out, []byte("duplicates"))
	return r
}

// member puts a veth from the namespace at member (eth0, addr) onto bridge
// br of the namespace at fab.
func member(t *testing.T, fab, br, port, mem, addr string) {
	ktest.IP(t, "-n", nsName(fab), "link", "add", port, "master", br, "up", "type", "veth",
		"peer", "name", "eth0", "netns", nsName(mem))
	ktest.IP(t, "-n", nsName(mem), "addr", "add", addr+"/24", "dev", "eth0")
	ktest.IP(t, "-n", nsName(mem), "link", "set", "eth0", "up")
}

func udp(t *testing.T) *netfab.UDPTunnel {
	t.Helper()
	u, err := netfab.ListenUDPTunnel("127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func setRemote(t *testing.T, u *netfab.UDPTunnel, to *netfab.UDPTunnel) {
	t.Helper()
	if err := u.SetRemote(to.LocalAddr().String()); err != nil {
		t.Fatal(err)
	}
}

// TestRelayEndToEnd joins two namespaces through two fabrics:
// A ─veth─ br1 ─ tap1 ⇄ relay1 ⇄ UDP ⇄ relay2 ⇄ tap2 ─ br2 ─veth─ B.
func TestRelayEndToEnd(t *testing.T) {
	ns := netnsFor(t, "fab1", "fab2", "a", "b")
	const addrB = "10.99.0.2"
	var relays []*netfab.Relay
	var udps []*netfab.UDPTunnel
	for i, side := range []struct{ fab, mem, addr string }{{ns["fab1"], ns["a"], "10.99.0.1"}, {ns["fab2"], ns["b"], addrB}} {
		ktest.IP(t, "-n", nsName(side.fab), "link", "add", "lvbr", "up", "type", "bridge")
		member(t, side.fab, "lvbr", "vport", side.mem, side.addr)
		tap, err := netfab.CreateTAP(side.fab, netfab.TAPSpec{Name: "lvtap", Group: cen.GroupBase, Master: "lvbr"})
		if err != nil {
			t.Fatal(err)
		}
		u := udp(t)
		udps = append(udps, u)
		r := netfab.NewRelay(tap, u) // A: the tap, B: the tunnel
		t.Cleanup(func() {
			if err := r.Close(); err != nil {
				t.Errorf("relay %d: %v", i, err)
			}
		})
		relays = append(relays, r)
	}
	setRemote(t, udps[0], udps[1])
	setRemote(t, udps[1], udps[0])
	r1, r2 := relays[0], relays[1]
	out := netfab.AToB // on r1: from A's bridge into the tunnel
	a := ns["a"]

	t.Run("ping", func(t *testing.T) {
		if r := ping(t, a, addrB, 3); r.received == 0 {
			t.Fatal("A does not reach B")
		}
		if s := r1.Stats(out); s.OutFrames == 0 || s.OutBytes == 0 {
			t.Errorf("r1 counted nothing out: %+v", s)
		}
	})

	t.Run("hot swap of the remote", func(t *testing.T) {
		cmd := exec.Command("ip", "netns", "exec", nsName(a), "ping", "-n", "-q", "-c", "30", "-i", "0.1", "-W", "1", addrB)
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(800 * time.Millisecond)
		u3 := udp(t)
		setRemote(t, u3, udps[0])
		old, err := r2.SetEndpoint(netfab.SideB, u3)
		if err != nil || old != udps[1] {
			t.Fatalf("SetEndpoint: %v, %v", old, err)
		}
		setRemote(t, udps[0], u3)
		old.Close()
		before := r1.Stats(out).OutFrames
		cmd.Wait()
		m := receivedRE.FindSubmatch(buf.Bytes())
		if m == nil {
			t.Fatalf("ping: %s", buf.Bytes())
		}
		if n, _ := strconv.Atoi(string(m[1])); n < 20 {
			t.Errorf("%d of 30 pings through the swap, want 20 or more: %s", n, buf.Bytes())
		}
		if s := r2.Stats(netfab.BToA); s.OutFrames == 0 || r1.Stats(out).OutFrames <= before {
			t.Errorf("no frames after the swap: r1 %+v r2 %+v", r1.Stats(out), s)
		}
		if r := ping(t, a, addrB, 2); r.received == 0 {
			t.Error("A does not reach B after the swap")
		}
	})

	filters := []struct {
		name  string
		f     netfab.Filters
		check func(t *testing.T, r pingResult, before, after netfab.RelayStats)
	}{
		{"packet_loss 100", netfab.Filters{PacketLoss: 100}, func(t *testing.T, r pingResult, b, a netfab.RelayStats) {
			if r.received != 0 || a.DroppedFilter-b.DroppedFilter < 5 {
				t.Errorf("%d received, %d dropped", r.received, a.DroppedFilter-b.DroppedFilter)
			}
		}},
		{"delay 100ms", netfab.Filters{Delay: 100 * time.Millisecond}, func(t *testing.T, r pingResult, _, _ netfab.RelayStats) {
			if r.received == 0 || r.min < 100*time.Millisecond {
				t.Errorf("%d received, min RTT %v, want 100ms or more", r.received, r.min)
			}
		}},
		{"delay 30ms jitter 10ms", netfab.Filters{Delay: 30 * time.Millisecond, Jitter: 10 * time.Millisecond}, func(t *testing.T, r pingResult, _, _ netfab.RelayStats) {
			if r.received == 0 || r.min < 20*time.Millisecond {
				t.Errorf("%d received, min RTT %v, want 20ms or more", r.received, r.min)
			}
		}},
		{"frequency_drop 2", netfab.Filters{FrequencyDrop: 2}, func(t *testing.T, r pingResult, b, a netfab.RelayStats) {
			if r.received == 0 || r.received == 5 || a.DroppedFilter-b.DroppedFilter < 2 {
				t.Errorf("%d of 5 received, %d dropped", r.received, a.DroppedFilter-b.DroppedFilter)
			}
		}},
		{"frequency_drop -1", netfab.Filters{FrequencyDrop: -1}, func(t *testing.T, r pingResult, b, a netfab.RelayStats) {
			if r.received != 0 {
				t.Errorf("%d received", r.received)
			}
		}},
		{"corrupt 100", netfab.Filters{Corrupt: 100}, func(t *testing.T, r pingResult, b, a netfab.RelayStats) {
			if a.Corrupted-b.Corrupted < 5 {
				t.Errorf("%d corrupted", a.Corrupted-b.Corrupted)
			}
		}},
		{"duplicate 100", netfab.Filters{Duplicate: 100}, func(t *testing.T, r pingResult, b, a netfab.RelayStats) {
			if !r.dups || a.Duplicated-b.Duplicated < 5 || a.OutFrames-b.OutFrames < 10 {
				t.Errorf("dups %v, %d duplicated, %d out", r.dups, a.Duplicated-b.Duplicated, a.OutFrames-b.OutFrames)
			}
		}},
	}
	for _, tt := range filters {
		t.Run(tt.name, func(t *testing.T) {
			if err := r1.SetFilters(out, tt.f); err != nil {
				t.Fatal(err)
			}
			before := r1.Stats(out)
			r := ping(t, a, addrB, 5)
			tt.check(t, r, before, r1.Stats(out))
			if err := r1.SetFilters(out, netfab.Filters{}); err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("suspend", func(t *testing.T) {
		r2.Suspend(true)
		if r := ping(t, a, addrB, 3); r.received != 0 {
			t.Errorf("%d pings through a suspended relay", r.received)
		}
		if s := r2.Stats(netfab.BToA); s.DroppedSuspended == 0 {
			t.Errorf("nothing counted suspended: %+v", s)
		}
		r2.Suspend(false)
		if r := ping(t, a, addrB, 3); r.received == 0 {
			t.Error("no pings after resuming")
		}
	})
}

// frameFor makes a test frame carrying seq.
func frameFor(seq int) []byte {
	f := make([]byte, 60)
	copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x88, 0xb5})
	f[14], f[15] = byte(seq>>8), byte(seq)
	return f
}

// udpPair is a sender and a receiver around a UDP-to-UDP relay on
// 127.0.0.1, which needs no namespace.
type udpPair struct {
	r        *netfab.Relay
	in, out  *netfab.UDPTunnel
	src, dst *net.UDPConn
}

func newUDPPair(t *testing.T) *udpPair {
	t.Helper()
	p := &udpPair{in: udp(t), out: udp(t)}
	var err error
	if p.src, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(p.in.LocalAddr())); err != nil {
		t.Fatal(err)
	}
	if p.dst, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		t.Fatal(err)
	}
	if err := p.out.SetRemote(p.dst.LocalAddr().String()); err != nil {
		t.Fatal(err)
	}
	p.r = netfab.NewRelay(p.in, p.out)
	t.Cleanup(func() {
		p.r.Close()
		p.src.Close()
		p.dst.Close()
	})
	return p
}

// recv waits up to d for a frame.
func (p *udpPair) recv(d time.Duration) ([]byte, error) {
	b := make([]byte, 2048)
	p.dst.SetReadDeadline(time.Now().Add(d))
	n, err := p.dst.Read(b)
	return b[:n], err
}

func TestDelayDoesNotThrottle(t *testing.T) {
	p := newUDPPair(t)
	// n fits the default socket buffers of 127.0.0.1.
	const delay, n = 50 * time.Millisecond, 200
	if err := p.r.SetFilters(netfab.AToB, netfab.Filters{Delay: delay}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range n {
		if _, err := p.src.Write(frameFor(i)); err != nil {
			t.Fatal(err)
		}
	}
	var first, last time.Duration
	got := 0
	for got < n {
		if _, err := p.recv(2 * time.Second); err != nil {
			break
		}
		if got == 0 {
			first = time.Since(start)
		}
		got++
		last = time.Since(start)
	}
	t.Logf("%d frames with a %v delay: first after %v, last after %v; %+v", got, delay, first, last, p.r.Stats(netfab.AToB))
	if got < n*9/10 {
		t.Fatalf("%d of %d frames arrived", got, n)
	}
	if first < delay {
		t.Errorf("first frame after %v, before the %v delay", first, delay)
	}
	// Throttled, they would take n×delay = 25 s.
	if last > 20*delay {
		t.Errorf("the burst took %v: the delay throttles", last)
	}
}

func TestRelayEndpoints(t *testing.T) {
	p := newUDPPair(t)
	send := func(t *testing.T, i int) {
		t.Helper()
		if _, err := p.src.Write(frameFor(i)); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("frames pass", func(t *testing.T) {
		send(t, 1)
		if f, err := p.recv(2 * time.Second); err != nil || !bytes.Equal(f, frameFor(1)) {
			t.Fatalf("got % x, %v", f, err)
		}
	})
	t.Run("short datagrams are no frames", func(t *testing.T) {
		before := p.r.Stats(netfab.AToB)
		p.src.Write([]byte("hi"))
		waitFor(t, "short datagram counted", func() bool { return p.r.Stats(netfab.AToB).DroppedError > before.DroppedError })
	})
	t.Run("removed and set again", func(t *testing.T) {
		old, err := p.r.SetEndpoint(netfab.SideB, nil)
		if err != nil || old != p.out {
			t.Fatalf("SetEndpoint: %v %v", old, err)
		}
		before := p.r.Stats(netfab.AToB)
		send(t, 2)
		waitFor(t, "drop counted", func() bool { return p.r.Stats(netfab.AToB).DroppedError > before.DroppedError })
		if _, err := p.r.SetEndpoint(netfab.SideB, old); err != nil {
			t.Fatal(err)
		}
		send(t, 3)
		if f, err := p.recv(2 * time.Second); err != nil || !bytes.Equal(f, frameFor(3)) {
			t.Fatalf("got % x, %v", f, err)
		}
	})
	t.Run("bad filters", func(t *testing.T) {
		for _, f := range []netfab.Filters{{PacketLoss: 101}, {FrequencyDrop: -2}, {Delay: -1}} {
			if err := p.r.SetFilters(netfab.AToB, f); err == nil {
				t.Errorf("%+v accepted", f)
			}
		}
	})
	t.Run("close", func(t *testing.T) {
		if err := p.r.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := p.r.SetEndpoint(netfab.SideA, nil); !errors.Is(err, netfab.ErrRelayClosed) {
			t.Errorf("SetEndpoint after Close: %v", err)
		}
		// Its sockets are closed: the port binds again.
		u, err := netfab.ListenUDPTunnel(p.in.LocalAddr().String(), "")
		if err != nil {
			t.Fatal(err)
		}
		u.Close()
	})
}

func TestFiltersFromGNS3(t *testing.T) {
	tests := []struct {
		in      map[string][]int
		want    netfab.Filters
		wantErr string
	}{
		{map[string][]int{"delay": {100, 10}, "packet_loss": {5}}, netfab.Filters{Delay: 100 * time.Millisecond, Jitter: 10 * time.Millisecond, PacketLoss: 5}, ""},
		{map[string][]int{"frequency_drop": {-1}, "corrupt": {3}, "duplicate": {2}}, netfab.Filters{FrequencyDrop: -1, Corrupt: 3, Duplicate: 2}, ""},
		{map[string][]int{"delay": {}}, netfab.Filters{}, ""},
		{map[string][]int{"bpf": {1}}, netfab.Filters{}, "not supported"},
		{map[string][]int{"packet_loss": {200}}, netfab.Filters{PacketLoss: 200}, "percent"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(keys(tt.in), ","), func(t *testing.T) {
			got, err := netfab.FiltersFromGNS3(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func keys(m map[string][]int) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
