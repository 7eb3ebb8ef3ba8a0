// Package rest is leviathan's HTTP frontend: gin routers for the leviathan
// API, the GNS3-style API, the GNS3 2.2 compute API, the lab tools, export
// and import, operation logs and metrics; request decoding, and the one
// adapter that maps errors to a status and {"status","message"}. Handlers
// only decode, call core, and encode.
//
// Threading: a Server is safe for concurrent use; gin runs each request on
// its own goroutine and core serializes what must be.
package rest

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/cpool"
	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/internal/metrics"
	"github.com/leviathan-net/leviathan/monitor"
	"github.com/leviathan-net/leviathan/vm"
)

// Version is leviathan's version, as GET /v2/version reports it.
const Version = "0.1.0"

// DefaultMaxBody caps request bodies.
const DefaultMaxBody = 8 << 20

// Options configure a Server.
type Options struct {
	// Auth is "user:password" for HTTP basic auth on every route; empty
	// disables it. Requests on a connection marked by TrustConn skip it.
	Auth string
	// MaxBody caps request bodies (DefaultMaxBody when 0).
	MaxBody int64
	// MonitorPing is how often idle monitor and notification streams
	// are pinged (monitor's default when 0); MonitorQueue bounds each
	// client's undelivered events (monitor's default when 0).
	MonitorPing  time.Duration
	MonitorQueue int
	// Pools serves /cpool (nil: those routes answer 503).
	Pools *cpool.Manager
	// VMs serves the GNS3-style API; without it those routes answer 503.
	VMs *vm.Manager
	// GNS3Version is the version GET /v2/compute/capabilities reports
	// (DefaultGNS3Version when empty).
	GNS3Version string
	// Stale, when set, says whether the store's reads are served from a
	// copy because the store does not answer (graph.Mirror.Stale): the
	// answer then carries a Warning header saying so.
	Stale func() (stale bool, rev int64, since time.Time)
	// Metrics serves /metrics (the server's own when nil): the same one
	// core and the fabric record into (core.Options.Metrics,
	// Metrics.Fabric).
	Metrics *metrics.Metrics
	Log     *slog.Logger
}

// Server serves the API.
type Server struct {
	svc *core.Service
	log *slog.Logger
	// opCtx bounds changes and background jobs: they run under the
	// server's lifetime, not the request's, so a client that goes away
	// does not cut kernel work short.
	opCtx  context.Context
	engine *gin.Engine
	routes []Route
	mon    *monitor.Server
	pools  *cpool.Manager
	vmm    *vm.Manager
	// gns3Version is what the GNS3 2.2 compute API reports.
	gns3Version string
	// inflight tracks requests being served, for Close (lifecycle.go).
	inflight inflight
	stale    func() (bool, int64, time.Time)
}

// Route is one registered method and path (in gin's :param form).
type Route struct{ Method, Path string }

func init() { gin.SetMode(gin.ReleaseMode) }

