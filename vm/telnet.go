package vm

// Telnet (RFC 854) as a console needs it: the server offers to echo and
// to suppress go-ahead, so that a client such as telnet(1) switches to
// character mode and leaves echo to vpcs, and both sides agree on binary
// (as GNS3's telnet server does). Anything else a client asks for is
// refused; IAC sequences never reach vpcs.

const (
	tnSE   = 240
	tnSB   = 250
	tnWill = 251
	tnWont = 252
	tnDo   = 253
	tnDont = 254
	tnIAC  = 255

	optBinary = 0
	optEcho   = 1
	optSGA    = 3
)

// telnetHello is what the server sends when a client connects.
var telnetHello = []byte{
	tnIAC, tnWill, optEcho,
	tnIAC, tnWill, optSGA,
	tnIAC, tnWill, optBinary,
	tnIAC, tnDo, optBinary,
}

// telnetState is where a telnetReader is within an IAC sequence.
type telnetState uint8

const (
	tsData  telnetState = iota
	tsIAC               // after IAC
	tsOpt               // after IAC WILL/WONT/DO/DONT
	tsSB                // inside a subnegotiation
	tsSBIAC             // IAC inside a subnegotiation
	tsCR                // after a CR in the data
)

// telnetReader strips telnet commands from what a client sends. It is
// used by one goroutine.
type telnetReader struct {
	state telnetState
	verb  byte
}

// decode returns the data bytes of in, and the replies to send the
// client for its negotiation. A CR followed by LF or NUL (how a telnet
// client sends Enter) becomes a single CR, as vpcs would otherwise see
// two Enters.
func (t *telnetReader) decode(in []byte) (data, reply []byte) {
	for _, b := range in {
		switch t.state {
		case tsData, tsCR:
			afterCR := t.state == tsCR
			t.state = tsData
			switch {
			case b == tnIAC:
				t.state = tsIAC
			case afterCR && (b == lf || b == 0):
			case b == cr:
				data = append(data, b)
				t.state = tsCR
			default:
				data = append(data, b)
			}
		case tsIAC:
			switch b {
			case tnIAC:
				data = append(data, b) // an escaped 0xff
				t.state = tsData
			case tnWill, tnWont, tnDo, tnDont:
				t.verb, t.state = b, tsOpt
			case tnSB:
				t.state = tsSB
			default: // NOP, AYT, GA, BRK and the like: ignored
				t.state = tsData
			}
		case tsOpt:
			reply = append(reply, t.answer(t.verb, b)...)
			t.state = tsData
		case tsSB:
			if b == tnIAC {
				t.state = tsSBIAC
			}
		case tsSBIAC:
			t.state = tsSB
			if b == tnSE {
				t.state = tsData
			}
		}
	}
	return data, reply
}

// answer replies to a client's WILL/WONT/DO/DONT opt. What the server
// offered or asked for in telnetHello is acknowledged silently; any
// other WILL is refused with DONT and any other DO with WONT. WONT and
// DONT need no answer, so no negotiation loops.
func (t *telnetReader) answer(verb, opt byte) []byte {
	switch verb {
	case tnWill:
		if opt != optBinary {
			return []byte{tnIAC, tnDont, opt}
		}
	case tnDo:
		if opt != optEcho && opt != optSGA && opt != optBinary {
			return []byte{tnIAC, tnWont, opt}
		}
	}
	return nil
}

// telnetEscape doubles every IAC byte in out, as the protocol wants of
// data sent to the client.
func telnetEscape(out []byte) []byte {
	n := 0
	for _, b := range out {
		if b == tnIAC {
			n++
		}
	}
	if n == 0 {
		return out
	}
	esc := make([]byte, 0, len(out)+n)
	for _, b := range out {
		esc = append(esc, b)
		if b == tnIAC {
			esc = append(esc, tnIAC)
		}
	}
	return esc
}
