package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"text/tabwriter"
)

// api is the client's connection to one daemon.
type api struct {
	hc    *http.Client
	base  string // URL the paths are joined to
	where string // the daemon, as messages name it
	user  string
	pass  string
	auth  bool // credentials are sent
	json  bool // -o json
	out   io.Writer
}

// apiError is an answer of the API outside 2xx.
type apiError struct {
	Status  int
	Message string
}

func (e *apiError) Error() string { return e.Message }

// connect reads the global flags into an api.
func (c *cli) connect() (*api, error) {
	a := &api{out: c.out}
	switch c.output {
	case "table":
	case "json":
		a.json = true
	default:
		return nil, fmt.Errorf("-o %q: want table or json", c.output)
	}
	auth := c.auth
	if c.authFile != "" {
		var err error
		if auth, err = readAuthFile(c.authFile); err != nil {
			return nil, err
		}
	} else if auth == "" {
		auth = os.Getenv("LEVIATHAN_AUTH")
	}
	if auth != "" {
		var ok bool
		if a.user, a.pass, ok = strings.Cut(auth, ":"); !ok {
			return nil, errors.New("--auth wants USER:PASSWORD")
		}
		a.auth = true
	}
	socket, server := c.socket, c.server
	if socket == "" && server == "" {
		if fi, err := os.Stat(defaultSocket); err == nil && fi.Mode()&os.ModeSocket != 0 {
			socket = defaultSocket
		} else {
			server = "http://127.0.0.1:8080"
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if socket != "" {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		}
		a.base, a.where = "http://leviathan", "unix:"+socket
	} else {
		u, err := url.Parse(server)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("--server %q: want http://HOST:PORT or https://HOST:PORT", server)
		}
		a.base, a.where = strings.TrimRight(server, "/"), server
	}
	if c.tlsCA != "" {
		pem, err := os.ReadFile(c.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificate in it", c.tlsCA)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	a.hc = &http.Client{Transport: tr}
	return a, nil
}

// send sends one request and returns the response, or an error when the
// daemon cannot be reached.
func (a *api) send(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.auth {
		req.SetBasicAuth(a.user, a.pass)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, a.unreachable(err)
	}
	return resp, nil
}

// unreachable says why the daemon could not be reached.
func (a *api) unreachable(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	hint := ""
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		hint = " (is \"leviathan serve\" running?)"
	case errors.Is(err, syscall.EACCES):
		hint = " (the socket is root's: run as root, or use --server)"
	}
	return fmt.Errorf("cannot reach leviathan at %s: %w%s", a.where, err, hint)
}

// call sends one request and returns the body of a 2xx answer; any
// other answer is an *apiError with the API's message.
func (a *api) call(ctx context.Context, method, path string, body io.Reader) ([]byte, error) {
	resp, err := a.send(ctx, method, path, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, a.errorOf(resp.StatusCode, b)
	}
	return b, nil
}

// errorOf makes an error of a non-2xx answer: the API's message, or
// what the status says.
func (a *api) errorOf(status int, body []byte) error {
	if status == http.StatusUnauthorized {
		if a.auth {
			return &apiError{status, "authentication failed: wrong user or password"}
		}
		return &apiError{status, "authentication required: give --auth USER:PASSWORD, --auth-file FILE or $LEVIATHAN_AUTH"}
	}
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &e) == nil && e.Message != "" {
		return &apiError{status, e.Message}
	}
	msg := http.StatusText(status)
	if s := strings.TrimSpace(string(body)); s != "" && len(s) < 200 {
		msg += ": " + s
	}
	return &apiError{status, msg}
}

// get calls and decodes the answer into v; it returns the raw answer too.
func (a *api) get(ctx context.Context, path string, v any) ([]byte, error) {
	b, err := a.call(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			return nil, fmt.Errorf("GET %s: %w", path, err)
		}
	}
	return b, nil
}

// show prints an answer: the API's JSON as it came with -o json, else
// the table that table writes.
func (a *api) show(raw []byte, table func(w io.Writer) error) error {
	if a.json {
		if len(bytes.TrimSpace(raw)) == 0 {
			return nil
		}
		raw = bytes.TrimRight(raw, "\n")
		_, err := fmt.Fprintf(a.out, "%s\n", raw)
		return err
	}
	if table == nil {
		return nil
	}
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	if err := table(tw); err != nil {
		return err
	}
	return tw.Flush()
}

// showAs decodes raw into a T and prints it with table.
func showAs[T any](a *api, raw []byte, table func(io.Writer, T)) error {
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("unexpected answer %.200q: %w", raw, err)
	}
	return a.show(raw, func(w io.Writer) error { table(w, v); return nil })
}

// jsonBody encodes v as a request body.
func jsonBody(v any) io.Reader {
	b, _ := json.Marshal(v)
	return bytes.NewReader(b)
}

// fileBody opens a body given as FILE, or - for standard input.
func (c *cli) fileBody(name string) (io.ReadCloser, error) {
	if name == "-" {
		return io.NopCloser(c.in), nil
	}
	return os.Open(name)
}
