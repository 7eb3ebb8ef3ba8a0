package vm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// promptWait is how long Exec waits for vpcs's prompt after its Ctrl-C
// before it asks for one with an Enter.
const promptWait = 500 * time.Millisecond

// settleWait is how long the output must be quiet after a prompt before
// Exec types its command.
const settleWait = 150 * time.Millisecond

// errQuiet is nextWithin's: no output came in time.
var errQuiet = errors.New("no output")

// ansi matches the escape sequences vpcs prints (bold in its help,
// colours from `set echo color`).
var ansi = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// clean turns terminal output into plain lines: escape sequences and
// CRs (vpcs ends lines in CR LF, some in CR CR LF) go, backspaces erase,
// other control bytes (a stray telnet or terminal byte) are dropped.
func clean(b []byte) string {
	s := ansi.ReplaceAllString(string(b), "")
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\b':
			if n := len(out); n > 0 && out[n-1] != '\n' {
				out = out[:n-1]
			}
		case c == '\n' || c == '\t' || c >= 0x20 && c != 0x7f:
			out = append(out, c)
		}
	}
	return string(out)
}

// prompt matches vpcs's prompt as the last line of cleaned output:
// "VPCS> " with one instance, "VPCS[1]> " with several, or the name
// `set pcname` gave.
var prompt = regexp.MustCompile(`(?:^|\n)(\S{1,64}> )$`)

// promptAtEnd reports whether s ends with a prompt, and where the
// prompt's line starts.
func promptAtEnd(s string) (start int, ok bool) {
	m := prompt.FindStringSubmatchIndex(s)
	if m == nil {
		return 0, false
	}
	return m[2], true
}

// Exec types one command into the VPCS console and returns its output,
// without the echo and the next prompt, lines joined by "\n". It first
// sends Ctrl-C, which ends whatever a console client left half typed or
// running. Exec calls are serialized, and console clients' input waits
// until Exec returns. A command the console would refuse is refused here
// too, so that everything in vpcs's history may be recalled.
func (v *VPCS) Exec(ctx context.Context, cmd string) (string, error) {
	if cmd == "" || len(cmd) > maxLine || strings.TrimSpace(cmd) != cmd {
		return "", fmt.Errorf("vpcs command %q: want 1-%d characters, no surrounding space", cmd, maxLine)
	}
	for _, c := range []byte(cmd) {
		if c < 0x20 || c >= 0x7f {
			return "", fmt.Errorf("vpcs command %q: control or non-ASCII byte", cmd)
		}
	}
	if err := allowedLine(cmd); err != nil {
		return "", fmt.Errorf("vpcs command %q: %w", cmd, err)
	}
	select {
	case v.exec <- struct{}{}:
		defer func() { <-v.exec }()
	case <-ctx.Done():
		return "", ctx.Err()
	}
	v.mu.Lock()
	t := v.term
	v.mu.Unlock()
	if t == nil {
		return "", ErrNotRunning
	}
	if err := t.lock(ctx); err != nil {
		return "", err
	}
	defer t.unlock()
	select {
	case <-t.done:
		return "", ErrNotRunning
	default:
	}

	s := t.subscribe(1024, false, nil)
	defer t.unsubscribe(s)
	var out []byte
	var nextWithin func(time.Duration) error
	// next waits for more output; it fails if vpcs is gone or ctx ends,
	// in which case a running command is interrupted.
	next := func() error {
		return nextWithin(0)
	}
	// nextWithin is next, giving up (errQuiet) after d when d > 0.
	nextWithin = func(d time.Duration) error {
		var quiet <-chan time.Time
		if d > 0 {
			t := time.NewTimer(d)
			defer t.Stop()
			quiet = t.C
		}
		select {
		case <-quiet:
			return errQuiet
		case b, ok := <-s.ch:
			if !ok {
				select {
				case <-t.done:
					return ErrNotRunning
				default:
					return errors.New("vpcs output overran its reader")
				}
			}
			out = append(out, b...)
			return nil
		case <-ctx.Done():
			_ = t.write([]byte{ctrlC})
			return fmt.Errorf("vpcs %q: %w; output so far %q", cmd, ctx.Err(), clean(out))
		}
	}

	// A write that fails because the terminal is closed means vpcs is
	// gone (its exit may be noticed a moment after the terminal closes).
	writeErr := func(err error) error {
		if errors.Is(err, os.ErrClosed) {
			err = ErrNotRunning
		}
		return fmt.Errorf("vpcs %q: %w", cmd, err)
	}
	if err := t.write([]byte{ctrlC}); err != nil {
		return "", writeErr(err)
	}
	// vpcs answers Ctrl-C with a fresh prompt, except on a line that is
	// empty already (a console client's refused line was cleared with one
	// just before): then an Enter on the empty line brings a prompt. A
	// prompt counts once the output has been quiet for settleWait: vpcs
	// drops what is typed before it has handled the Ctrl-C, and a prompt
	// seen sooner may be one printed before the Ctrl-C arrived.
	for {
		if _, ok := promptAtEnd(clean(out)); ok {
			err := nextWithin(settleWait)
			if errors.Is(err, errQuiet) {
				break
			}
			if err != nil {
				return "", err
			}
			continue
		}
		err := nextWithin(promptWait)
		if errors.Is(err, errQuiet) {
			if err := t.write([]byte{'\r'}); err != nil {
				return "", writeErr(err)
			}
			continue
		}
		if err != nil {
			return "", err
		}
	}
	mark := len(out)
	if err := t.write([]byte(cmd + "\r")); err != nil {
		return "", writeErr(err)
	}
	for {
		text := clean(out[mark:])
		if i := strings.Index(text, cmd+"\n"); i >= 0 {
			rest := text[i+len(cmd)+1:]
			if p, ok := promptAtEnd(rest); ok {
				return strings.Trim(rest[:p], "\n"), nil
			}
		}
		if err := next(); err != nil {
			return "", err
		}
	}
}

