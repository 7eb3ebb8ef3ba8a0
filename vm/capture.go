package vm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/netfab"
)

// A capture of a GNS3 port (start_capture) records what the port's relay
// carries, both ways, into a pcap file in the project's captures
// directory: a NIO is a UDP socket, with no kernel interface to capture
// on, and the relay sees every frame of the link. GET .../pcap streams
// that file while it grows.

// CaptureSpec is the body of POST .../start_capture.
type CaptureSpec struct {
	FileName     string `json:"capture_file_name"`
	DataLinkType string `json:"data_link_type"`
}

// CaptureView is the answer of start_capture.
type CaptureView struct {
	Path string `json:"pcap_file_path"`
}

// capture is a port's capture under way.
type capture struct {
	path string
	f    *os.File
	tap  *netfab.RelayTap
	done chan struct{} // closed when the capture stops
}

func captureKey(nodeID string, adapter, port int) string {
	return fmt.Sprintf("%s/%d/%d", nodeID, adapter, port)
}

// portRelay finds the relay of a node's port: a VPCS's own relay, or a
// switch port's link (which needs a NIO).
func (m *Manager) portRelay(ctx context.Context, pid, nodeID string, adapter, port int) (*netfab.Relay, error) {
	if sw := m.switchByID(nodeID); sw != nil && sw.project == pid {
		return m.switchPortRelay(ctx, sw, adapter, port)
	}
	if err := checkAdapter(adapter, port); err != nil {
		return nil, err
	}
	n, err := m.lockVM(ctx, pid, nodeID)
	if err != nil {
		return nil, err
	}
	defer unlock(n.lock)
	return n.relay, nil
}

// StartCapture starts recording a port's frames into the project's
// captures directory, under the file name given (its base name only).
func (m *Manager) StartCapture(ctx context.Context, pid, nodeID string, adapter, port int, spec CaptureSpec) (CaptureView, error) {
	if spec.DataLinkType != "" && spec.DataLinkType != "DLT_EN10MB" {
		return CaptureView{}, graph.Errorf(graph.ErrInvalid, "data_link_type %q: only DLT_EN10MB (Ethernet)", spec.DataLinkType)
	}
	name := filepath.Base(spec.FileName)
	if spec.FileName == "" || name == "." || name == ".." || name == "/" || strings.HasPrefix(name, ".") {
		return CaptureView{}, graph.Errorf(graph.ErrInvalid, "capture_file_name %q: want a file name", spec.FileName)
	}
	r, err := m.portRelay(ctx, pid, nodeID, adapter, port)
	if err != nil {
		return CaptureView{}, err
	}
	key := captureKey(nodeID, adapter, port)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.captures[key] != nil {
		return CaptureView{}, graph.Errorf(graph.ErrConflict, "adapter %d port %d of node %s is being captured already", adapter, port, nodeID)
	}
	dir := filepath.Join(m.projectDir(pid), "project-files", "captures")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return CaptureView{}, fmt.Errorf("captures directory: %w", err)
	}
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		return CaptureView{}, fmt.Errorf("capture file: %w", err)
	}
	tap, err := r.TapOff(f, 0)
	if err != nil {
		f.Close()
		if errors.Is(err, netfab.ErrTapped) {
			return CaptureView{}, graph.Errorf(graph.ErrConflict, "node %s port %d: %w", nodeID, port, err)
		}
		return CaptureView{}, err
	}
	if m.captures == nil {
		m.captures = map[string]*capture{}
	}
	m.captures[key] = &capture{path: path, f: f, tap: tap, done: make(chan struct{})}
	return CaptureView{Path: path}, nil
}

// StopCapture stops a port's capture; the file stays.
func (m *Manager) StopCapture(ctx context.Context, pid, nodeID string, adapter, port int) error {
	if _, err := m.portRelay(ctx, pid, nodeID, adapter, port); err != nil && !errors.Is(err, errNoLink) {
		return err
	}
	m.mu.Lock()
	c := m.captures[captureKey(nodeID, adapter, port)]
	delete(m.captures, captureKey(nodeID, adapter, port))
	m.mu.Unlock()
	if c == nil {
		return graph.Errorf(graph.ErrConflict, "adapter %d port %d of node %s is not being captured", adapter, port, nodeID)
	}
	return c.stop()
}

func (c *capture) stop() error {
	_, err := c.tap.Close()
	if cerr := c.f.Close(); err == nil {
		err = cerr
	}
	close(c.done)
	return err
}

// stopCapturesOf stops the captures of a node's ports (it goes), or of
// one port (key is a captureKey).
func (m *Manager) stopCapturesOf(key string) {
	m.mu.Lock()
	var cs []*capture
	for k, c := range m.captures {
		if k == key || strings.HasPrefix(k, key+"/") {
			cs = append(cs, c)
			delete(m.captures, k)
		}
	}
	m.mu.Unlock()
	for _, c := range cs {
		if err := c.stop(); err != nil {
			m.log.Warn("capture", "port", key, "err", err)
		}
	}
}

// CaptureRunning says, as ErrNotFound, when a port is not being captured.
func (m *Manager) CaptureRunning(pid, nodeID string, adapter, port int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.captures[captureKey(nodeID, adapter, port)] == nil {
		return graph.Errorf(graph.ErrNotFound, "adapter %d port %d of node %s is not being captured", adapter, port, nodeID)
	}
	return nil
}

// captureFollow is how often a streamed capture looks for more frames.
const captureFollow = 50 * time.Millisecond

// StreamCapture writes a port's capture file to w as it grows, until the
// capture stops and w has all of it, or ctx ends. flush, when set, runs
// after each write.
func (m *Manager) StreamCapture(ctx context.Context, pid, nodeID string, adapter, port int, w io.Writer, flush func()) error {
	m.mu.Lock()
	c := m.captures[captureKey(nodeID, adapter, port)]
	m.mu.Unlock()
	if c == nil {
		return graph.Errorf(graph.ErrNotFound, "adapter %d port %d of node %s is not being captured", adapter, port, nodeID)
	}
	f, err := os.Open(c.path)
	if err != nil {
		return fmt.Errorf("capture file: %w", err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	t := time.NewTicker(captureFollow)
	defer t.Stop()
	for {
		stopped := false
		select {
		case <-c.done:
			stopped = true
		default:
		}
		for {
			n, err := f.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return nil // the client went away
				}
				if flush != nil {
					flush()
				}
			}
			if err != nil {
				break
			}
		}
		if stopped {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.done:
		case <-t.C:
		}
	}
}
