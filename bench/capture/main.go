// Command capture measures leviathan's live capture (netfab.Capture, what
// GET /host/{h}/{c}/{cen}/pcap streams) beside tcpdump capturing the same
// link in the same run, and what either costs the link, and prints a
// table: frames per second sent into a member's link, delivered to the
// far member, captured, and dropped by each capture, for 64- and
// 1400-byte frames.
//
//	go run ./bench/capture [-duration 2s] [-sizes 64,1400] [-runs 3]
//
// It runs as root, in throwaway namespaces of its own (lvb-cap-*): a
// fabric namespace with a bridge CEN of three members, made by netfab as
// leviathan makes one. A sender (this command again, in -send mode,
// inside member a's namespace) writes raw frames to b's MAC through an
// AF_PACKET socket as fast as it can; both captures watch a's port on
// the bridge in the fabric. leviathan's capture writes its pcap stream to
// a discarding writer; tcpdump writes to /dev/null (-w /dev/null, with
// a 4 MiB ring, -B 4096). Delivered frames are b's received packets
// counter. The cases run in turn, -runs rounds of them, and the
// table shows each figure's median over the rounds: the machine's other
// load comes and goes, and it then weighs on every case alike. It
// measures; it does not assert.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/leviathan-net/leviathan/cen"
	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/netfab"
)

const (
	cenName   = "bcap"
	etherType = 0x88b5 // local experimental: nobody else speaks it
	sendBatch = 64
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench/capture:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("capture", flag.ContinueOnError)
	duration := fs.Duration("duration", 2*time.Second, "sending time per case")
	sizes := fs.String("sizes", "64,1400", "frame sizes in bytes")
	runs := fs.Int("runs", 3, "rounds of the cases; the table shows medians")
	send := fs.Int("send", 0, "internal: send frames of this size from the current namespace")
	dst := fs.String("dst", "", "internal: destination MAC of -send")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *send > 0 {
		return sender(*send, *dst, *duration)
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root: it creates network namespaces")
	}
	if _, err := exec.LookPath("tcpdump"); err != nil {
		return errors.New("tcpdump is not installed (apt-get install -y tcpdump)")
	}
	var sz []int
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 60 || n > 1514 {
			return fmt.Errorf("frame size %q: want 60 to 1514", s)
		}
		sz = append(sz, n)
	}

	b := make([]byte, 4)
	rand.Read(b)
	prefix := "lvb-cap-" + hex.EncodeToString(b) + "-"
	lab, err := setup(ctx, prefix)
	defer cleanup(prefix)
	if err != nil {
		return err
	}
	defer lab.fab.Close()

	cases := []string{"none", "leviathan", "tcpdump", "both"}
	var rs []result
	for _, size := range sz {
		rounds := make([][]result, len(cases))
		for range max(*runs, 1) {
			for i, c := range cases {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				r, err := lab.measure(ctx, size, c, *duration)
				if err != nil {
					return fmt.Errorf("%d bytes, capture %s: %w", size, c, err)
				}
				rounds[i] = append(rounds[i], r)
			}
		}
		for _, rr := range rounds {
			rs = append(rs, median(rr))
		}
	}
	report(rs, max(*runs, 1))
	return nil
}

// lab is the bench's CEN: members a, b, c on a bridge.
type lab struct {
	fab     *netfab.Fabric
	ns      map[string]string // member → namespace path
	macs    map[string]net.HardwareAddr
	capture netfab.CaptureSpec
}

