package netfab

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/leviathan-net/leviathan/cen"
)

// captureLab is a wire CEN between two member namespaces, with static
// neighbours and no IPv6: nothing crosses the wire but what a test sends.
type captureLab struct {
	c    *CEN
	ns   []string
	addr []string
}

func newCaptureLab(t *testing.T) *captureLab {
	t.Helper()
	f := testFabric(t)
	ns := testNamespaces(t, 2)
	c := testCEN("capX", cen.GroupBase+9, ns)
	if err := f.Apply(context.Background(), nil, c); err != nil {
		t.Fatal(err)
	}
	l := &captureLab{c: c, ns: ns, addr: []string{"10.251.0.1", "10.251.0.2"}}
	for i, p := range ns {
		nsRun(t, p, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
		nsRun(t, p, "ip", "addr", "add", l.addr[i]+"/24", "dev", c.Name)
		nsRun(t, p, "ip", "neigh", "add", l.addr[1-i], "lladdr", c.Ports[1-i].MAC.String(), "dev", c.Name, "nud", "permanent")
	}
	return l
}

// nsRun runs a command in the namespace at ns and fails the test on error.
func nsRun(t *testing.T, ns string, args ...string) {
	t.Helper()
	if out, err := exec.Command("nsenter", append([]string{"--net=" + ns}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("%s in %s: %v: %s", strings.Join(args, " "), ns, err, out)
	}
}

// spec is the capture of member i's end of the wire.
func (l *captureLab) spec(i int) CaptureSpec {
	return CaptureSpec{Netns: l.ns[i], IfName: l.c.Name, Group: l.c.Group}
}

// packetSockets counts the packet sockets of the namespace at ns.
func packetSockets(t *testing.T, ns string) int {
	t.Helper()
	out, err := exec.Command("nsenter", "--net="+ns, "cat", "/proc/net/packet").Output()
	if err != nil {
		t.Fatal(err)
	}
	return len(strings.Split(strings.TrimSpace(string(out)), "\n")) - 1
}

type testRecord struct {
	sec             uint32
	capLen, wireLen int
	data            []byte
}

// parsePcap splits a pcap stream into its records.
func parsePcap(t *testing.T, b []byte) []testRecord {
	t.Helper()
	le := binary.LittleEndian
	if len(b) < pcapHeaderLen || le.Uint32(b) != pcapMagicMicro || le.Uint32(b[20:]) != linkTypeEthernet {
		t.Fatalf("not a pcap stream of Ethernet frames: % x", b[:min(len(b), pcapHeaderLen)])
	}
	var out []testRecord
	for b = b[pcapHeaderLen:]; len(b) > 0; {
		if len(b) < pcapRecordLen {
			t.Fatalf("truncated record header: %d bytes left", len(b))
		}
		r := testRecord{sec: le.Uint32(b), capLen: int(le.Uint32(b[8:])), wireLen: int(le.Uint32(b[12:]))}
		if r.capLen > len(b)-pcapRecordLen || r.capLen > r.wireLen {
			t.Fatalf("bad record: caplen %d, wire %d, %d bytes left", r.capLen, r.wireLen, len(b)-pcapRecordLen)
		}
		r.data = b[pcapRecordLen : pcapRecordLen+r.capLen]
		out = append(out, r)
		b = b[pcapRecordLen+r.capLen:]
	}
	return out
}

// streamFor streams c until d after its start, and returns the records.
func streamFor(t *testing.T, c *Capture, d time.Duration, o StreamOptions) ([]testRecord, CaptureStats) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var buf bytes.Buffer
	st, err := c.Stream(ctx, &buf, o)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	return parsePcap(t, buf.Bytes()), st
}

// icmpEcho returns the ICMP type of an echo request (8) or reply (0) in
// an Ethernet frame, after an 802.1Q tag of vlan when vlan > 0, or -1.
func icmpEcho(frame []byte, vlan int) int {
	if vlan > 0 {
		if len(frame) < 18 || binary.BigEndian.Uint16(frame[12:]) != 0x8100 || int(binary.BigEndian.Uint16(frame[14:])&0xfff) != vlan {
			return -1
		}
		frame = append(frame[:12:12], frame[16:]...)
	}
	if len(frame) < 14+20+1 || binary.BigEndian.Uint16(frame[12:]) != 0x0800 || frame[14+9] != 1 {
		return -1
	}
	ihl := int(frame[14]&0xf) * 4
	if len(frame) < 14+ihl+1 {
		return -1
	}
	return int(frame[14+ihl])
}

func TestCapture(t *testing.T) {
	l := newCaptureLab(t)
	ping := func(t *testing.T, to string) {
		t.Helper()
		nsRun(t, l.ns[0], "ping", "-c", "1", "-W", "1", to)
	}
	// echoes checks that recs hold exactly one echo request from member
	// 0 and one reply to it, tagged with vlan when vlan > 0, and nothing
	// else.
	echoes := func(t *testing.T, recs []testRecord, vlan int) {
		t.Helper()
		mac := l.c.Ports[0].MAC
		var req, rep int
		for _, r := range recs {
			switch icmpEcho(r.data, vlan) {
			case 8:
				req++
				if !bytes.Equal(r.data[6:12], mac) {
					t.Errorf("echo request from %s, want %s", net.HardwareAddr(r.data[6:12]), mac)
				}
			case 0:
				rep++
				if !bytes.Equal(r.data[0:6], mac) {
					t.Errorf("echo reply to %s, want %s", net.HardwareAddr(r.data[0:6]), mac)
				}
			default:
				t.Errorf("unexpected frame: % x", r.data)
			}
			if r.capLen != r.wireLen || r.capLen != len(r.data) {
				t.Errorf("caplen %d, wire length %d, %d bytes", r.capLen, r.wireLen, len(r.data))
			}
			if d := time.Since(time.Unix(int64(r.sec), 0)); d < 0 || d > time.Minute {
				t.Errorf("timestamp %d is not now", r.sec)
			}
		}
		if req != 1 || rep != 1 {
			t.Errorf("%d echo requests and %d replies, want one each (both directions, once):\n%+v", req, rep, recs)
		}
	}

	t.Run("both directions once", func(t *testing.T) {
		c, err := OpenCapture(l.spec(0))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ping(t, l.addr[1]) // into the ring before Stream: nothing is lost
		recs, st := streamFor(t, c, 300*time.Millisecond, StreamOptions{})
		echoes(t, recs, 0)
		if st.Frames != 2 || st.Dropped != 0 || st.KernelDropped != 0 {
			t.Errorf("stats %+v, want 2 frames, no drops", st)
		}
	})

	t.Run("VLAN tag", func(t *testing.T) {
		// A tagged frame leaves member 0 with its tag in the frame and
		// reaches member 1 with the tag taken out (the kernel untags on
		// receive): both captures record it as it was on the wire.
		frame := make([]byte, 64)
		copy(frame, l.c.Ports[1].MAC)
		copy(frame[6:], l.c.Ports[0].MAC)
		binary.BigEndian.PutUint16(frame[12:], 0x8100)
		binary.BigEndian.PutUint16(frame[14:], 10) // VLAN 10
		binary.BigEndian.PutUint16(frame[16:], 0x88b5)
		copy(frame[18:], "leviathan")
		var cs []*Capture
		for i := range l.ns {
			c, err := OpenCapture(l.spec(i))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			cs = append(cs, c)
		}
		sendRaw(t, l.ns[0], l.c.Name, frame)
		for i, c := range cs {
			recs, _ := streamFor(t, c, 300*time.Millisecond, StreamOptions{})
			if len(recs) != 1 || !bytes.Equal(recs[0].data, frame) || recs[0].wireLen != len(frame) {
				t.Errorf("member %d's end: %+v, want the frame as sent: % x", i, recs, frame)
			}
		}
	})

	t.Run("count", func(t *testing.T) {
		c, err := OpenCapture(l.spec(1))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ping(t, l.addr[1])
		ping(t, l.addr[1])
		recs, st := streamFor(t, c, 5*time.Second, StreamOptions{Count: 3})
		if len(recs) != 3 || st.Frames != 3 {
			t.Errorf("%d records, %d frames, want 3", len(recs), st.Frames)
		}
	})

	t.Run("a second stream", func(t *testing.T) {
		c, err := OpenCapture(l.spec(1))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// The first stream ends by its context, the way a client goes:
		// the next one on the same capture still reads.
		for i := range 2 {
			ping(t, l.addr[1])
			recs, _ := streamFor(t, c, 300*time.Millisecond, StreamOptions{})
			if len(recs) != 2 {
				t.Errorf("stream %d: %d records, want 2", i, len(recs))
			}
		}
	})

	t.Run("close releases the ring", func(t *testing.T) {
		base := OpenCaptures()
		c, err := OpenCapture(l.spec(0))
		if err != nil {
			t.Fatal(err)
		}
		if got := packetSockets(t, l.ns[0]); got != 1 {
			t.Errorf("%d packet sockets during the capture, want 1", got)
		}
		if got := OpenCaptures(); got != base+1 {
			t.Errorf("OpenCaptures %d during the capture, want %d", got, base+1)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.Stream(context.Background(), &bytes.Buffer{}, StreamOptions{})
		}()
		time.Sleep(50 * time.Millisecond) // the reader waits in the poller
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		<-done
		if err := c.Close(); err != nil {
			t.Errorf("second close: %v", err)
		}
		if got := packetSockets(t, l.ns[0]); got != 0 {
			t.Errorf("%d packet sockets after close, want 0: the ring's mapping keeps the socket", got)
		}
		if got := OpenCaptures(); got != base {
			t.Errorf("OpenCaptures %d after close, want %d", got, base)
		}
	})
}

// sendRaw sends one frame on ifName in the namespace at ns.
func sendRaw(t *testing.T, ns, ifName string, frame []byte) {
	t.Helper()
	err := atNetns(ns, func() error {
		ifi, err := net.InterfaceByName(ifName)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatalf("send a frame on %s in %s: %v", ifName, ns, err)
	}
}
