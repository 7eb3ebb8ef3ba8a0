package netfab_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/leviathan-net/leviathan/netfab"
)

// A tap records what the relay carries as pcap: the header, then one
// record per frame with the frame whole; a second tap is refused, and
// a closed tap records nothing more.
func TestRelayTapOff(t *testing.T) {
	p := newUDPPair(t)
	var buf bytes.Buffer
	tap, err := p.r.TapOff(&buf, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.r.TapOff(&bytes.Buffer{}, 0); !errors.Is(err, netfab.ErrTapped) {
		t.Errorf("second tap: %v, want ErrTapped", err)
	}
	const n = 5
	for i := range n {
		if _, err := p.src.Write(frameFor(i)); err != nil {
			t.Fatal(err)
		}
		if _, err := p.recv(2 * time.Second); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	st, err := tap.Close()
	if err != nil || st.Frames != n || st.Dropped != 0 {
		t.Fatalf("tap: %+v, %v", st, err)
	}
	if p.r.Tapped() {
		t.Error("relay still tapped after Close")
	}
	b := buf.Bytes()
	if len(b) != 24+n*(16+60) || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 {
		t.Fatalf("pcap of %d bytes: % x", len(b), b[:min(len(b), 24)])
	}
	for i := range n {
		rec := b[24+i*(16+60):]
		if l := binary.LittleEndian.Uint32(rec[8:]); l != 60 || !bytes.Equal(rec[16:16+60], frameFor(i)) {
			t.Errorf("record %d: length %d, frame % x", i, l, rec[16:16+60])
		}
	}
	p.src.Write(frameFor(99))
	p.recv(2 * time.Second)
	if buf.Len() != len(b) {
		t.Error("a closed tap still records")
	}
}
