package netfab

import (
	"encoding/binary"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The layout of a TPACKET_V3 block (linux/if_packet.h): a
// tpacket_block_desc (version, offset to private data, then the
// tpacket_hdr_v1 whose first word is the block status), then frames,
// each a tpacket3_hdr followed by the frame at tp_mac from it.
const (
	blockHdrOff    = unsafe.Offsetof(unix.TpacketBlockDesc{}.Hdr)
	blockStatusOff = blockHdrOff + unsafe.Offsetof(unix.TpacketHdrV1{}.Block_status)
	vlanTagLen     = 4
	etherAddrsLen  = 12 // destination and source MACs, before the EtherType
)

// ringReader walks a capture's ring block after block, in the order the
// kernel fills them. It is used by the one reader goroutine.
type ringReader struct {
	ring []byte
	cur  int // the block to read next
	// ready is isReady bound once: the poller callback, no closure per
	// wait.
	ready func(uintptr) bool
}

func newRingReader(ring []byte) *ringReader {
	r := &ringReader{ring: ring}
	r.ready = r.isReady
	return r
}

// block returns the block to read next.
func (r *ringReader) block() ringBlock {
	return ringBlock(r.ring[r.cur*captureBlockSize : (r.cur+1)*captureBlockSize : (r.cur+1)*captureBlockSize])
}

// isReady is the poller callback: true once the kernel handed over the
// block to read next.
func (r *ringReader) isReady(uintptr) bool { return r.block().user() }

// release hands the current block back to the kernel and moves on.
func (r *ringReader) release() {
	r.block().release()
	r.cur = (r.cur + 1) % captureBlocks
}

// ringBlock is one block of the ring.
type ringBlock []byte

// status points at the block status the kernel and the reader hand the
// block over with.
func (b ringBlock) status() *uint32 {
	return (*uint32)(unsafe.Pointer(&b[blockStatusOff]))
}

// user reports whether the kernel has handed the block to the reader.
// The atomic load orders the reads of the frames after it, as the
// kernel's barrier orders its writes before the status.
func (b ringBlock) user() bool {
	return atomic.LoadUint32(b.status())&unix.TP_STATUS_USER != 0
}

// release hands the block back to the kernel, after every read of it.
func (b ringBlock) release() {
	atomic.StoreUint32(b.status(), unix.TP_STATUS_KERNEL)
}

// hdr returns the block's tpacket_hdr_v1.
func (b ringBlock) hdr() *unix.TpacketHdrV1 {
	return (*unix.TpacketHdrV1)(unsafe.Pointer(&b[blockHdrOff]))
}

// frames returns how many frames the block holds.
func (b ringBlock) frames() int { return int(b.hdr().Num_pkts) }

// records appends the pcap records of the block's first n frames to
// out, and returns it and how many it recorded. A frame is recorded as the kernel stored it, cut to
// CaptureSnapLen, with its true length; a VLAN tag the kernel took out of
// the frame (offloaded) is put back, as libpcap does, so the record is
// the frame as it was on the link.
func (b ringBlock) records(out []byte, n int) ([]byte, int) {
	le, be := binary.LittleEndian, binary.BigEndian
	off := int(b.hdr().Offset_to_first_pkt)
	done := 0
	for done < n {
		if off <= 0 || off+unix.SizeofTpacket3Hdr > len(b) {
			break
		}
		h := (*unix.Tpacket3Hdr)(unsafe.Pointer(&b[off]))
		mac := off + int(h.Mac)
		snap := int(h.Snaplen)
		if mac+snap > len(b) {
			break
		}
		frame := b[mac : mac+snap]
		wire := int(h.Len)
		tagged := h.Status&unix.TP_STATUS_VLAN_VALID != 0 && snap >= etherAddrsLen
		if tagged {
			wire += vlanTagLen
		}
		capLen := len(frame)
		if tagged {
			capLen += vlanTagLen
		}
		capLen = min(capLen, CaptureSnapLen)
		var rec [pcapRecordLen + vlanTagLen]byte
		le.PutUint32(rec[0:], h.Sec)
		le.PutUint32(rec[4:], h.Nsec/1000)
		le.PutUint32(rec[8:], uint32(capLen))
		le.PutUint32(rec[12:], uint32(wire))
		if !tagged {
			out = append(out, rec[:pcapRecordLen]...)
			out = append(out, frame[:capLen]...)
		} else {
			tpid := uint16(unix.ETH_P_8021Q)
			if h.Status&unix.TP_STATUS_VLAN_TPID_VALID != 0 {
				tpid = h.Hv1.Vlan_tpid
			}
			out = append(out, rec[:pcapRecordLen]...)
			out = append(out, frame[:etherAddrsLen]...)
			be.PutUint16(rec[pcapRecordLen:], tpid)
			be.PutUint16(rec[pcapRecordLen+2:], uint16(h.Hv1.Vlan_tci))
			out = append(out, rec[pcapRecordLen:]...)
			out = append(out, frame[etherAddrsLen:capLen-vlanTagLen]...)
		}
		done++
		if h.Next_offset == 0 { // the block's last frame
			break
		}
		off += int(h.Next_offset)
	}
	return out, done
}
