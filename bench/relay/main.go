// Command relay measures leviathan's frame relay between a UDP tunnel and
// a TAP device, next to socat relaying the same UDP↔TAP, and prints a
// table: frames per second delivered and CPU time of the relay process
// per frame (its getrusage at exit), for each direction and frame size.
//
//	go run ./bench/relay [-duration 2s] [-sizes 64,1400]
//
// It runs as root. Everything happens in one throwaway network namespace
// (lvb-relay-*), which the command enters by running itself again under
// nsenter and removes on the way out: the UDP side is a socket on that
// namespace's 127.0.0.1, the TAP side an AF_PACKET socket bound to the
// TAP. Each relay runs as a child process (leviathan's is this command in
// -child mode), so its CPU time is its own.
//
// It measures; it does not assert.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/leviathan-net/leviathan/netfab"
)

const (
	relayPort = 41000 // the relay's UDP port
	peerPort  = 41001 // where the relay sends
	tapName   = "lvbtap0"
	etherType = 0x88b5 // local experimental: nothing else in the namespace speaks it
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench/relay:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	duration := fs.Duration("duration", 2*time.Second, "measuring time per case")
	sizes := fs.String("sizes", "64,1400", "frame sizes in bytes")
	child := fs.Bool("child", false, "internal: be leviathan's relay")
	inside := fs.Bool("inside", false, "internal: already in the bench namespace")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case *child:
		return runChild(ctx)
	case *inside:
		return measure(ctx, *duration, *sizes)
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root: it creates a network namespace and TAP devices")
	}
	b := make([]byte, 4)
	rand.Read(b)
	ns := netfab.NetnsPath("lvb-relay-" + hex.EncodeToString(b))
	if err := netfab.CreateNetns(ctx, []string{ns}, 1); err != nil {
		return err
	}
	defer netfab.DeleteNetns(ns)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + ns, self, "-inside"}, args...)...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}

// runChild is leviathan's relay process: a TAP in this namespace relayed
// to a UDP tunnel, until SIGTERM. It prints its heap allocations at exit.
func runChild(ctx context.Context) error {
	tap, err := netfab.CreateTAP("/proc/self/ns/net", netfab.TAPSpec{Name: tapName})
	if err != nil {
		return err
	}
	u, err := netfab.ListenUDPTunnel(fmt.Sprintf("127.0.0.1:%d", relayPort), fmt.Sprintf("127.0.0.1:%d", peerPort))
	if err != nil {
		tap.Close()
		return err
	}
	r := netfab.NewRelay(tap, u)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.Mallocs
	fmt.Println("ready")
	<-ctx.Done()
	runtime.ReadMemStats(&ms)
	fmt.Printf("mallocs %d\n", ms.Mallocs-before)
	return r.Close()
}

type result struct {
	dir, system string
	size        int
	sent, got   uint64
	secs        float64
	cpu         time.Duration
	mallocs     int64 // -1: unknown
}

