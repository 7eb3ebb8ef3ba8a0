package rest

import (
	"net/http"
	"sync"

	"github.com/gin-gonic/gin"
)

// CloseStreams ends the monitor and notification streams: websockets
// close with status 1001 (going away), and new ones are refused (503).
// It returns when they have ended. Call it when shutdown begins
// (http.Server.RegisterOnShutdown): http.Server.Shutdown neither waits
// for nor closes a hijacked connection.
func (s *Server) CloseStreams() { s.mon.Close() }

// Close ends the streams, refuses new requests (503) and waits for the
// requests under way. Changes run under the context New was given:
// cancel it first to cut them short (they roll back, and their requests
// answer 503), or let them finish.
func (s *Server) Close() {
	s.CloseStreams()
	s.inflight.close()
}

// inflight counts the requests being served.
type inflight struct {
	mu     sync.Mutex // guards closed, and wg.Add against close's Wait
	closed bool
	wg     sync.WaitGroup
}

func (f *inflight) track(c *gin.Context) {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		writeError(c, http.StatusServiceUnavailable, "server shutting down", nil)
		return
	}
	f.wg.Add(1)
	f.mu.Unlock()
	defer f.wg.Done()
	c.Next()
}

func (f *inflight) close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.wg.Wait()
}
