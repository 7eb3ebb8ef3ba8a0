package vm

import (
	"fmt"
	"strings"
)

// vpcs 0.5b2 runs `! CMD` through system(3) as the daemon's user (root),
// and `load`, `save`/`write`, `relay` and `rlogin` read or write any file
// or bind any port. GNS3 removed `!` from its vpcs for that reason;
// Debian's still has it. Anyone who can reach the console must not get
// those, so every byte a console client types goes through a guard.
//
// The guard keeps a shadow of vpcs's line editor (readline.c): it
// forwards only the keys whose effect it can model (printable ASCII,
// backspace, left, right, home, end, up and down through the history,
// Ctrl-C, Enter) and drops the rest (Tab completion, other control keys
// and escape sequences). When Enter comes and the shadow line is one
// vpcs must not run, the guard sends Ctrl-C instead, which clears the
// line without running it or putting it in the history.
//
// After up or down the line is a history entry the guard cannot see,
// so until Enter or Ctrl-C only more up, down, Enter and Ctrl-C pass:
// the line run is then either a history entry (every one of which passed
// the guard, see checkHistory) or, when the history had no match, the
// line as it was before up, which the guard checks.
//
// Backspace is always sent as BS (0x08), never DEL (0x7f): while vpcs
// runs a command the terminal is in canonical mode, where DEL is the
// kernel's erase character and would erase bytes behind the guard's back.

// forbidden are the vpcs commands a console client may not run. vpcs
// takes any unambiguous prefix of a command name, so a first word that
// is a prefix of one of these is refused too.
var forbidden = []string{"load", "save", "write", "relay", "rlogin"}

// forbiddenSet are `set` arguments that would move the VPCS's UDP ports,
// which belong to the data plane.
var forbiddenSet = []string{"lport", "rport", "rhost"}

// maxLine is where the guard stops accepting characters on a line:
// vpcs's buffer is 128 bytes and it does not bound appends.
const maxLine = 120

// allowedLine reports whether vpcs may run line (as typed, before its
// own trimming), and why not.
func allowedLine(line string) error {
	s := strings.Trim(line, " \t")
	if s == "" || s[0] == '#' || s[0] == ';' {
		return nil
	}
	if s[0] == '!' {
		return fmt.Errorf("host commands (!) are not served on this console")
	}
	f := strings.Fields(s)
	word := strings.TrimPrefix(f[0], "@")
	for _, c := range forbidden {
		if strings.HasPrefix(c, word) {
			return fmt.Errorf("%q (%s) is not served on this console", f[0], c)
		}
	}
	if len(f) > 1 && word != "" && strings.HasPrefix("set", word) {
		for _, a := range forbiddenSet {
			if strings.HasPrefix(a, f[1]) {
				return fmt.Errorf("set %s belongs to leviathan's data plane", a)
			}
		}
	}
	return nil
}

// Control bytes and escape sequences the guard knows.
const (
	ctrlC = 0x03
	bs    = 0x08
	lf    = 0x0a
	cr    = 0x0d
	esc   = 0x1b
	del   = 0x7f
)

// keys are the escape sequences the guard forwards (vpcs's keydef.h).
var keys = []struct {
	seq string
	k   key
}{
	{"\x1b[A", keyUp},
	{"\x1b[B", keyDown},
	{"\x1b[C", keyRight},
	{"\x1b[D", keyLeft},
	{"\x1b[1~", keyHome},
	{"\x1b[4~", keyEnd},
}

type key uint8

const (
	keyUp key = iota + 1
	keyDown
	keyRight
	keyLeft
	keyHome
	keyEnd
)

// guard is the shadow line editor; it is not safe for concurrent use
// (term serializes input).
type guard struct {
	line     []byte
	pos      int
	recalled bool   // up or down was pressed: line is unknown
	esc      []byte // an escape sequence being read
	bye      bool   // the client typed disconnect: end its session
	refused  func(line string, err error)
}

// filter returns the bytes to send to vpcs for the bytes in.
func (g *guard) filter(in []byte) []byte {
	var out []byte
	for _, b := range in {
		if len(g.esc) > 0 || b == esc {
			g.esc = append(g.esc, b)
			out = g.escape(out)
			continue
		}
		switch {
		case b == ctrlC:
			g.reset()
			out = append(out, ctrlC)
		case b == cr || b == lf:
			out = g.enter(out)
		case g.recalled:
			// Only up, down, Enter and Ctrl-C while a recalled line shows.
		case b == bs || b == del:
			if g.pos > 0 {
				g.line = append(g.line[:g.pos-1], g.line[g.pos:]...)
				g.pos--
			}
			out = append(out, bs)
		case b >= 0x20 && b < 0x7f:
			if len(g.line) >= maxLine {
				continue
			}
			g.insert(b)
			out = append(out, b)
		}
	}
	return out
}

// insert puts b at the cursor as vpcs does, including its quirk: with
// the cursor on the last character, that character is replaced.
func (g *guard) insert(b byte) {
	if len(g.line) > 0 && g.pos == len(g.line)-1 {
		g.line = append(g.line[:g.pos], b)
	} else {
		g.line = append(g.line[:g.pos], append([]byte{b}, g.line[g.pos:]...)...)
	}
	g.pos++
}

// escape handles the escape sequence in g.esc once it is complete: a
// CSI sequence (ESC [ params final), an SS3 key (ESC O x) or ESC and
// any other byte. Only the keys vpcs knows are forwarded.
func (g *guard) escape(out []byte) []byte {
	e := string(g.esc)
	switch {
	case len(e) == 1:
		return out
	case e[1] == 'O' && len(e) < 3:
		return out
	case e[1] == '[' && len(e) < 16 && (len(e) == 2 || e[len(e)-1] >= 0x20 && e[len(e)-1] < 0x40):
		return out // parameters still coming
	}
	g.esc = g.esc[:0]
	for _, k := range keys {
		if e == k.seq {
			return g.key(k.k, k.seq, out)
		}
	}
	return out // unknown: dropped
}

func (g *guard) key(k key, seq string, out []byte) []byte {
	switch {
	case k == keyUp || k == keyDown:
		g.recalled = true
	case g.recalled:
		return out
	case k == keyRight:
		g.pos = min(g.pos+1, len(g.line))
	case k == keyLeft:
		g.pos = max(g.pos-1, 0)
	case k == keyHome:
		g.pos = 0
	case k == keyEnd:
		g.pos = len(g.line)
	}
	return append(out, seq...)
}

func (g *guard) enter(out []byte) []byte {
	line := string(g.line)
	g.reset()
	if strings.Trim(line, " \t") == "disconnect" {
		// As vpcs's own console server has it: the session ends, vpcs
		// runs on. The line is cleared, not run.
		g.bye = true
		return append(out, ctrlC)
	}
	if err := allowedLine(line); err != nil {
		if g.refused != nil {
			g.refused(line, err)
		}
		return append(out, ctrlC)
	}
	return append(out, cr)
}

func (g *guard) reset() {
	g.line, g.pos, g.recalled = g.line[:0], 0, false
}
