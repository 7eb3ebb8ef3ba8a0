package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/leviathan-net/leviathan/core"

	"github.com/leviathan-net/leviathan/internal/ktest"
	"github.com/leviathan-net/leviathan/netfab"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// built is the binary under test, built once for every test that runs it.
var built struct {
	once sync.Once
	path string
	err  error
}

func binary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "leviathan-test-")
		if err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(dir, "leviathan")
		if out, err := exec.Command("go", "build", "-o", built.path, ".").CombinedOutput(); err != nil {
			built.err = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.path != "" {
		os.RemoveAll(filepath.Dir(built.path))
	}
	os.Exit(code)
}

// freeAddr returns a loopback TCP address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// newDaemon starts the real binary in throwaway namespaces, serving on a
// socket in a temp dir (and TCP as extra says), and stops it with
// SIGTERM at the end of the test.
func newDaemon(t *testing.T, extra ...string) *proc {
	t.Helper()
	ktest.NeedRoot(t)
	dir := t.TempDir()
	prefix := ktest.Prefix(t)
	sock := filepath.Join(dir, "api.sock")
	d := &proc{
		t:    t,
		bin:  binary(t),
		sock: sock,
		args: append([]string{"--socket", sock, "--state-dir", filepath.Join(dir, "state"),
			"--fabric-netns", prefix + "fabric", "--netns-prefix", prefix, "--docker=false"}, extra...),
		client: &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}},
		prefix: prefix,
	}
	t.Cleanup(func() {
		if d.cmd != nil && d.cmd.ProcessState == nil {
			d.cmd.Process.Signal(syscall.SIGTERM)
			d.cmd.Wait()
		}
		netfab.DeleteNetns(netfab.NetnsPath(prefix + "fabric"))
	})
	d.start()
	return d
}

// result is what one run of the client did.
type result struct {
	out, err string
	code     int
}

// run runs the client binary with args, on the daemon's socket unless
// args name a --server.
func (d *proc) run(stdin string, args ...string) result {
	d.t.Helper()
	if !strings.Contains(strings.Join(args, " "), "--server") {
		args = append(args, "--socket", d.sock) // global flags go after the verb too
	}
	cmd := exec.Command(d.bin, args...)
	cmd.Env = append(os.Environ(), "LEVIATHAN_AUTH=")
	cmd.Stdin = strings.NewReader(stdin)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	code := 0
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		d.t.Fatal(err)
	}
	return result{out.String(), stderr.String(), code}
}

// transcript is a client session as a person would see it, compared
// with a golden file.
type transcript struct {
	d       *proc
	b       strings.Builder
	replace *strings.Replacer
}

func (tr *transcript) step(stdin string, args ...string) result {
	tr.d.t.Helper()
	r := tr.d.run(stdin, args...)
	fmt.Fprintf(&tr.b, "$ leviathan %s\n%s", strings.Join(args, " "), r.out)
	for _, l := range strings.SplitAfter(r.err, "\n") {
		if l != "" {
			fmt.Fprintf(&tr.b, "stderr: %s", l)
		}
	}
	if r.code != 0 {
		fmt.Fprintf(&tr.b, "exit status %d\n", r.code)
	}
	tr.b.WriteString("\n")
	return r
}

func (tr *transcript) check(t *testing.T, golden string) {
	t.Helper()
	got := tr.replace.Replace(tr.b.String())
	path := filepath.Join("testdata", golden)
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("session differs from %s (-want +got):\n%s", path, diff)
	}
}

