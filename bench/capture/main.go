// Command capture measures leviathan's live capture (netfab.Capture, what
// GET /host/{h}/{c}/{cen}/pcap streams) beside tcpdump capturing the same
// link in the same run, and what either costs the link, and prints a
// table: frames per second sent into a member's link, delivered to the
// far member, captured, and dropped by each capture, for 64- and
// 1400-byte frames.
//
//	go run ./bench/capture [-duration 2s] [-sizes 64,1400]
//
// It runs as root, in throwaway namespaces of its own (lvb-cap-*): a
// fabric namespace with a bridge CEN of three members, made by netfab as
// leviathan makes one. A sender (this command again, in -send mode,
// inside member a's namespace) writes raw frames to b's MAC through an
// AF_PACKET socket as fast as it can; both captures watch a's port on
// the bridge in the fabric. leviathan's capture writes its pcap stream to
// a discarding writer; tcpdump writes to /dev/null (-w /dev/null, with
// the same 4 MiB socket buffer). Delivered frames are b's received
// packets counter. It measures; it does not assert.
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

	var rs []result
	for _, size := range sz {
		for _, c := range []string{"none", "leviathan", "tcpdump", "both"} {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r, err := lab.measure(ctx, size, c, *duration)
			if err != nil {
				return fmt.Errorf("%d bytes, capture %s: %w", size, c, err)
			}
			rs = append(rs, r)
		}
	}
	report(rs)
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
	size            int
	capture         string
	secs            float64
	sent, delivered uint64
	levGot, levDrop uint64
	tdGot, tdDrop   uint64
	levOn, tdOn     bool
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
	}
	if r.tdOn {
		td.Process.Signal(os.Interrupt)
		td.Wait()
		r.tdGot, r.tdDrop = tcpdumpCounts(tdErr.String())
	}
	after, err := rxPackets(l.ns["b"])
	if err != nil {
		return r, err
	}
	r.delivered = after - before
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

func report(rs []result) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "bytes\tcapture\tsent/s\tdelivered/s\tdelivered Mbit/s\tvs none\tleviathan got/s\tleviathan dropped\ttcpdump got/s\ttcpdump dropped\t")
	var base float64
	for _, r := range rs {
		del := float64(r.delivered) / r.secs
		if r.capture == "none" {
			base = del
		}
		vs := "-"
		if base > 0 {
			vs = fmt.Sprintf("%.2f", del/base)
		}
		lg, ld, tg, tdd := "-", "-", "-", "-"
		if r.levOn {
			lg, ld = fmt.Sprintf("%.0f", float64(r.levGot)/r.secs), pct(r.levDrop, r.levGot+r.levDrop)
		}
		if r.tdOn {
			tg, tdd = fmt.Sprintf("%.0f", float64(r.tdGot)/r.secs), pct(r.tdDrop, r.tdGot+r.tdDrop)
		}
		fmt.Fprintf(w, "%d\t%s\t%.0f\t%.0f\t%.0f\t%s\t%s\t%s\t%s\t%s\t\n", r.size, r.capture,
			float64(r.sent)/r.secs, del, del*float64(r.size)*8/1e6, vs, lg, ld, tg, tdd)
	}
	w.Flush()
	fmt.Println("\nsent: frames the sender in member a wrote to its link; delivered: frames member b received (its rx counter);")
	fmt.Println("vs none: delivered/s against the same size with no capture; got/s: frames each capture wrote out;")
	fmt.Println("dropped: frames it lost (leviathan: queue full or socket buffer full; tcpdump: dropped by kernel), and their share.")
}

func pct(n, of uint64) string {
	if of == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%.1f%%)", n, 100*float64(n)/float64(of))
}

// self is this command's executable, run again as the sender.
func self() string {
	p, err := os.Executable()
	if err != nil {
		return os.Args[0]
	}
	return p
}