// New returns a Server. ctx bounds changes and background jobs: it should
// live as long as the server does.
func New(ctx context.Context, svc *core.Service, o Options) *Server {
	if o.MaxBody == 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.GNS3Version == "" {
		o.GNS3Version = DefaultGNS3Version
	}
	s := &Server{svc: svc, log: o.Log, opCtx: ctx, pools: o.Pools, vmm: o.VMs, gns3Version: o.GNS3Version, stale: o.Stale}
	e := gin.New()
	// No redirects and no path cleaning: a trailing slash or an encoded
	// '/' is never silently turned into another resource or ID.
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false
	e.RemoveExtraSlash = false
	e.UseRawPath = true
	e.UnescapePathValues = true
	e.HandleMethodNotAllowed = true
	e.ContextWithFallback = true
	e.Use(s.recoverer, s.logRequests, s.inflight.track)
	e.Use(limitHeaders(MaxHeaderBytes))
	if o.Auth != "" {
		e.Use(basicAuth(o.Auth))
	}
	e.Use(limitBody(o.MaxBody))
	e.NoRoute(func(c *gin.Context) {
		writeError(c, http.StatusNotFound, fmt.Sprintf("no route %s %s", graph.Clip(c.Request.Method), graph.Clip(c.Request.URL.Path)), nil)
	})
	e.NoMethod(func(c *gin.Context) {
		writeError(c, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s", graph.Clip(c.Request.Method), graph.Clip(c.Request.URL.Path)), nil)
	})
	s.engine = e
	s.mon = monitor.NewServer(svc.Bus(), svc, o.Log)
	if o.MonitorPing > 0 {
		s.mon.PingEvery = o.MonitorPing
	}
	if o.MonitorQueue > 0 {
		s.mon.QueueLen = o.MonitorQueue
	}
	s.leviathanRoutes()
	s.cpoolRoutes()
	s.exportRoutes()
	s.logRoutes()
	s.labToolRoutes()
	s.gns3Routes()
	s.computeRoutes()
	s.stream(http.MethodGet, "/leviathan/monitor", s.mon.ServeMonitor)
	s.stream(http.MethodGet, "/v2/notifications", s.mon.ServeNotifications)
	s.stream(http.MethodGet, "/v2/notifications/ws", s.mon.ServeNotificationsWS)
	s.metricsRoutes(o.Metrics)
	return s
}

// stream registers a long-lived handler (websocket or streaming), served
// as it is behind the same middleware (auth included).
func (s *Server) stream(method, path string, h http.HandlerFunc) {
	s.routes = append(s.routes, Route{method, path})
	s.engine.Handle(method, path, gin.WrapF(h))
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.engine.ServeHTTP(w, r) }

// Routes lists every registered route.
func (s *Server) Routes() []Route { return s.routes }

// handler is what route handlers are: they return a status and a body to
// encode, or an error for the adapter to map.
type handler func(c *gin.Context) (status int, body any, err error)

func (s *Server) handle(method, path string, h handler) {
	s.routes = append(s.routes, Route{method, path})
	s.engine.Handle(method, path, func(c *gin.Context) {
		status, body, err := h(c)
		s.warnStale(c)
		if err != nil {
			s.writeErr(c, err)
			return
		}
		if body == nil {
			c.Status(status)
			return
		}
		c.JSON(status, body)
	})
}

// warnStale marks an answer made from the store's last copy: etcd does
// not answer, so what it says may be out of date (RFC 7234's warning
// 110, "Response is Stale").
func (s *Server) warnStale(c *gin.Context) {
	if s.stale == nil {
		return
	}
	if stale, rev, since := s.stale(); stale {
		c.Header("Warning", fmt.Sprintf(`110 leviathan "Response is Stale: the store has not answered since %s; this is its state as of revision %d"`, since.UTC().Format(time.RFC3339), rev))
	}
}

// resultsError carries per-object results along with an error.
type resultsError struct {
	err     error
	results any
}

func (e *resultsError) Error() string { return e.err.Error() }
func (e *resultsError) Unwrap() error { return e.err }

// statusOf maps an error to its HTTP status.
func statusOf(err error) int {
	var mbe *http.MaxBytesError
	var ut *unsupportedType
	switch {
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge
	case errors.As(err, &ut):
		return http.StatusUnsupportedMediaType
	case errors.Is(err, graph.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, graph.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, graph.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, graph.ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func (s *Server) writeErr(c *gin.Context, err error) {
	status := statusOf(err)
	var results any
	var re *resultsError
	if errors.As(err, &re) {
		results = re.results
	}
	msg := err.Error()
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		msg = fmt.Sprintf("request body over %d bytes", mbe.Limit)
	}
	if status >= 500 {
		s.log.Error("request failed", "method", c.Request.Method, "path", c.Request.URL.Path, "err", err)
	}
	writeError(c, status, msg, results)
}

type errorBody struct {
	Status  int    `json:"status"`
	Message string `json:"message"`
	Results any    `json:"results,omitempty"`
}

func writeError(c *gin.Context, status int, msg string, results any) {
	c.AbortWithStatusJSON(status, errorBody{Status: status, Message: msg, Results: results})
}

func (s *Server) recoverer(c *gin.Context) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic serving request", "method", c.Request.Method, "path", c.Request.URL.Path, "panic", r, "stack", string(debug.Stack()))
			writeError(c, http.StatusInternalServerError, "internal error", nil)
		}
	}()
	c.Next()
}

func (s *Server) logRequests(c *gin.Context) {
	start := time.Now()
	c.Next()
	s.log.Debug("request", "method", c.Request.Method, "path", c.Request.URL.Path, "status", c.Writer.Status(), "took", time.Since(start))
}

func limitBody(n int64) gin.HandlerFunc {
	return func(c *gin.Context) {
		if c.Request.ContentLength > n {
			writeError(c, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", n), nil)
			return
		}
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, n)
		c.Next()
	}
}

// trustedKey marks a connection's context as one whose peer the
// operating system vouches for.
type trustedKey struct{}

// TrustConn marks ctx, the context of an accepted connection (an
// http.Server's ConnContext), as one whose peer the operating system
// already vouches for: the daemon's unix socket, which only root can
// open. Basic auth does not apply to requests on such a connection.
func TrustConn(ctx context.Context) context.Context {
	return context.WithValue(ctx, trustedKey{}, true)
}

// basicAuth answers 401, with a challenge and a JSON body, to any
// request on an untrusted connection without the right credentials:
// every route, websockets and unknown routes included.
func basicAuth(userPass string) gin.HandlerFunc {
	user, pass, _ := strings.Cut(userPass, ":")
	return func(c *gin.Context) {
		if trusted, _ := c.Request.Context().Value(trustedKey{}).(bool); trusted {
			c.Next()
			return
		}
		u, p, ok := c.Request.BasicAuth()
		okUser := subtle.ConstantTimeCompare([]byte(u), []byte(user)) == 1
		okPass := subtle.ConstantTimeCompare([]byte(p), []byte(pass)) == 1
		if !ok || !okUser || !okPass {
			c.Header("WWW-Authenticate", `Basic realm="leviathan"`)
			msg := "authentication required"
			if ok {
				msg = "authentication failed: wrong user or password"
			}
			writeError(c, http.StatusUnauthorized, msg, nil)
			return
		}
		c.Next()
	}
}
