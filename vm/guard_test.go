package vm

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestGuard(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"plain line", "show ip\r", "show ip\r"},
		{"LF is Enter", "show\n", "show\r"},
		{"host command", "! id\r", "! id\x03"},
		{"host command after spaces", "   !id\r", "   !id\x03"},
		{"load by prefix", "lo /tmp/x\r", "lo /tmp/x\x03"},
		{"save via @", "@sa x\r", "@sa x\x03"},
		{"write is save", "wr\r", "wr\x03"},
		{"set lport", "set lp 1\r", "set lp 1\x03"},
		{"set pcname", "set pcname a\r", "set pcname a\r"},
		{"comment", "# ! id\r", "# ! id\r"},
		{"DEL becomes BS", "ab\x7fc\r", "ab\bc\r"},
		{"backspace out of a host command", "!\bid\r", "!\bid\r"},
		{"home then !", "id\x1b[1~!\r", "id\x1b[1~!\x03"},
		{"left then backspace", "xload\x1b[D\x1b[D\x1b[D\x1b[D\b\r", "xload\x1b[D\x1b[D\x1b[D\x1b[D\b\x03"},
		{"tab and other controls dropped", "sh\to\x01\x10w\r", "show\r"},
		{"unknown escape dropped", "a\x1b[5~b\r", "ab\r"},
		{"history recall freezes the line", "\x1b[Ax!\b\r", "\x1b[A\r"},
		{"recall keeps the checked line", "!id\x1b[A\r", "!id\x1b[A\x03"},
		{"Ctrl-C clears", "!id\x03show\r", "!id\x03show\r"},
		{"vpcs replaces the last char under the cursor", "loadx\x1b[Dq\r", "loadx\x1b[Dq\r"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var g guard
			var got []byte
			for i := range len(tc.in) { // byte by byte: sequences split across reads
				got = append(got, g.filter([]byte{tc.in[i]})...)
			}
			if diff := cmp.Diff(tc.want, string(got)); diff != "" {
				t.Errorf("filter(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestTelnetDecode(t *testing.T) {
	for _, tc := range []struct {
		name, in, data, reply string
	}{
		{"plain", "abc", "abc", ""},
		{"CR LF is one CR", "a\r\nb\r\x00c\r", "a\rb\rc\r", ""},
		{"escaped IAC", "a\xff\xffb", "a\xffb", ""},
		{"acks of our offers are silent", "\xff\xfd\x01\xff\xfd\x03\xff\xfb\x00\xff\xfd\x00", "", ""},
		{"other options refused", "\xff\xfb\x18\xff\xfd\x05", "", "\xff\xfe\x18\xff\xfc\x05"},
		{"WONT and DONT unanswered", "\xff\xfc\x01\xff\xfe\x03x", "x", ""},
		{"subnegotiation stripped", "a\xff\xfa\x1f\x00\x50\xff\xff\x00\x18\xff\xf0b", "ab", ""},
		{"NOP stripped", "a\xff\xf1b", "ab", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tr telnetReader
			var data, reply []byte
			for i := range len(tc.in) {
				d, r := tr.decode([]byte{tc.in[i]})
				data, reply = append(data, d...), append(reply, r...)
			}
			if string(data) != tc.data || string(reply) != tc.reply {
				t.Errorf("decode(%q) = %q, %q; want %q, %q", tc.in, data, reply, tc.data, tc.reply)
			}
		})
	}
}
