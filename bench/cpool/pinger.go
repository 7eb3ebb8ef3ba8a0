package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// pinger sends ICMP echo requests from one network namespace through a
// raw socket opened in it: no process per ping, so a ping every few
// milliseconds measures the network and not fork and exec. Not safe for
// concurrent use.
type pinger struct {
	fd  int
	id  uint16
	seq uint16
	buf []byte
}

// openPinger opens a raw ICMP socket in the namespace at nsPath. The
// socket is made on a thread moved into that namespace and thrown away
// after (never returned to the runtime); the socket stays in the namespace
// and works from any thread.
func openPinger(nsPath string) (*pinger, error) {
	type res struct {
		fd  int
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		ns, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- res{-1, fmt.Errorf("open netns %s: %w", nsPath, err)}
			return
		}
		defer unix.Close(ns)
		if err := unix.Setns(ns, unix.CLONE_NEWNET); err != nil {
			ch <- res{-1, fmt.Errorf("enter netns %s: %w", nsPath, err)}
			return
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_ICMP)
		if err != nil {
			err = fmt.Errorf("raw ICMP socket in %s: %w", nsPath, err)
		}
		ch <- res{fd, err}
	}()
	r := <-ch
	if r.err != nil {
		return nil, r.err
	}
	var id [2]byte
	rand.Read(id[:])
	return &pinger{fd: r.fd, id: binary.BigEndian.Uint16(id[:]), buf: make([]byte, 1500)}, nil
}

func (p *pinger) close() { unix.Close(p.fd) }

// await pings dst every interval until it answers, and returns when the
// answer came. Only answers to this call's requests count. It fails after
// within with no answer.
func (p *pinger) await(ctx context.Context, dst netip.Addr, interval, within time.Duration) (time.Time, error) {
	p.drain()
	first := p.seq + 1
	deadline := time.Now().Add(within)
	to := &unix.SockaddrInet4{Addr: dst.As4()}
	for {
		if err := ctx.Err(); err != nil {
			return time.Time{}, err
		}
		p.seq++
		if err := unix.Sendto(p.fd, echoRequest(p.id, p.seq), 0, to); err != nil && !errors.Is(err, unix.EHOSTUNREACH) && !errors.Is(err, unix.ENETUNREACH) {
			return time.Time{}, fmt.Errorf("ping %s: %w", dst, err)
		}
		next := time.Now().Add(interval)
		for {
			wait := time.Until(next)
			if wait <= 0 {
				break
			}
			fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}
			if _, err := unix.Poll(fds, int(max(1, wait.Milliseconds()))); err != nil && !errors.Is(err, unix.EINTR) {
				return time.Time{}, fmt.Errorf("ping %s: poll: %w", dst, err)
			}
			if p.answered(dst, first) {
				return time.Now(), nil
			}
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%s does not answer a ping within %s", dst, within)
		}
	}
}

// answered reads what has come and says whether it holds an echo reply
// from dst to one of this pinger's requests numbered from first on.
func (p *pinger) answered(dst netip.Addr, first uint16) bool {
	found := false
	for {
		n, from, err := unix.Recvfrom(p.fd, p.buf, unix.MSG_DONTWAIT)
		if err != nil {
			return found
		}
		src, ok := from.(*unix.SockaddrInet4)
		if !ok || netip.AddrFrom4(src.Addr) != dst || n < 20 {
			continue
		}
		hl := int(p.buf[0]&0x0f) * 4
		if n < hl+8 {
			continue
		}
		icmp := p.buf[hl:n]
		id, seq := binary.BigEndian.Uint16(icmp[4:]), binary.BigEndian.Uint16(icmp[6:])
		// seq-first as a signed difference survives wrapping.
		if icmp[0] == 0 && icmp[1] == 0 && id == p.id && int16(seq-first) >= 0 {
			found = true
		}
	}
}

// drain discards what came before.
func (p *pinger) drain() {
	for {
		if _, _, err := unix.Recvfrom(p.fd, p.buf, unix.MSG_DONTWAIT); err != nil {
			return
		}
	}
}

// echoRequest is an ICMP echo request with 8 bytes of payload.
func echoRequest(id, seq uint16) []byte {
	b := make([]byte, 16)
	b[0] = 8 // echo request
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	copy(b[8:], "lvb-cpol")
	binary.BigEndian.PutUint16(b[2:], checksum(b))
	return b
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