// SetIP gives the VPCS an IPv4 address (`ip ADDR/LEN [GW]`); gw may be
// the zero Addr. vpcs first checks for a duplicate with ARP, which
// takes about 3 seconds.
func (v *VPCS) SetIP(ctx context.Context, prefix netip.Prefix, gw netip.Addr) error {
	if !prefix.IsValid() || !prefix.Addr().Is4() || (gw.IsValid() && !gw.Is4()) {
		return fmt.Errorf("vpcs ip %s %s: want an IPv4 prefix and gateway", prefix, gw)
	}
	cmd := "ip " + prefix.String()
	if gw.IsValid() {
		cmd += " " + gw.String()
	}
	out, err := v.Exec(ctx, cmd)
	if err != nil {
		return err
	}
	// "PC1 : 10.0.0.1 255.255.255.0 gateway 10.0.0.254"
	want := " : " + prefix.Addr().String() + " " + net.IP(net.CIDRMask(prefix.Bits(), 32)).String()
	if gw.IsValid() {
		want += " gateway " + gw.String()
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasSuffix(strings.TrimSpace(l), want) {
			return nil
		}
	}
	return fmt.Errorf("vpcs %q: %s", cmd, strings.ReplaceAll(out, "\n", "; "))
}

// pingReply is a reply line of vpcs 0.5b2 ("10.0.0.2 icmp_seq=1 ttl=64
// time=0.3 ms") or 0.8 (the same after "84 bytes from ").
var pingReply = regexp.MustCompile(`^(?:\d+ bytes from )?(\S+) icmp_seq=\d+ ttl=\d+ time=`)

// pingOther are lines of a ping that got no reply: a lost probe, or no
// ARP answer for the address (or its gateway).
var pingOther = regexp.MustCompile(`^\S+ icmp_seq=\d+ timeout$|^host \(\S+\) not reachable$`)

// Ping sends count ICMP echo requests (`ping ADDR -c N`) and returns how
// many were answered. An address that does not answer ARP gives 0
// replies, not an error; output vpcs should not print is an error.
func (v *VPCS) Ping(ctx context.Context, addr netip.Addr, count int) (int, error) {
	if !addr.Is4() || count < 1 || count > 1000 {
		return 0, fmt.Errorf("vpcs ping %s -c %d: want an IPv4 address and 1-1000 probes", addr, count)
	}
	cmd := "ping " + addr.String() + " -c " + strconv.Itoa(count)
	out, err := v.Exec(ctx, cmd)
	if err != nil {
		return 0, err
	}
	replies := 0
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "":
		case pingReply.MatchString(l):
			replies++
		case pingOther.MatchString(l):
		default:
			return replies, fmt.Errorf("vpcs %q: %s", cmd, l)
		}
	}
	return replies, nil
}

// IPInfo is what `show ip` says of the VPCS.
type IPInfo struct {
	Name    string
	Prefix  netip.Prefix // the zero Prefix when none is set
	Gateway netip.Addr   // the zero Addr when none is set
	DNS     string
	MAC     net.HardwareAddr
	LPort   int            // the UDP port it binds
	Remote  netip.AddrPort // where it sends
	MTU     int
}

// ShowIP runs `show ip` and parses it:
//
//	NAME        : VPCS[1]
//	IP/MASK     : 192.168.1.1/24
//	GATEWAY     : 0.0.0.0
//	DNS         :
//	MAC         : 00:50:79:66:68:01
//	LPORT       : 21001
//	RHOST:PORT  : 127.0.0.1:21002
//	MTU:        : 1500
func (v *VPCS) ShowIP(ctx context.Context) (IPInfo, error) {
	out, err := v.Exec(ctx, "show ip")
	if err != nil {
		return IPInfo{}, err
	}
	var info IPInfo
	var errs []error
	seen := 0
	for _, l := range strings.Split(out, "\n") {
		k, val, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		// "MTU:        : 1500" and "RHOST:PORT  : ..." have a colon in the key.
		if i := strings.Index(l, " : "); i >= 0 {
			k, val = l[:i], l[i+3:]
		}
		k, val = strings.TrimSpace(k), strings.TrimSpace(val)
		var err error
		switch k {
		case "NAME":
			info.Name = val
		case "IP/MASK":
			var p netip.Prefix
			if p, err = netip.ParsePrefix(val); err == nil && !p.Addr().IsUnspecified() {
				info.Prefix = p
			}
		case "GATEWAY":
			var a netip.Addr
			if a, err = netip.ParseAddr(val); err == nil && !a.IsUnspecified() {
				info.Gateway = a
			}
		case "DNS":
			info.DNS = val
		case "MAC":
			info.MAC, err = net.ParseMAC(val)
		case "LPORT":
			info.LPort, err = strconv.Atoi(val)
		case "RHOST:PORT":
			info.Remote, err = netip.ParseAddrPort(val)
		case "MTU:", "MTU":
			info.MTU, err = strconv.Atoi(val)
		default:
			continue
		}
		seen++
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
		}
	}
	if seen == 0 {
		return IPInfo{}, fmt.Errorf("vpcs show ip: unexpected output %q", out)
	}
	if err := errors.Join(errs...); err != nil {
		return info, fmt.Errorf("vpcs show ip: %w", err)
	}
	return info, nil
}