// TestCLISession runs a small session of the client against a real
// daemon on its socket, and compares what it prints, tables and JSON,
// errors included, with testdata/session.golden.
func TestCLISession(t *testing.T) {
	addr := freeAddr(t)
	dir := t.TempDir()
	authFile := filepath.Join(dir, "auth")
	os.WriteFile(authFile, []byte("admin:s3cret\n"), 0o600)
	d := newDaemon(t, "--listen", addr, "--auth-file", authFile)
	tr := &transcript{d: d, replace: strings.NewReplacer(d.prefix, "lvt-PREFIX-", addr, "127.0.0.1:PORT")}

	tr.step("", "cen", "import", "../../examples/cen.json")
	tr.step("", "cen", "make", "cen1", "cen4")
	tr.step("", "cen", "list")
	tr.step("", "cen", "get", "cen4")
	tr.step("", "-o", "json", "cen", "get", "cen4")
	tr.step("", "host", "join", "c9", "cen4")
	tr.step("", "host", "leave", "c9", "cen4")
	tr.step(`{"cin1": ["cen1"]}`, "cin", "import", "-")
	tr.step("", "cin", "make", "cin1")
	tr.step("", "cin", "get", "cin1")
	tr.step("", "cin", "get", "cin1", "-o", "json")
	tr.step("", "host", "get", "c1")
	tr.step("", "status")
	tr.step("", "status", "-o", "json")
	// Errors: the API's message on stderr, exit status 1.
	tr.step("", "cen", "get", "nosuch")
	tr.step("", "cen", "make", "cen1", "nosuch")
	tr.step("", "client", "GET", "/cen/nosuch")
	// TCP needs the password; the socket does not.
	tr.step("", "--server", "http://"+addr, "cen", "list")
	tr.step("", "--server", "http://"+addr, "--auth", "admin:nope", "cen", "list")
	tr.step("", "--server", "http://"+addr, "--auth", "admin:s3cret", "cin", "list")
	tr.step("", "cin", "destroy", "cin1")
	tr.step("", "cen", "destroy", "cen1", "cen4")
	tr.step("", "cin", "rm", "cin1")
	tr.step("", "cin", "list", "-o", "json")
	tr.check(t, "session.golden")

	t.Run("json is the API's", func(t *testing.T) {
		r := d.run("", "-o", "json", "cen", "list")
		var got []map[string]any
		if err := json.Unmarshal([]byte(r.out), &got); err != nil || len(got) != 5 {
			t.Fatalf("cen list -o json: %v %q", err, r.out)
		}
		var want []map[string]any
		if s := d.do("GET", "/cen", "", &want); s != 200 {
			t.Fatal(s)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Error(diff)
		}
	})

	t.Run("progress on a terminal", func(t *testing.T) {
		var out, stderr bytes.Buffer
		cmd := newRoot(streams{in: strings.NewReader(""), out: &out, err: &stderr, tty: true})
		cmd.SetArgs([]string{"--socket", d.sock, "cen", "make", "cen2", "cen3"})
		if err := cmd.ExecuteContext(context.Background()); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(stderr.String(), "cen/make cen2 cen3: done in ") {
			t.Errorf("stderr: %q", stderr.String())
		}
		want := "ID    STATE       ERROR\ncen2  configured  -\ncen3  configured  -\n"
		if out.String() != want {
			t.Errorf("stdout:\n%s\nwant:\n%s", out.String(), want)
		}
		cmd = newRoot(streams{in: strings.NewReader(""), out: &out, err: &stderr, tty: true})
		cmd.SetArgs([]string{"--socket", d.sock, "cen", "destroy", "cen2", "cen3"})
		if err := cmd.ExecuteContext(context.Background()); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("monitor", func(t *testing.T) {
		if s := d.do("POST", "/cin/make", `["cin2"]`, nil); s != 404 {
			t.Fatalf("make of an unknown CIN: %d", s)
		}
		d.run(`{"cin2": ["cen2"]}`, "cin", "import", "-")
		cmd := exec.Command(d.bin, "monitor", "cin2", "--socket", d.sock)
		pr, pw, _ := os.Pipe()
		cmd.Stdout = pw
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		pw.Close()
		lines := make(chan string, 16)
		go func() {
			buf := make([]byte, 1<<16)
			var acc string
			for {
				n, err := pr.Read(buf)
				acc += string(buf[:n])
				for {
					l, rest, ok := strings.Cut(acc, "\n")
					if !ok {
						break
					}
					lines <- l
					acc = rest
				}
				if err != nil {
					close(lines)
					return
				}
			}
		}()
		next := func() string {
			select {
			case l := <-lines:
				return l
			case <-time.After(10 * time.Second):
				t.Fatal("no line from monitor")
				return ""
			}
		}
		first := next()
		if !strings.HasPrefix(first, `{"type":"response"`) || !strings.Contains(first, `"state":[]`) {
			t.Errorf("first line: %s", first)
		}
		if s := d.do("POST", "/cen/make", `["cen2"]`, nil); s != 200 {
			t.Fatal(s)
		}
		if s := d.do("POST", "/cin/make", `["cin2"]`, nil); s != 200 {
			t.Fatal(s)
		}
		ev := next()
		var m struct {
			Type, Event string
			Message     []struct{ ContainerID, IPAddress string }
		}
		if err := json.Unmarshal([]byte(ev), &m); err != nil || m.Type != "event" || m.Event != "create" || len(m.Message) != 4 {
			t.Errorf("event: %s (%v)", ev, err)
		}
		cmd.Process.Signal(os.Interrupt) // the way to stop following
		if err := cmd.Wait(); err != nil {
			t.Errorf("monitor after an interrupt: %v", err)
		}
	})
}

// TestSocket: the socket's directory is created, the socket is root's
// alone, a second daemon on a live socket is refused before it touches
// anything, and the socket is gone after a clean stop.
func TestSocket(t *testing.T) {
	ktest.NeedRoot(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "leviathan", "leviathan.sock")
	d := newDaemon(t)
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.cmd.Wait()
	d.sock = sock
	d.args[1] = sock
	d.client = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	d.start()

	fi, err := os.Stat(filepath.Dir(sock))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("socket directory: %v %v, want mode 0755", fi.Mode(), err)
	}
	fi, err = os.Stat(sock)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket: %v %v, want a socket of mode 0600", fi.Mode(), err)
	}

	prefix := ktest.Prefix(t)
	second := exec.Command(d.bin, "serve", "--socket", sock, "--listen", freeAddr(t),
		"--state-dir", filepath.Join(dir, "state2"), "--fabric-netns", prefix+"fabric", "--netns-prefix", prefix, "--docker=false")
	out, err := second.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another leviathan is serving there") {
		t.Errorf("second daemon on a live socket: %v\n%s", err, out)
	}
	if _, err := os.Stat(netfab.NetnsPath(prefix + "fabric")); !os.IsNotExist(err) {
		t.Errorf("the refused daemon made its fabric namespace: %v", err)
	}
	if r := d.run("", "cen", "list"); r.code != 0 {
		t.Errorf("the first daemon after the refusal: %+v", r)
	}

	d.cmd.Process.Signal(syscall.SIGTERM)
	if err := d.cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, d.log)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
}

