package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/cpool"
	"github.com/leviathan-net/leviathan/cpool/dockerrt"
	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/internal/ktest"
	"github.com/leviathan-net/leviathan/internal/metrics"
	"github.com/leviathan-net/leviathan/netfab"
)

var update = flag.Bool("update", false, "rewrite golden files")

// env is a real leviathan server on a real fabric namespace, with its
// own throwaway namespaces.
type env struct {
	t      *testing.T
	prefix string // of every namespace this env creates
	dir    string // state dir
	// storeKey is the etcd prefix of the env's store (on etcd), kept
	// across restarts as the bbolt file in dir is.
	storeKey string
	fab      *netfab.Fabric
	store    graph.Store
	// stale is the Mirror's Stale on etcd, as the daemon passes it.
	stale func() (bool, int64, time.Time)
	svc   *core.Service
	srv   *httptest.Server
	opts  Options
	// eng, when set, makes Docker a runtime and serves CPools.
	eng   *dockerrt.Engine
	pools *cpool.Manager
	// metrics is wired as the daemon wires it: core's batches, the
	// kernel's calls, served at /metrics.
	metrics *metrics.Metrics
}

func newEnv(t *testing.T, o Options) *env {
	t.Helper()
	return newEnvWith(t, o, nil)
}

// newEnvWith is newEnv with Docker as a runtime when eng is not nil.
func newEnvWith(t *testing.T, o Options, eng *dockerrt.Engine) *env {
	t.Helper()
	ktest.NeedRoot(t)
	e := &env{t: t, prefix: ktest.Prefix(t), dir: t.TempDir(), opts: o, eng: eng}
	e.storeKey = storePrefix(t, e.prefix)
	e.start()
	t.Cleanup(func() {
		e.stop()
		netfab.DeleteNetns(netfab.NetnsPath(e.prefix + "fabric"))
	})
	return e
}

// start opens the store and fabric, reconciles and serves.
func (e *env) start() {
	t := e.t
	t.Helper()
	var err error
	e.store, e.stale = openStore(t, e.dir, e.storeKey)
	fabName := e.prefix + "fabric"
	if e.fab, err = netfab.OpenFabric(context.Background(), fabName); err != nil {
		t.Fatal(err)
	}
	var runtimes []core.Runtime
	if e.eng != nil {
		runtimes = append(runtimes, cpool.NewRuntime(e.eng))
	}
	runtimes = append(runtimes, &core.NetnsRuntime{Prefix: e.prefix, Fabric: fabName, NS: e.fab})
	e.metrics = metrics.New(nil)
	e.svc, err = core.New(core.Options{
		HostID:   "host1",
		Store:    e.store,
		Fabric:   e.metrics.Fabric(e.fab),
		Runtimes: runtimes,
		Metrics:  e.metrics,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	o := e.opts
	o.Metrics = e.metrics
	if e.stale != nil {
		o.Stale = e.stale
	}
	if e.eng != nil {
		e.pools = cpool.New(cpool.Options{Engine: e.eng, Service: e.svc, Store: e.store, Host: "host1", Resync: time.Second})
		e.pools.Start()
		o.Pools = e.pools
	}
	e.srv = httptest.NewServer(New(context.Background(), e.svc, o))
}

// stop drops the server without any orderly shutdown of leviathan's
// state, as a crash would (the store file is closed so it can reopen).
func (e *env) stop() {
	if e.srv == nil {
		return
	}
	e.srv.Close()
	if e.pools != nil {
		e.pools.Close()
		e.pools = nil
	}
	e.fab.Close()
	e.store.Close()
	e.srv = nil
}

// in returns the env for a subtest: failures end that subtest.
func (e *env) in(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

func (e *env) restart() {
	e.stop()
	e.start()
}

// wipeStore empties the store of a stopped env, as removing a state dir
// does: the bbolt file goes; on etcd, the env moves to a fresh prefix.
func (e *env) wipeStore() {
	e.t.Helper()
	if onEtcd() {
		e.storeKey += "-wiped"
		return
	}
	if err := os.Remove(filepath.Join(e.dir, graph.StoreFile)); err != nil {
		e.t.Fatal(err)
	}
}

// ns is the namespace path of a netns-runtime container.
func (e *env) ns(container string) string { return netfab.NetnsPath(e.prefix + container) }

// do sends a request and returns the status and body.
func (e *env) do(method, path, body string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// must sends a request that must answer want, and decodes the body into
// out when out is not nil.
func (e *env) must(want int, method, path, body string, out any) {
	e.t.Helper()
	got, b := e.do(method, path, body)
	if got != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, got, want, b)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(b), out); err != nil {
			e.t.Fatalf("%s %s: decode %q: %v", method, path, b, err)
		}
	}
}

// check compares the kernel with what the API says of every CEN.
func (e *env) check() {
	e.t.Helper()
	var cens []core.CENView
	e.must(200, "GET", "/cen", "", &cens)
	var ctrs []core.ContainerView
	e.must(200, "GET", "/host/host1", "", &ctrs)
	netns := map[string]string{}
	for _, c := range ctrs {
		netns[c.ID] = c.Netns
	}
	var want []ktest.CEN
	for _, c := range cens {
		k := ktest.CEN{IfName: c.IfName, Made: c.State == graph.StateConfigured || c.State == graph.StateUnconfigured}
		for _, m := range c.Each {
			if m.State == graph.StateStopped {
				k.Stopped++
				continue
			}
			ns := netns[m.Container]
			if ns == "" {
				ns = e.ns(m.Container)
			}
			k.Members = append(k.Members, ns)
		}
		want = append(want, k)
	}
	ktest.CheckKernel(e.t, e.fab.Path(), want)
}

// transcript records requests and answers for a golden file, with the
// env's random prefix replaced by a fixed one.
type transcript struct {
	e *env
	b bytes.Buffer
}

func (tr *transcript) do(method, path, body string) (int, string) {
	tr.e.t.Helper()
	status, resp := tr.e.do(method, path, body)
	var pretty bytes.Buffer
	if json.Indent(&pretty, []byte(resp), "", "  ") != nil {
		pretty.Reset()
		pretty.WriteString(resp)
	}
	fmt.Fprintf(&tr.b, "%s %s", method, path)
	if body != "" && len(body) < 200 {
		fmt.Fprintf(&tr.b, " %s", body)
	}
	fmt.Fprintf(&tr.b, "\n-> %d\n%s\n\n", status, strings.ReplaceAll(pretty.String(), tr.e.prefix, "<prefix>-"))
	return status, resp
}

func (tr *transcript) compare(name string) {
	t := tr.e.t
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, tr.b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./rest -update to create it)", err)
	}
	if d := cmp.Diff(string(want), tr.b.String()); d != "" {
		t.Errorf("%s differs (-want +got); run go test ./rest -update if the change is intended:\n%s", path, d)
	}
}