func measure(ctx context.Context, d time.Duration, sizeList string) error {
	// No IPv6 chatter (router solicitations, MLD) on the TAP.
	for _, k := range []string{"all", "default"} {
		os.WriteFile("/proc/sys/net/ipv6/conf/"+k+"/disable_ipv6", []byte("1"), 0o644)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	systems := []struct {
		name string
		argv []string
	}{
		{"leviathan", []string{self, "-child"}},
		{"socat", []string{"socat", fmt.Sprintf("UDP-DATAGRAM:127.0.0.1:%d,bind=127.0.0.1:%d", peerPort, relayPort),
			"TUN,tun-type=tap,tun-name=" + tapName + ",iff-no-pi,iff-up"}},
	}
	if _, err := exec.LookPath("socat"); err != nil {
		fmt.Println("socat is not installed (apt-get install -y socat): measuring leviathan alone")
		systems = systems[:1]
	}
	var results []result
	for _, s := range strings.Split(sizeList, ",") {
		size, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || size < 60 || size > 1514 {
			return fmt.Errorf("frame size %q: want 60 to 1514", s)
		}
		for _, dir := range []string{"udp->tap", "tap->udp"} {
			for _, sys := range systems {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				r, err := measureOne(ctx, sys.argv, dir, size, d)
				if err != nil {
					return fmt.Errorf("%s %s %d: %w", sys.name, dir, size, err)
				}
				r.system = sys.name
				results = append(results, r)
			}
		}
	}
	report(results)
	return nil
}

// measureOne starts a relay, blasts frames into one side for d and
// counts what comes out of the other.
func measureOne(ctx context.Context, argv []string, dir string, size int, d time.Duration) (result, error) {
	res := result{dir: dir, size: size, mallocs: -1}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return res, err
	}
	if err := cmd.Start(); err != nil {
		return res, err
	}
	lines := bufio.NewScanner(stdout)
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	ifindex, err := waitTAP(ctx)
	if err != nil {
		return res, err
	}
	// The UDP side.
	udp, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return res, err
	}
	defer unix.Close(udp)
	lo := [4]byte{127, 0, 0, 1}
	if err := unix.Bind(udp, &unix.SockaddrInet4{Port: peerPort, Addr: lo}); err != nil {
		return res, fmt.Errorf("bind udp: %w", err)
	}
	if err := unix.Connect(udp, &unix.SockaddrInet4{Port: relayPort, Addr: lo}); err != nil {
		return res, err
	}
	// The TAP side.
	pkt, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(etherType)))
	if err != nil {
		return res, err
	}
	defer unix.Close(pkt)
	if err := unix.Bind(pkt, &unix.SockaddrLinklayer{Protocol: htons(etherType), Ifindex: ifindex}); err != nil {
		return res, fmt.Errorf("bind packet socket: %w", err)
	}
	for _, fd := range []int{udp, pkt} {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20)
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100_000})
	}
	from, to := udp, pkt
	if dir == "tap->udp" {
		from, to = pkt, udp
	}

	frame := make([]byte, size)
	copy(frame, []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, etherType >> 8, etherType & 0xff})
	var (
		stop     atomic.Bool
		counting atomic.Bool
		sent     atomic.Uint64
		got      atomic.Uint64
		wg       sync.WaitGroup
	)
	wg.Add(2)
	go func() { // receiver
		defer wg.Done()
		m := newMmsg(64, 2048)
		for !stop.Load() {
			n := m.recv(to)
			if counting.Load() {
				got.Add(uint64(n))
			}
		}
	}()
	go func() { // sender
		defer wg.Done()
		m := newMmsg(64, 0)
		for i := range m.iov {
			m.iov[i].Base = &frame[0]
			m.iov[i].SetLen(len(frame))
		}
		for !stop.Load() {
			n := m.send(from)
			if counting.Load() {
				sent.Add(uint64(n))
			}
		}
	}()
	time.Sleep(300 * time.Millisecond) // warm up
	counting.Store(true)
	start := time.Now()
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
	counting.Store(false)
	res.secs = time.Since(start).Seconds()
	stop.Store(true)
	wg.Wait()
	res.sent, res.got = sent.Load(), got.Load()

	cmd.Process.Signal(syscall.SIGTERM)
	for lines.Scan() {
		if v, ok := strings.CutPrefix(lines.Text(), "mallocs "); ok {
			res.mallocs, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	cmd.Wait()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return res, ctx.Err()
}

// waitTAP waits for the relay's TAP to be up and returns its ifindex.
func waitTAP(ctx context.Context) (int, error) {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(s)
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end) && ctx.Err() == nil; time.Sleep(20 * time.Millisecond) {
		ifr, _ := unix.NewIfreq(tapName)
		if unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr) != nil || ifr.Uint16()&unix.IFF_UP == 0 {
			continue
		}
		if unix.IoctlIfreq(s, unix.SIOCGIFINDEX, ifr) == nil {
			time.Sleep(100 * time.Millisecond) // let the relay reach its read loop
			return int(ifr.Uint32()), nil
		}
	}
	return 0, fmt.Errorf("no TAP %s up", tapName)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// mmsg is a batch for recvmmsg/sendmmsg on a blocking socket.
type mmsg struct {
	hs  []unix.Mmsghdr
	iov []unix.Iovec
}

func newMmsg(n, bufSize int) *mmsg {
	m := &mmsg{hs: make([]unix.Mmsghdr, n), iov: make([]unix.Iovec, n)}
	for i := range m.hs {
		if bufSize > 0 {
			buf := make([]byte, bufSize)
			m.iov[i].Base = &buf[0]
			m.iov[i].SetLen(bufSize)
		}
		m.hs[i].Hdr.Iov = &m.iov[i]
		m.hs[i].Hdr.SetIovlen(1)
	}
	return m
}

func (m *mmsg) recv(fd int) int {
	n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&m.hs[0])), uintptr(len(m.hs)), 0, 0, 0)
	if e != 0 {
		return 0
	}
	return int(n)
}

func (m *mmsg) send(fd int) int {
	n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&m.hs[0])), uintptr(len(m.hs)), 0, 0, 0)
	if e != 0 {
		return 0
	}
	return int(n)
}

func report(rs []result) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "direction\tbytes\trelay\tsent/s\tframes/s\tCPU ns/frame\tallocs/frame\tvs socat\t")
	for i, r := range rs {
		fps := float64(r.got) / r.secs
		cpu, allocs, vs := "-", "-", ""
		if r.got > 0 {
			cpu = fmt.Sprintf("%.0f", float64(r.cpu.Nanoseconds())/float64(r.got))
			if r.mallocs >= 0 {
				allocs = fmt.Sprintf("%.3f", float64(r.mallocs)/float64(r.got))
			}
		}
		if r.system == "leviathan" && i+1 < len(rs) && rs[i+1].got > 0 {
			s := rs[i+1]
			vs = fmt.Sprintf("%.1fx", fps/(float64(s.got)/s.secs))
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%.0f\t%.0f\t%s\t%s\t%s\t\n", r.dir, r.size, r.system, float64(r.sent)/r.secs, fps, cpu, allocs, vs)
	}
	w.Flush()
	fmt.Println("\nframes/s: delivered out of the far side; CPU: the relay process's user+system time (getrusage at exit) over the frames it delivered.")
	fmt.Println("The target is leviathan at 2x socat or better.")
}