// TestNonLoopbackNeedsAuth: serving every address without auth is
// refused at start; --insecure lets it start, with a warning.
func TestNonLoopbackNeedsAuth(t *testing.T) {
	ktest.NeedRoot(t)
	bin := binary(t)
	prefix := ktest.Prefix(t)
	cmd := exec.Command(bin, "serve", "--listen", "0.0.0.0:0", "--socket", "", "--state-dir", t.TempDir(),
		"--fabric-netns", prefix+"fabric", "--netns-prefix", prefix, "--docker=false")
	cmd.Env = append(os.Environ(), "LEVIATHAN_AUTH=")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "refusing to serve 0.0.0.0:0 without auth") {
		t.Errorf("0.0.0.0:0 without auth: %v\n%s", err, out)
	}

	d := newDaemon(t, "--listen", "0.0.0.0:0", "--insecure")
	if !strings.Contains(d.log.String(), "serving without auth on a non-loopback address") {
		t.Errorf("no warning; log:\n%s", d.log)
	}
}

// leviathan export > fabric.json on one server, leviathan import
// fabric.json on an empty one: the same CENs, CINs and addresses.
func TestCLIExportImport(t *testing.T) {
	a := newDaemon(t, "--listen", freeAddr(t))
	for _, step := range [][]string{
		{"cen", "import", "-"},
		{"cin", "import", "-"},
		{"cen", "make", "e1"},
		{"cin", "make", "ei"},
	} {
		in := ""
		switch step[1] {
		case "import":
			in = map[string]string{"cen": `{"cenList":[{"cenID":"e1","containerIDs":["x1","x2","x3"]}]}`, "cin": `{"ei":["e1"]}`}[step[0]]
		}
		if r := a.run(in, step...); r.code != 0 {
			t.Fatalf("%v: %+v", step, r)
		}
	}
	exp := a.run("", "export")
	if exp.code != 0 || !strings.Contains(exp.out, `"format": "leviathan-export"`) {
		t.Fatalf("export: %+v", exp)
	}
	cin := a.run("", "cin", "get", "ei", "-o", "json")
	// The second server takes the first's namespaces' names: stop the
	// first and drop its kernel state, as a move to another machine would.
	a.run("", "cin", "destroy", "ei")
	a.run("", "cen", "destroy", "e1")
	for _, c := range []string{"x1", "x2", "x3"} {
		a.run("", "host", "rm", c)
	}
	b := newDaemon(t, "--listen", freeAddr(t))
	r := b.run(exp.out, "import", "-")
	if r.code != 0 || !strings.Contains(r.out, "1 CENs") {
		t.Fatalf("import: %+v", r)
	}
	if r := b.run("", "import", "-"); r.code != 1 || r.err == "" {
		t.Errorf("import of nothing: %+v", r)
	}
	if r := b.run(exp.out, "import", "-"); r.code != 1 || !strings.Contains(r.err, "empty") {
		t.Errorf("import into a server that is not empty: %+v", r)
	}
	b.run("", "cen", "make", "e1")
	b.run("", "cin", "make", "ei")
	got := b.run("", "cin", "get", "ei", "-o", "json")
	var before, after core.CINView
	if json.Unmarshal([]byte(cin.out), &before) != nil || json.Unmarshal([]byte(got.out), &after) != nil {
		t.Fatalf("cin get: %q, %q", cin.out, got.out)
	}
	if diff := cmp.Diff(before.Members, after.Members); diff != "" || after.Prefix != before.Prefix {
		t.Errorf("CIN after the move (-before +after):\n%s", diff)
	}
}
