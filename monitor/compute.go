package monitor

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// ActionNodeUpdated is a GNS3 2.2 node's change (status, console, name):
// the only way a GNS3 controller learns a node's status.
const ActionNodeUpdated Action = "node.updated"

// NodeEvent is the body of node.updated, as a GNS3 2.2 compute sends it.
type NodeEvent struct {
	NodeID        string `json:"node_id"`
	ProjectID     string `json:"project_id"`
	Name          string `json:"name"`
	Status        string `json:"status"`
	Console       *int   `json:"console"`
	ConsoleType   string `json:"console_type"`
	NodeDirectory string `json:"node_directory,omitempty"`
	CommandLine   string `json:"command_line"`
}

// ComputePing is the body of a GNS3 2.2 compute's ping.
type ComputePing struct {
	CPU    float64 `json:"cpu_usage_percent"`
	Memory float64 `json:"memory_usage_percent"`
}

// computeMessage is one message of /v2/compute/notifications/ws.
type computeMessage struct {
	Action    Action `json:"action"`
	Event     any    `json:"event"`
	ProjectID string `json:"project_id,omitempty"`
}

// ComputePingEvery is how often an idle compute notification websocket
// gets a ping message, as a GNS3 compute sends them.
const ComputePingEvery = time.Second

// computeConns are the open compute websockets and how far each has got
// through the bus, so that a handler can wait until a node.updated it
// published has been written (GNS3 wants it before the answer).
type computeConns struct {
	mu    sync.Mutex // guards conns and wake
	conns map[*computeConn]struct{}
	wake  chan struct{} // closed and replaced when any conn advances
}

type computeConn struct {
	seq uint64 // events up to this number are written or skipped; guarded by computeConns.mu
}

func (cc *computeConns) add(c *computeConn) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.conns == nil {
		cc.conns = map[*computeConn]struct{}{}
	}
	cc.conns[c] = struct{}{}
}

func (cc *computeConns) remove(c *computeConn) {
	cc.mu.Lock()
	delete(cc.conns, c)
	cc.mu.Unlock()
	cc.advanced()
}

func (cc *computeConns) advance(c *computeConn, seq uint64) {
	cc.mu.Lock()
	c.seq = seq
	cc.mu.Unlock()
	cc.advanced()
}

func (cc *computeConns) advanced() {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.wake != nil {
		close(cc.wake)
		cc.wake = nil
	}
}

// behind reports whether a conn has not got to seq yet, and a channel
// closed when any conn moves.
func (cc *computeConns) behind(seq uint64) (bool, <-chan struct{}) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	for c := range cc.conns {
		if c.seq < seq {
			if cc.wake == nil {
				cc.wake = make(chan struct{})
			}
			return true, cc.wake
		}
	}
	return false, nil
}

// FlushCompute waits until every open compute websocket has written (or
// skipped) the events published so far, or ctx ends. A handler calls it
// after publishing node.updated and before answering.
func (s *Server) FlushCompute(ctx context.Context) {
	seq := s.bus.Seq()
	for {
		behind, wake := s.compute.behind(seq)
		if !behind {
			return
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return
		}
	}
}

// ServeComputeWS serves /v2/compute/notifications/ws, a GNS3 2.2
// compute's notification websocket: a ping (CPU and memory use) at once
// and whenever idle for ComputePingEvery, and node.updated with the
// top-level project_id a controller reads. Other events are not sent:
// a controller would forward them to its own clients. The connection
// stays open; the library answers the controller's pings while
// CloseRead reads.
func (s *Server) ServeComputeWS(w http.ResponseWriter, r *http.Request) {
	c, ok := s.accept(w, r)
	if !ok {
		return
	}
	defer s.active.Done()
	defer c.CloseNow()
	ctx, cancel := context.WithCancel(c.CloseRead(context.WithoutCancel(r.Context())))
	defer cancel()
	sub, seq := s.bus.Subscribe(s.QueueLen)
	defer sub.Close()
	cc := &computeConn{seq: seq}
	s.compute.add(cc)
	defer s.compute.remove(cc)
	go guard(ctx, c, sub)
	var load Load
	ping := func() computeMessage {
		cpu, mem := load.Sample()
		return computeMessage{Action: ActionPing, Event: ComputePing{CPU: cpu, Memory: mem}}
	}
	if err := s.write(c, ping()); err != nil {
		return
	}
	idle := time.NewTimer(ComputePingEvery)
	defer idle.Stop()
	for {
		var msg computeMessage
		var seq uint64
		select {
		case <-ctx.Done():
			return
		case <-s.done:
			c.Close(websocket.StatusGoingAway, goingAway)
			return
		case <-sub.Done:
			c.Close(websocket.StatusPolicyViolation, tooSlow)
			return
		case <-idle.C:
			msg = ping()
		case e := <-sub.C:
			seq = e.Seq
			ne, ok := e.Data.(NodeEvent)
			if e.Action != ActionNodeUpdated || !ok {
				s.compute.advance(cc, seq)
				continue
			}
			msg = computeMessage{Action: e.Action, Event: ne, ProjectID: ne.ProjectID}
		}
		if err := s.write(c, msg); err != nil {
			return
		}
		if seq != 0 {
			s.compute.advance(cc, seq)
		}
		idle.Reset(ComputePingEvery)
	}
}

// Load samples this machine's CPU use (between two samples, from
// /proc/stat) and memory use (from /proc/meminfo), in percent. The zero
// value is ready; its first CPU figure covers the time since boot.
type Load struct {
	idle, total uint64
}

// Sample returns the CPU use since the last sample and the memory use
// now. A figure that cannot be read is 0.
func (l *Load) Sample() (cpu, mem float64) {
	if idle, total, ok := readCPU(); ok {
		if dt := total - l.total; total > l.total {
			cpu = 100 * float64(dt-(idle-l.idle)) / float64(dt)
		}
		l.idle, l.total = idle, total
	}
	return round1(cpu), round1(readMem())
}

func round1(f float64) float64 { return float64(int(f*10+0.5)) / 10 }

// readCPU reads the aggregate "cpu" line of /proc/stat: idle (idle +
// iowait) and total jiffies.
func readCPU() (idle, total uint64, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := bytes.Cut(b, []byte{'\n'})
	f := bytes.Fields(line)
	if len(f) < 5 || string(f[0]) != "cpu" {
		return 0, 0, false
	}
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			return 0, 0, false
		}
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
		if i < 8 { // guest and guest_nice are counted in user already
			total += n
		}
	}
	return idle, total, true
}

// readMem is the share of memory not available, from /proc/meminfo.
func readMem() float64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	var total, avail uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := bytes.Cut(sc.Bytes(), []byte{':'})
		fs := bytes.Fields(v)
		if len(fs) == 0 {
			continue
		}
		n, _ := strconv.ParseUint(string(fs[0]), 10, 64)
		switch string(k) {
		case "MemTotal":
			total = n
		case "MemAvailable":
			avail = n
		}
	}
	if total == 0 || avail > total {
		return 0
	}
	return 100 * float64(total-avail) / float64(total)
}
