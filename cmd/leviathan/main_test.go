package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
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

	"github.com/coder/websocket"

	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/internal/ktest"
	"github.com/leviathan-net/leviathan/netfab"
)

// proc is the real binary serving on a unix socket.
type proc struct {
	t      *testing.T
	bin    string
	args   []string
	sock   string
	cmd    *exec.Cmd
	client *http.Client
	log    *syncBuffer
	prefix string // of the daemon's namespaces
}

func (d *proc) start() {
	d.t.Helper()
	d.log = &syncBuffer{}
	d.cmd = exec.Command(d.bin, append([]string{"serve"}, d.args...)...)
	d.cmd.Env = append(os.Environ(), "LEVIATHAN_AUTH=")
	d.cmd.Stderr = d.log
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if resp, err := d.client.Get("http://leviathan/v2/version"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("daemon not ready; its log:\n%s", d.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *proc) do(method, path, body string, out any) int {
	d.t.Helper()
	req, _ := http.NewRequest(method, "http://leviathan"+path, strings.NewReader(body))
	resp, err := d.client.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			d.t.Fatalf("%s %s: %s: %v", method, path, b, err)
		}
	}
	return resp.StatusCode
}

func TestDaemonSurvivesKill9(t *testing.T) {
	ktest.NeedRoot(t)
	dir := t.TempDir()
	bin := binary(t)
	prefix := ktest.Prefix(t)
	fabric := prefix + "fabric"
	sock := filepath.Join(dir, "api.sock")
	d := &proc{
		t:    t,
		bin:  bin,
		sock: sock,
		args: []string{"--listen", "127.0.0.1:0", "--socket", sock, "--state-dir", filepath.Join(dir, "state"),
			"--fabric-netns", fabric, "--netns-prefix", prefix},
		client: &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}},
	}
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			d.cmd.Process.Kill()
			d.cmd.Wait()
		}
	})
	d.start()
	file, err := os.ReadFile("../../examples/cen.json")
	if err != nil {
		t.Fatal(err)
	}
	if s := d.do("POST", "/cen/import", string(file), nil); s != 200 {
		t.Fatalf("import: %d", s)
	}
	if s := d.do("POST", "/cen/make", `["cen1","cen2","cen3","cen4","cen5"]`, nil); s != 200 {
		t.Fatalf("make: %d", s)
	}

	d.cmd.Process.Signal(syscall.SIGKILL)
	d.cmd.Wait()
	ktest.IP(t, "-n", fabric, "link", "del", "cen3") // damage while it is down

	d.start() // the stale socket file is replaced, the store reopened
	check := func() {
		t.Helper()
		var cens []core.CENView
		if s := d.do("GET", "/cen", "", &cens); s != 200 || len(cens) != 5 {
			t.Fatalf("GET /cen: %d %+v", s, cens)
		}
		var want []ktest.CEN
		for _, c := range cens {
			if c.State != "configured" {
				t.Errorf("%s: state %q after restart", c.ID, c.State)
			}
			k := ktest.CEN{IfName: c.IfName, Made: true}
			for _, m := range c.Members {
				k.Members = append(k.Members, netfab.NetnsPath(prefix+m))
			}
			want = append(want, k)
		}
		ktest.CheckKernel(t, netfab.NetnsPath(fabric), want)
	}
	check()

	// SIGTERM stops it cleanly: exit 0, socket removed, kernel state kept.
	d.cmd.Process.Signal(syscall.SIGTERM)
	if err := d.cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, d.log)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
	d.start()
	check()
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.cmd.Wait()
}

func TestServeFlagErrors(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open")
	os.WriteFile(open, []byte("admin:s3cret\n"), 0o644)
	noColon := filepath.Join(dir, "nocolon")
	os.WriteFile(noColon, []byte("admin\n"), 0o600)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"tls cert alone", []string{"--tls-cert", "x"}, "--tls-cert and --tls-key go together"},
		{"auth without colon", []string{"--auth", "nocolon"}, "--auth wants USER:PASSWORD"},
		{"log level", []string{"--log-level", "loud"}, "--log-level"},
		{"extra argument", []string{"extra"}, "unknown command"},
		{"bad host ID", []string{"--host-id", "-bad", "--state-dir", dir}, "--host-id"},
		{"auth file others can read", []string{"--auth-file", open}, "mode 0644 lets other users read the password; chmod 600 it"},
		{"auth file without colon", []string{"--auth-file", noColon}, "want a USER:PASSWORD line"},
		{"auth and auth file", []string{"--auth", "a:b", "--auth-file", noColon}, "none of the others can be"},
		{"all addresses without auth", []string{"--listen", ":0", "--socket", ""}, "refusing to serve :0 without auth"},
		{"nothing to serve on", []string{"--listen", "", "--socket", ""}, "--listen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("LEVIATHAN_AUTH", "")
			cmd := newRoot(streams{in: strings.NewReader(""), out: io.Discard, err: io.Discard})
			cmd.SetArgs(append([]string{"serve"}, tc.args...))
			err := cmd.ExecuteContext(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("serve %q: %v, want an error with %q", tc.args, err, tc.want)
			}
		})
	}
}

