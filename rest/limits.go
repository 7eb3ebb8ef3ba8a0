package rest

import (
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"
)

// Header limits. Go's HTTP server refuses a request whose header block
// is over its own MaxHeaderBytes (plus 4 KiB of buffering slack) before
// any handler runs, with a text/plain "431 Request Header Fields Too
// Large" that nothing can hook. So the server's limit is set high
// (ServerMaxHeaderBytes, what "leviathan serve" gives http.Server) and
// this package refuses far smaller headers first (MaxHeaderBytes), with
// the JSON 431 of every other error: only a header block over 1 MiB,
// which no real client sends, still meets Go's plain-text answer.
const (
	MaxHeaderBytes       = 64 << 10
	ServerMaxHeaderBytes = 1 << 20
)

// limitHeaders answers 431 to a request whose request line and headers
// are over n bytes, counted as they were on the wire.
func limitHeaders(n int) gin.HandlerFunc {
	return func(c *gin.Context) {
		if size := headerSize(c.Request); size > n {
			writeError(c, http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("request line and headers over %d bytes", n), nil)
			return
		}
		c.Next()
	}
}

// headerSize is the size of a request's request line and header block as
// sent ("Name: value\r\n" per field).
func headerSize(r *http.Request) int {
	n := len(r.Method) + 1 + len(r.RequestURI) + 1 + len(r.Proto) + 2
	if r.Host != "" {
		n += len("Host: \r\n") + len(r.Host)
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	return n + 2
}
