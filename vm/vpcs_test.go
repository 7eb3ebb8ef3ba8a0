package vm

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startVPCS runs a real vpcs with the given UDP ports, stopped in
// t.Cleanup. Tests skip when vpcs is not installed (scripts/deps.sh
// installs it).
func startVPCS(t *testing.T, lport, rport int, onExit func(Exit)) *VPCS {
	t.Helper()
	if _, err := exec.LookPath("vpcs"); err != nil {
		t.Skip("vpcs not installed (scripts/deps.sh installs it)")
	}
	v, err := New(Config{Dir: t.TempDir(), LocalPort: lport, RemotePort: rport, MAC: uint8(lport), OnExit: onExit})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := v.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := v.Stop(); err != nil {
			t.Error(err)
		}
	})
	return v
}

// vpcsPorts allocates a VPCS local port and a remote port for a test.
func vpcsPorts(t *testing.T, p *Ports) (int, int) {
	t.Helper()
	l, err := p.AllocVPCS("test")
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.AllocUDP("test", netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	return l, r
}

func testPorts(t *testing.T) *Ports {
	p, err := NewPorts(freeRange(t, 40), Range{5000, 10000})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// telnetClient is a console client over real TCP.
type telnetClient struct {
	t   *testing.T
	c   net.Conn
	buf bytes.Buffer
}

func dial(t *testing.T, addr string) *telnetClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &telnetClient{t: t, c: c}
}

// waitFor reads until the output seen so far contains want.
func (tc *telnetClient) waitFor(want string) string {
	tc.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	b := make([]byte, 4096)
	for !strings.Contains(clean(tc.buf.Bytes()), want) {
		tc.c.SetReadDeadline(deadline)
		n, err := tc.c.Read(b)
		tc.buf.Write(b[:n])
		if err != nil {
			tc.t.Fatalf("waiting for %q: %v; got %q", want, err, clean(tc.buf.Bytes()))
		}
	}
	return tc.buf.String()
}

func (tc *telnetClient) send(b []byte) {
	tc.t.Helper()
	if _, err := tc.c.Write(b); err != nil {
		tc.t.Fatal(err)
	}
}

func TestConsole(t *testing.T) {
	p := testPorts(t)
	lport, rport := vpcsPorts(t, p)
	v := startVPCS(t, lport, rport, nil)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- v.ServeConsole(ln) }()

	a, b := dial(t, ln.Addr().String()), dial(t, ln.Addr().String())
	t.Run("telnet negotiation and prompt on join", func(t *testing.T) {
		for _, c := range []*telnetClient{a, b} {
			raw := c.waitFor("VPCS> ")
			if !strings.HasPrefix(raw, string(telnetHello)) {
				t.Errorf("first bytes %q; want the telnet offer %q", raw[:min(len(raw), 12)], telnetHello)
			}
		}
	})
	t.Run("input with IAC reaches vpcs clean, both clients see the output", func(t *testing.T) {
		// IAC DO TTYPE, IAC WILL NAWS, a subnegotiation and an escaped
		// IAC in a comment, split around the command; Enter as CR LF.
		in := []byte("ec\xff\xfd\x18ho \xff\xfb\x1f\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0one-two\r\n")
		a.send(in[:5])
		a.send(in[5:])
		for _, c := range []*telnetClient{a, b} {
			c.waitFor("echo one-two\none-two\n")
		}
		if !strings.Contains(a.buf.String(), "\xff\xfc\x18") {
			t.Errorf("DO TTYPE not refused with WONT TTYPE: %q", a.buf.String())
		}
		if !strings.Contains(a.buf.String(), "\xff\xfe\x1f") {
			t.Errorf("WILL NAWS not refused with DONT NAWS: %q", a.buf.String())
		}
	})
	t.Run("a host command is refused", func(t *testing.T) {
		marker := filepath.Join(t.TempDir(), "ran")
		a.send([]byte("! touch " + marker + "\r"))
		b.waitFor("host commands (!) are not served")
		a.send([]byte("  lo x\r"))
		b.waitFor(`"lo" (load) is not served`)
		if _, err := v.Exec(context.Background(), "echo after"); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the host command ran: %v", err)
		}
	})
	t.Run("SetIP then ShowIP", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		pfx := netip.MustParsePrefix("10.0.0.1/24")
		gw := netip.MustParseAddr("10.0.0.254")
		if err := v.SetIP(ctx, pfx, gw); err != nil {
			t.Fatal(err)
		}
		info, err := v.ShowIP(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Prefix != pfx || info.Gateway != gw || info.LPort != lport ||
			info.Remote != netip.AddrPortFrom(localhost, uint16(rport)) || info.MTU != 1500 {
			t.Errorf("ShowIP = %+v; want %s via %s, ports %d → %d", info, pfx, gw, lport, rport)
		}
		// The console clients saw leviathan's commands too.
		a.waitFor("PC1 : 10.0.0.1 255.255.255.0 gateway 10.0.0.254")
	})
	t.Run("console ends with vpcs", func(t *testing.T) {
		if err := v.Stop(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-served:
			if err != nil {
				t.Fatalf("ServeConsole: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("ServeConsole still serving after Stop")
		}
		a.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := a.c.Read(make([]byte, 4096)); err == nil {
			for {
				if _, err = a.c.Read(make([]byte, 4096)); err != nil {
					break
				}
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("client not hung up")
			}
		}
	})
}

func TestPingEachOther(t *testing.T) {
	p := testPorts(t)
	pa, err := p.AllocVPCS("test")
	if err != nil {
		t.Fatal(err)
	}
	pb, err := p.AllocVPCS("test")
	if err != nil {
		t.Fatal(err)
	}
	a := startVPCS(t, pa, pb, nil)
	b := startVPCS(t, pb, pa, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.SetIP(ctx, netip.MustParsePrefix("192.168.1.1/24"), netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	if err := b.SetIP(ctx, netip.MustParsePrefix("192.168.1.2/24"), netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		from  *VPCS
		to    string
		count int
		want  int
	}{
		{"a to b", a, "192.168.1.2", 3, 3},
		{"b to a", b, "192.168.1.1", 2, 2},
		{"a to nobody", a, "192.168.1.9", 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.from.Ping(ctx, netip.MustParseAddr(tc.to), tc.count)
			if err != nil || got != tc.want {
				t.Fatalf("Ping = %d, %v; want %d replies", got, err, tc.want)
			}
		})
	}
}

func TestExitAndStop(t *testing.T) {
	p := testPorts(t)
	t.Run("SIGKILL fires the exit notification", func(t *testing.T) {
		exits := make(chan Exit, 1)
		lport, rport := vpcsPorts(t, p)
		v := startVPCS(t, lport, rport, func(e Exit) { exits <- e })
		pid := v.PID()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		select {
		case e := <-exits:
			if e.PID != pid || e.Signal != syscall.SIGKILL || e.Code != -1 || e.Stopped {
				t.Errorf("exit = %+v; want pid %d killed by SIGKILL, not stopped", e, pid)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no exit notification")
		}
		if _, err := v.Exec(context.Background(), "show ip"); !errors.Is(err, ErrNotRunning) {
			t.Errorf("Exec after exit: %v; want ErrNotRunning", err)
		}
	})
	t.Run("Stop leaves no process", func(t *testing.T) {
		exits := make(chan Exit, 1)
		lport, rport := vpcsPorts(t, p)
		v := startVPCS(t, lport, rport, func(e Exit) { exits <- e })
		pid := v.PID()
		// A running command does not keep it alive.
		go v.Exec(context.Background(), "ping 192.168.7.7 -c 100")
		time.Sleep(200 * time.Millisecond)
		if err := v.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Fatalf("pid %d after Stop: kill 0 = %v; want ESRCH", pid, err)
		}
		e := <-exits
		if !e.Stopped {
			t.Errorf("exit = %+v; want Stopped", e)
		}
		if err := v.Stop(); err != nil {
			t.Errorf("second Stop: %v", err)
		}
	})
	t.Run("a startup.vpc with a host command is refused", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "startup.vpc"), []byte("ip 10.0.0.1/24\n!id\n"), 0o644)
		lport, rport := vpcsPorts(t, p)
		v, err := New(Config{Dir: dir, LocalPort: lport, RemotePort: rport})
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "line 2") {
			v.Stop()
			t.Fatalf("Start: %v; want startup.vpc line 2 refused", err)
		}
	})
}