// TestServeRefusesCINPool checks that --cin-pool takes only unicast IPv4
// networks, refused before anything is opened.
func TestServeRefusesCINPool(t *testing.T) {
	for _, pool := range []string{"0.0.0.0/0", "127.0.0.0/8", "224.0.0.0/4", "169.254.0.0/16", "240.0.0.0/4", "10.0.0.1/8", "fd00::/8"} {
		t.Run(pool, func(t *testing.T) {
			t.Setenv("LEVIATHAN_AUTH", "")
			cmd := newRoot(streams{in: strings.NewReader(""), out: io.Discard, err: io.Discard})
			cmd.SetArgs([]string{"serve", "--cin-pool", pool, "--state-dir", t.TempDir(), "--fabric-netns", "-", "--socket", "", "--listen", "127.0.0.1:0"})
			err := cmd.ExecuteContext(context.Background())
			if err == nil || !strings.Contains(err.Error(), "pool") {
				t.Fatalf("serve --cin-pool %s: %v, want an error about the pool", pool, err)
			}
		})
	}
}

// selfSigned writes a certificate and key for 127.0.0.1 and returns their
// paths and a pool trusting the certificate.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "leviathan test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestServeTLSWithAuth(t *testing.T) {
	ktest.NeedRoot(t)
	dir := t.TempDir()
	bin := binary(t)
	certFile, keyFile, pool := selfSigned(t, dir)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	prefix := ktest.Prefix(t)
	cmd := exec.Command(bin, "serve", "--listen", addr, "--state-dir", filepath.Join(dir, "state"),
		"--fabric-netns", prefix+"fabric", "--netns-prefix", prefix,
		"--socket", "", "--tls-cert", certFile, "--tls-key", keyFile, "--auth", "admin:s3cret")
	var log strings.Builder
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("exit: %v\n%s", err, log.String())
		}
	}()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(user, pass string) int {
		req, _ := http.NewRequest("GET", "https://"+addr+"/v2/version", nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return -1
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(20 * time.Second)
	for get("admin", "s3cret") != 200 {
		if time.Now().After(deadline) {
			t.Fatalf("not serving HTTPS with auth; log:\n%s", log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s := get("", ""); s != 401 {
		t.Errorf("no credentials over HTTPS: %d, want 401", s)
	}
	if s := get("admin", "nope"); s != 401 {
		t.Errorf("wrong password: %d, want 401", s)
	}
	// The client trusts the certificate with --tls-ca, and says why not
	// without it.
	cli := func(args ...string) (string, error) {
		c := exec.Command(bin, append([]string{"--server", "https://" + addr}, args...)...)
		c.Env = append(os.Environ(), "LEVIATHAN_AUTH=")
		out, err := c.CombinedOutput()
		return string(out), err
	}
	for _, tc := range []struct {
		args []string
		want string
		ok   bool
	}{
		{[]string{"--tls-ca", certFile, "--auth", "admin:s3cret", "cen", "list"}, "CEN  STATE", true},
		{[]string{"cen", "list", "--tls-ca", certFile, "--auth", "admin:nope"}, "authentication failed: wrong user or password", false},
		{[]string{"--auth", "admin:s3cret", "cen", "list"}, "certificate", false},
	} {
		out, err := cli(tc.args...)
		if (err == nil) != tc.ok || !strings.Contains(out, tc.want) {
			t.Errorf("leviathan %q: %v\n%s\nwant %q", tc.args, err, out, tc.want)
		}
	}
	// Plain HTTP on the TLS port is refused.
	if resp, err := http.Get("http://" + addr + "/v2/version"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP served on the TLS listener")
		}
	}
}

// syncBuffer is the daemon's stderr, written by its copying goroutine
// while a test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServeRefusesCorruptStore runs the real binary on a store file full
// of garbage: it exits 1 with a message naming the file, no panic.
func TestServeRefusesCorruptStore(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "leviathan")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	for _, off := range []int64{0, int64(2 * os.Getpagesize())} {
		t.Run(fmt.Sprint("garbage at ", off), func(t *testing.T) {
			state := t.TempDir()
			// A store with data on the pages past the meta pages, then
			// damaged (garbage on free pages alone would be harmless).
			s, err := graph.OpenBolt(state)
			if err != nil {
				t.Fatal(err)
			}
			err = s.Update(func(tx graph.Tx) error {
				for i := range 500 {
					if err := tx.Put(graph.Buckets[0], fmt.Sprint("k", i), []byte(strings.Repeat("v", 100))); err != nil {
						return err
					}
				}
				return nil
			})
			s.Close()
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(state, graph.StoreFile)
			f, err := os.OpenFile(file, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			garbage := make([]byte, 8192)
			rand.Read(garbage)
			f.WriteAt(garbage, off)
			f.Close()

			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "serve", "--listen", "127.0.0.1:0", "--state-dir", state,
				"--fabric-netns", "lvtest-never-made", "--docker=false")
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err = cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("exit: %v, want status 1\n%s", err, stderr.String())
			}
			out := stderr.String()
			want := "leviathan: store " + file + " is corrupt"
			if !strings.Contains(out, want) || !strings.Contains(out, "move it away to start empty, or restore it from a copy") {
				t.Errorf("stderr does not say %q and what to do:\n%s", want, out)
			}
			if strings.Contains(out, "goroutine ") {
				t.Errorf("stderr has a stack trace:\n%s", out)
			}
			if _, err := os.Stat("/run/netns/lvtest-never-made"); err == nil {
				netfab.DeleteNetns("/run/netns/lvtest-never-made")
				t.Error("the fabric namespace was made before the store was checked")
			}
		})
	}
}

// TestShutdownDuringMake sends SIGTERM while a make runs and a monitor
// websocket is open: the make's request is answered (done, or cut short
// and rolled back), the websocket is closed with 1001, the daemon exits
// 0, and after a restart the kernel holds what the store says.
func TestShutdownDuringMake(t *testing.T) {
	ktest.NeedRoot(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "leviathan")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	prefix := ktest.Prefix(t)
	fabric := prefix + "fabric"
	t.Cleanup(func() { netfab.DeleteNetns(netfab.NetnsPath(fabric)) })
	sock := filepath.Join(dir, "api.sock")
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}
	d := &proc{
		t:    t,
		bin:  bin,
		sock: sock,
		args: []string{"--listen", "127.0.0.1:0", "--socket", sock, "--state-dir", filepath.Join(dir, "state"),
			"--fabric-netns", fabric, "--netns-prefix", prefix, "--docker=false"},
		client: &http.Client{Transport: &http.Transport{DialContext: dial}},
	}
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			d.cmd.Process.Kill()
			d.cmd.Wait()
		}
	})
	d.start()
	var file strings.Builder
	var ids []string
	file.WriteString(`{"cenList":[`)
	for i := range 20 {
		if i > 0 {
			file.WriteString(",")
		}
		id := fmt.Sprint("s", i)
		ids = append(ids, `"`+id+`"`)
		fmt.Fprintf(&file, `{"cenID":%q,"containerIDs":["%s-a","%s-b","%s-c","%s-d"]}`, id, id, id, id, id)
	}
	file.WriteString("]}")
	if s := d.do("POST", "/cen/import", file.String(), nil); s != 200 {
		t.Fatalf("import: %d", s)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://leviathan/leviathan/monitor", &websocket.DialOptions{HTTPClient: d.client})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()

	type answer struct {
		status int
		body   string
		err    error
	}
	made := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "POST", "http://leviathan/cen/make", strings.NewReader("["+strings.Join(ids, ",")+"]"))
		resp, err := d.client.Do(req)
		if err != nil {
			made <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		made <- answer{status: resp.StatusCode, body: string(b)}
	}()
	time.Sleep(50 * time.Millisecond)
	d.cmd.Process.Signal(syscall.SIGTERM)

	_, _, err = ws.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusGoingAway || !strings.Contains(err.Error(), "server shutting down") {
		t.Errorf("monitor: %v, want close status 1001 \"server shutting down\"", err)
	}
	a := <-made
	switch {
	case a.err != nil:
		t.Errorf("make: %v, want an answer", a.err)
	case a.status != 200 && a.status != 503:
		t.Errorf("make: %d %s, want 200 (done) or 503 (cut short)", a.status, a.body)
	case !json.Valid([]byte(a.body)):
		t.Errorf("make: %d %q, want JSON", a.status, a.body)
	}
	t.Logf("make during shutdown: %d", a.status)
	if err := d.cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, d.log)
	}

	// Restarted, the kernel holds what the store says.
	d.start()
	var cens []core.CENView
	if s := d.do("GET", "/cen", "", &cens); s != 200 || len(cens) != 20 {
		t.Fatalf("GET /cen: %d, %d CENs", s, len(cens))
	}
	var want []ktest.CEN
	for _, c := range cens {
		k := ktest.CEN{IfName: c.IfName, Made: c.State == "configured" || c.State == "unconfigured"}
		for _, m := range c.Members {
			k.Members = append(k.Members, netfab.NetnsPath(prefix+m))
		}
		want = append(want, k)
	}
	ktest.CheckKernel(t, netfab.NetnsPath(fabric), want)
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.cmd.Wait()
}
