package rest

import (
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/leviathan-net/leviathan/graph"
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

// jsonBody serves a route whose body is JSON: a request that says its
// body is something else gets 415. No Content-Type is fine, and so is
// curl's default for -d, application/x-www-form-urlencoded, which the
// leviathan README's examples send; application/json may carry
// parameters, but a charset other than UTF-8 (the only one JSON has) is
// refused too.
func jsonBody(h handler) handler {
	return func(c *gin.Context) (int, any, error) {
		if err := checkJSONType(c.Request.Header.Get("Content-Type")); err != nil {
			return 0, nil, err
		}
		return h(c)
	}
}

func checkJSONType(ct string) error {
	if strings.TrimSpace(ct) == "" {
		return nil
	}
	mt, params, err := mime.ParseMediaType(ct)
	switch {
	case err != nil:
		return &unsupportedType{ct}
	case mt == "application/x-www-form-urlencoded":
		return nil
	case mt != "application/json" && !(strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")):
		return &unsupportedType{ct}
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return &unsupportedType{ct}
	}
	return nil
}

// unsupportedType is a request body of a media type the route does not
// take (415).
type unsupportedType struct{ contentType string }

func (e *unsupportedType) Error() string {
	return fmt.Sprintf("Content-Type %s: this route takes JSON (application/json, UTF-8)", graph.Quote(e.contentType))
}
