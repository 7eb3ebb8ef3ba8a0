package rest

import (
	"fmt"
	"io/fs"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/netfab"
	"github.com/leviathan-net/leviathan/ui"
)

// MaxCaptureCount is the largest ?count a capture takes.
const MaxCaptureCount = 100_000_000

// labToolRoutes registers the lab tools: live captures, the topology and
// the web view.
func (s *Server) labToolRoutes() {
	s.raw(http.MethodGet, "/host/:hostId/:containerId/:cenId/pcap", s.pcap)
	s.handle(http.MethodGet, "/host/:hostId/:containerId/:cenId/link", s.getLink)
	s.handle(http.MethodPut, "/host/:hostId/:containerId/:cenId/link", s.putLink)
	s.handle(http.MethodDelete, "/host/:hostId/:containerId/:cenId/link", s.deleteLink)
	s.raw(http.MethodGet, "/topology", s.topology)
	s.raw(http.MethodGet, "/ui", s.uiFile)
	s.raw(http.MethodGet, "/ui/:file", s.uiFile)
}

// raw registers a handler that writes its own answer, or returns an
// error for the adapter to map (before it has written anything).
func (s *Server) raw(method, path string, h func(c *gin.Context) error) {
	s.routes = append(s.routes, Route{method, path})
	s.engine.Handle(method, path, func(c *gin.Context) {
		if err := h(c); err != nil {
			s.writeErr(c, err)
		}
	})
}

// pcap streams a live capture of a member's link on a CEN.
func (s *Server) pcap(c *gin.Context) error {
	count := 0
	if q, ok := c.GetQuery("count"); ok {
		n, err := strconv.Atoi(q)
		if err != nil || n < 1 || n > MaxCaptureCount {
			return graph.Errorf(graph.ErrInvalid, "count: want a whole number of frames from 1 to %d, got %s", MaxCaptureCount, graph.Quote(q))
		}
		count = n
	}
	host, ctr, cenID := c.Param("hostId"), c.Param("containerId"), c.Param("cenId")
	sp, err := s.svc.CaptureTarget(c, host, ctr, cenID)
	if err != nil {
		return err
	}
	capt, err := netfab.OpenCapture(sp)
	if err != nil {
		return err
	}
	defer capt.Close()

	h := c.Writer.Header()
	h.Set("Content-Type", "application/vnd.tcpdump.pcap")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", ctr+"-"+cenID+".pcap"))
	c.Status(http.StatusOK)
	rc := http.NewResponseController(c.Writer)
	rc.SetWriteDeadline(time.Time{}) // a capture lasts as long as its client wants
	start := time.Now()
	st, err := capt.Stream(c.Request.Context(), c.Writer, netfab.StreamOptions{Count: count, Flush: rc.Flush})
	attrs := []any{"host", host, "container", ctr, "cen", cenID, "interface", sp.IfName, "netns", sp.Netns,
		"frames", st.Frames, "dropped", st.Dropped, "kernel_dropped", st.KernelDropped, "ring_full", st.RingFull, "took", time.Since(start)}
	switch {
	case err != nil:
		s.log.Error("capture ended", append(attrs, "err", err)...)
	case st.Dropped > 0 || st.KernelDropped > 0:
		s.log.Warn("capture ended with drops: its client did not keep up", attrs...)
	default:
		s.log.Info("capture ended", attrs...)
	}
	return nil
}

// topology serves the fabric as JSON, or rendered with ?format=dot or
// ?format=mermaid.
func (s *Server) topology(c *gin.Context) error {
	format := c.DefaultQuery("format", "json")
	t, err := s.svc.Topology(c)
	if err != nil {
		return err
	}
	switch format {
	case "json":
		c.JSON(http.StatusOK, t)
	case "dot":
		c.Data(http.StatusOK, "text/vnd.graphviz; charset=utf-8", []byte(t.DOT()))
	case "mermaid":
		c.Data(http.StatusOK, "text/plain; charset=utf-8", []byte(t.Mermaid()))
	default:
		return graph.Errorf(graph.ErrInvalid, "format: want json, dot or mermaid, got %s", graph.Quote(format))
	}
	return nil
}

// uiCSP keeps the page to the daemon: no script, style, image or
// connection elsewhere.
const uiCSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"

// uiFile serves the web view: the page at /ui, its files at /ui/{file}.
func (s *Server) uiFile(c *gin.Context) error {
	name := c.Param("file")
	if name == "" {
		name = ui.Index
	}
	b, err := fs.ReadFile(ui.Files(), name)
	if err != nil {
		return graph.Errorf(graph.ErrNotFound, "no file %s in the web view", graph.Quote(name))
	}
	h := c.Writer.Header()
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", uiCSP)
	c.Data(http.StatusOK, ui.ContentType(name), b)
	return nil
}