func setup(ctx context.Context, prefix string) (*lab, error) {
	fab, err := netfab.OpenFabric(ctx, prefix+"fabric")
	if err != nil {
		return nil, err
	}
	l := &lab{fab: fab, ns: map[string]string{}, macs: map[string]net.HardwareAddr{}}
	c := &netfab.CEN{ID: cenName, Name: cenName, Group: cen.GroupBase, BridgeMAC: cen.BridgeMAC(cenName), Plan: graph.WiringBridge}
	var paths []string
	for _, m := range []string{"a", "b", "c"} {
		p := netfab.NetnsPath(prefix + m)
		paths = append(paths, p)
		member := graph.Member{Host: "bench", Container: m}
		l.ns[m], l.macs[m] = p, cen.MAC(cenName, member)
		c.Ports = append(c.Ports, netfab.Port{Member: m, Netns: p, HostIf: cen.HostIfName(cenName, member), MAC: l.macs[m]})
	}
	if err := netfab.CreateNetns(ctx, paths, 2); err != nil {
		return l, err
	}
	// No IPv6 chatter on the members' links.
	for _, p := range paths {
		exec.Command("nsenter", "--net="+p, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1").Run()
	}
	if err := fab.Apply(ctx, nil, c); err != nil {
		return l, err
	}
	l.capture = netfab.CaptureSpec{Netns: fab.Path(), IfName: c.Ports[0].HostIf, Group: c.Group, Fabric: true}
	// b speaks once, so the bridge learns its port and a's frames go to
	// b alone.
	if out, err := exec.Command("nsenter", "--net="+l.ns["b"], self(), "-send", "60", "-dst", "ff:ff:ff:ff:ff:ff", "-duration", "1ms").CombinedOutput(); err != nil {
		return l, fmt.Errorf("b's first frame: %v: %s", err, out)
	}
	return l, nil
}

func cleanup(prefix string) {
	for _, m := range []string{"a", "b", "c", "fabric"} {
		netfab.DeleteNetns(netfab.NetnsPath(prefix + m))
	}
}

type result struct {
	size         int
	capture      string
	levOn, tdOn  bool
	secs         float64
	sent, deliv  uint64
	levGot       uint64
	levDrop      uint64
	tdGot        uint64
	tdDrop       uint64
	levCPU       time.Duration // this process's CPU time while capturing
	tdCPU        time.Duration // tcpdump's
	perSec       rates
	levDropShare float64
	tdDropShare  float64
}

// rates are a result's figures per second of sending; CPU as a share of
// one core.
type rates struct {
	sent, delivered, levGot, tdGot, levCPU, tdCPU float64
}

// median returns rs[0] with each figure the median over rs.
func median(rs []result) result {
	m := rs[0]
	pick := func(f func(r result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	m.perSec = rates{
		sent:      pick(func(r result) float64 { return r.perSec.sent }),
		delivered: pick(func(r result) float64 { return r.perSec.delivered }),
		levGot:    pick(func(r result) float64 { return r.perSec.levGot }),
		tdGot:     pick(func(r result) float64 { return r.perSec.tdGot }),
		levCPU:    pick(func(r result) float64 { return r.perSec.levCPU }),
		tdCPU:     pick(func(r result) float64 { return r.perSec.tdCPU }),
	}
	m.levDropShare = pick(func(r result) float64 { return r.levDropShare })
	m.tdDropShare = pick(func(r result) float64 { return r.tdDropShare })
	return m
}

// finish computes r's rates.
func (r *result) finish() {
	ps := func(n uint64) float64 { return float64(n) / r.secs }
	r.perSec = rates{sent: ps(r.sent), delivered: ps(r.deliv), levGot: ps(r.levGot), tdGot: ps(r.tdGot),
		levCPU: r.levCPU.Seconds() / r.secs, tdCPU: r.tdCPU.Seconds() / r.secs}
	share := func(n, of uint64) float64 {
		if of == 0 {
			return 0
		}
		return 100 * float64(n) / float64(of)
	}
	r.levDropShare, r.tdDropShare = share(r.levDrop, r.levGot+r.levDrop), share(r.tdDrop, r.tdGot+r.tdDrop)
}

// cpuTime returns this process's CPU time so far.
func cpuTime() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure runs one case: the captures asked for, then the sender for d.
func (l *lab) measure(ctx context.Context, size int, which string, d time.Duration) (result, error) {
	r := result{size: size, capture: which}
	r.levOn = which == "leviathan" || which == "both"
	r.tdOn = which == "tcpdump" || which == "both"
	before, err := rxPackets(l.ns["b"])
	if err != nil {
		return r, err
	}

	var td *exec.Cmd
	var tdErr bytes.Buffer
	if r.tdOn {
		td = exec.Command("nsenter", "--net="+l.fab.Path(), "tcpdump", "-n", "-B", "4096", "-s", "262144", "-i", l.capture.IfName, "-w", "/dev/null")
		stderr, _ := td.StderrPipe()
		if err := td.Start(); err != nil {
			return r, err
		}
		// tcpdump is ready once it says it listens.
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening on") {
				break
			}
		}
		go io.Copy(&tdErr, stderr)
	}
	type levResult struct {
		st  netfab.CaptureStats
		err error
	}
	levDone := make(chan levResult, 1)
	levCtx, levStop := context.WithCancel(ctx)
	defer levStop()
	cpu0 := cpuTime()
	if r.levOn {
		c, err := netfab.OpenCapture(l.capture)
		if err != nil {
			return r, err
		}
		go func() {
			defer c.Close()
			st, err := c.Stream(levCtx, io.Discard, netfab.StreamOptions{})
			levDone <- levResult{st, err}
		}()
	}

	start := time.Now()
	out, err := exec.CommandContext(ctx, "nsenter", "--net="+l.ns["a"], self(),
		"-send", strconv.Itoa(size), "-dst", l.macs["b"].String(), "-duration", d.String()).Output()
	r.secs = time.Since(start).Seconds()
	if err != nil {
		return r, fmt.Errorf("sender: %w", err)
	}
	if _, err := fmt.Sscanf(string(out), "sent %d", &r.sent); err != nil {
		return r, fmt.Errorf("sender said %q", out)
	}
	time.Sleep(300 * time.Millisecond) // the captures drain their queues

	if r.levOn {
		levStop()
		lr := <-levDone
		if lr.err != nil {
			return r, lr.err
		}
		r.levGot, r.levDrop = lr.st.Frames, lr.st.Dropped+lr.st.KernelDropped
		r.levCPU = cpuTime() - cpu0
	}
	if r.tdOn {
		td.Process.Signal(os.Interrupt)
		td.Wait()
		r.tdGot, r.tdDrop = tcpdumpCounts(tdErr.String())
		r.tdCPU = td.ProcessState.UserTime() + td.ProcessState.SystemTime()
	}
	after, err := rxPackets(l.ns["b"])
	if err != nil {
		return r, err
	}
	r.deliv = after - before
	r.finish()
	return r, nil
}

var (
	tdCaptured = regexp.MustCompile(`(\d+) packets captured`)
	tdDropped  = regexp.MustCompile(`(\d+) packets dropped by kernel`)
)

// tcpdumpCounts reads tcpdump's summary at exit. "captured" counts what
// it processed (wrote); "dropped by kernel" what its socket lost.
func tcpdumpCounts(s string) (got, dropped uint64) {
	if m := tdCaptured.FindStringSubmatch(s); m != nil {
		got, _ = strconv.ParseUint(m[1], 10, 64)
	}
	if m := tdDropped.FindStringSubmatch(s); m != nil {
		dropped, _ = strconv.ParseUint(m[1], 10, 64)
	}
	return got, dropped
}

// rxPackets reads the packets received by the CEN's interface in ns.
func rxPackets(ns string) (uint64, error) {
	out, err := exec.Command("nsenter", "--net="+ns, "ip", "-s", "-j", "link", "show", "dev", cenName).Output()
	if err != nil {
		return 0, fmt.Errorf("ip -s link in %s: %w", ns, err)
	}
	var ls []struct {
		Stats64 struct {
			RX struct {
				Packets uint64 `json:"packets"`
			} `json:"rx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &ls); err != nil || len(ls) != 1 {
		return 0, fmt.Errorf("ip -s link in %s: %v: %s", ns, err, out)
	}
	return ls[0].Stats64.RX.Packets, nil
}

// sender writes frames of size bytes to dst on the CEN's interface of
// the current namespace for d, as fast as sendmmsg takes them, and
// prints how many it sent.
func sender(size int, dst string, d time.Duration) error {
	to, err := net.ParseMAC(dst)
	if err != nil {
		return err
	}
	ifi, err := net.InterfaceByName(cenName)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(etherType), Ifindex: ifi.Index}); err != nil {
		return err
	}
	frame := make([]byte, size)
	copy(frame, to)
	copy(frame[6:], ifi.HardwareAddr)
	frame[12], frame[13] = etherType>>8, etherType&0xff
	hs := make([]unix.Mmsghdr, sendBatch)
	iov := unix.Iovec{Base: &frame[0]}
	iov.SetLen(size)
	for i := range hs {
		hs[i].Hdr.Iov = &iov
		hs[i].Hdr.SetIovlen(1)
	}
	var sent uint64
	deadline := time.Now().Add(d)
	for first := true; first || time.Now().Before(deadline); first = false {
		n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hs[0])), uintptr(len(hs)), 0, 0, 0)
		if e != 0 && e != unix.ENOBUFS && e != unix.EAGAIN {
			return e
		}
		sent += uint64(n)
		if d < time.Millisecond*10 {
			break
		}
	}
	fmt.Printf("sent %d\n", sent)
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func report(rs []result, runs int) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "bytes\tcapture\tsent/s\tdelivered/s\tdelivered Mbit/s\tvs none\tleviathan got/s\tleviathan dropped\tleviathan CPU\ttcpdump got/s\ttcpdump dropped\ttcpdump CPU\t")
	var base float64
	for _, r := range rs {
		p := r.perSec
		if r.capture == "none" {
			base = p.delivered
		}
		vs := "-"
		if base > 0 {
			vs = fmt.Sprintf("%.2f", p.delivered/base)
		}
		lg, ld, lc, tg, tdd, tc := "-", "-", "-", "-", "-", "-"
		if r.levOn {
			lg, ld, lc = fmt.Sprintf("%.0f", p.levGot), fmt.Sprintf("%.1f%%", r.levDropShare), fmt.Sprintf("%.0f%%", 100*p.levCPU)
		}
		if r.tdOn {
			tg, tdd, tc = fmt.Sprintf("%.0f", p.tdGot), fmt.Sprintf("%.1f%%", r.tdDropShare), fmt.Sprintf("%.0f%%", 100*p.tdCPU)
		}
		fmt.Fprintf(w, "%d\t%s\t%.0f\t%.0f\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.size, r.capture,
			p.sent, p.delivered, p.delivered*float64(r.size)*8/1e6, vs, lg, ld, lc, tg, tdd, tc)
	}
	w.Flush()
	fmt.Printf("\nmedians over %d rounds. sent: frames the sender in member a wrote to its link; delivered: frames member b received (its rx counter);\n", runs)
	fmt.Println("vs none: delivered/s against the same size with no capture; got/s: frames each capture wrote out;")
	fmt.Println("dropped: the share of frames it lost (leviathan: queue full or ring full; tcpdump: dropped by kernel);")
	fmt.Println("CPU: of one core, the capturing process's user and system time (leviathan: this whole process).")
}

// self is this command's executable, run again as the sender.
func self() string {
	p, err := os.Executable()
	if err != nil {
		return os.Args[0]
	}
	return p
}
