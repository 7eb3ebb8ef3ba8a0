package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
)

// client sends one request to a running daemon and prints the answer:
//
//	leviathan client [--server URL | --socket PATH] METHOD PATH [BODY | @FILE]
func client(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	server := fs.String("server", "http://127.0.0.1:8080", "the daemon's URL")
	socket := fs.String("socket", "", "reach the daemon on this unix socket instead")
	auth := fs.String("auth", os.Getenv("LEVIATHAN_AUTH"), "USER:PASSWORD for basic auth (or $LEVIATHAN_AUTH)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: leviathan client [flags] METHOD PATH [BODY | @FILE]\n\nexample: leviathan client POST /cen/make '[\"cen1\"]'")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() < 2 || fs.NArg() > 3 {
		fs.Usage()
		return errors.New("client: want METHOD PATH [BODY]")
	}
	method, path := strings.ToUpper(fs.Arg(0)), fs.Arg(1)
	var body io.Reader
	if fs.NArg() == 3 {
		b := fs.Arg(2)
		if strings.HasPrefix(b, "@") {
			f, err := os.Open(b[1:])
			if err != nil {
				return err
			}
			defer f.Close()
			body = f
		} else {
			body = strings.NewReader(b)
		}
	}
	hc := http.DefaultClient
	base := strings.TrimRight(*server, "/")
	if *socket != "" {
		sock := *socket
		hc = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
		base = "http://leviathan"
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if u, p, ok := strings.Cut(*auth, ":"); ok {
		req.SetBasicAuth(u, p)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(out, resp.Body); err != nil {
		return err
	}
	fmt.Fprintln(out)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return nil
}
