package monitor

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"strings"
)

// jsonRefusal lets the websocket library refuse a handshake (426 for a
// request that is not one, 405 for a method other than GET, 400 for a
// malformed one, 403 for a browser page of another origin) while the
// answer is the API's JSON error, not the library's plain text: it holds
// back an error status and its body, and finish writes them as
// {"status","message"}. A handshake that succeeds passes through
// untouched, hijack included.
type jsonRefusal struct {
	http.ResponseWriter
	status int // an error status held back; 0 until then
	msg    bytes.Buffer
}

func (w *jsonRefusal) WriteHeader(code int) {
	if code >= 400 {
		w.status = code
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *jsonRefusal) Write(b []byte) (int, error) {
	if w.status != 0 {
		return w.msg.Write(b)
	}
	return w.ResponseWriter.Write(b)
}

// WriteHeaderNow passes on the call the library makes on gin's writer,
// which otherwise holds the 101 back until the first write.
func (w *jsonRefusal) WriteHeaderNow() {
	if f, ok := w.ResponseWriter.(interface{ WriteHeaderNow() }); ok {
		f.WriteHeaderNow()
	}
}

func (w *jsonRefusal) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *jsonRefusal) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// finish writes the refusal held back, if any.
func (w *jsonRefusal) finish() {
	if w.status == 0 {
		return
	}
	writeJSONError(w.ResponseWriter, w.status, strings.TrimSpace(w.msg.String()))
}

// writeJSONError answers an HTTP error as the rest of the API does.
func writeJSONError(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Status  int    `json:"status"`
		Message string `json:"message"`
	}{status, msg})
}
