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

	"github.com/leviathan-net/leviathan/core"
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
			if c.State != "made" {
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
