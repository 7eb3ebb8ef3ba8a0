package rest

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/leviathan-net/leviathan/cen"
	"github.com/leviathan-net/leviathan/cin"
	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/cpool"
	"github.com/leviathan-net/leviathan/graph"
)

// routesOnlyServer is a Server built only to list its routes.
func routesOnlyServer(t *testing.T) *Server {
	t.Helper()
	store, _ := openStore(t, t.TempDir(), storePrefix(t, "routes"))
	t.Cleanup(func() { store.Close() })
	svc, err := core.New(core.Options{
		HostID:   "host1",
		Store:    store,
		Fabric:   routesOnlyFabric{},
		Runtimes: []core.Runtime{&core.NetnsRuntime{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return New(t.Context(), svc, Options{})
}

// idValidators are the checks of new IDs, by the path parameter that
// names the object in the routes.
var idValidators = map[string]func(string) error{
	"cenId":   cen.ValidateCENID,
	"cinId":   cin.ValidateCINID,
	"cpoolId": cpool.ValidateID,
}

// TestRouteWordsReserved walks the registered routes: wherever a literal
// segment stands where another route takes an ID (POST /cen/import beside
// PUT /cen/:cenId), an object of that ID could be created and then not be
// reached, so the ID's validator must refuse it. Adding a route such as
// POST /cpool/export fails here until graph.RouteWords has "export".
func TestRouteWordsReserved(t *testing.T) {
	routes := routesOnlyServer(t).Routes()
	type clash struct{ word, param, literalRoute, paramRoute string }
	var clashes []clash
	for _, a := range routes {
		as := strings.Split(a.Path, "/")
		for _, b := range routes {
			bs := strings.Split(b.Path, "/")
			for i := 1; i < min(len(as), len(bs)); i++ {
				if !slices.Equal(as[:i], bs[:i]) {
					break
				}
				lit, param := as[i], bs[i]
				if strings.HasPrefix(lit, ":") || strings.HasPrefix(lit, "*") || !strings.HasPrefix(param, ":") {
					continue
				}
				clashes = append(clashes, clash{lit, strings.TrimPrefix(param, ":"), a.Method + " " + a.Path, b.Method + " " + b.Path})
			}
		}
	}
	if len(clashes) == 0 {
		t.Fatal("no literal segment beside an ID: the walk found nothing (POST /cen/import beside PUT /cen/:cenId at least)")
	}
	seen := map[string]bool{}
	for _, c := range clashes {
		if seen[c.word+" "+c.param] {
			continue
		}
		seen[c.word+" "+c.param] = true
		t.Run(c.param+"="+c.word, func(t *testing.T) {
			validate, ok := idValidators[c.param]
			if !ok {
				t.Fatalf("%s stands where %s takes :%s, and nothing reserves %q as a %s: add a validator", c.literalRoute, c.paramRoute, c.param, c.word, c.param)
			}
			if err := validate(c.word); !errors.Is(err, graph.ErrInvalid) {
				t.Errorf("%s stands where %s takes :%s, but %q is a valid %s (err %v): add it to graph.RouteWords", c.literalRoute, c.paramRoute, c.param, c.word, c.param, err)
			}
		})
	}
	// Every reserved word is refused for every kind of object, whether
	// or not that kind has the route yet.
	for _, w := range graph.RouteWords {
		for param, validate := range idValidators {
			if err := validate(w); !errors.Is(err, graph.ErrInvalid) {
				t.Errorf("%s %q: err %v, want ErrInvalid", param, w, err)
			}
		}
	}
}

// TestRouteWordsAsIDs checks on a real server that a route word cannot
// name a CEN, CIN or pool, by any way of defining one.
func TestRouteWordsAsIDs(t *testing.T) {
	e := newEnv(t, Options{})
	for _, w := range graph.RouteWords {
		t.Run(w, func(t *testing.T) {
			e := e.in(t)
			for _, c := range []struct{ method, path, body string }{
				{"PUT", "/cen/" + w, ""},
				{"POST", "/cen/import", `{"cenList":[{"cenID":"` + w + `","containerIDs":[]}]}`},
				{"PUT", "/cin/" + w, "[]"},
				{"POST", "/cin/import", `{"` + w + `":[]}`},
				{"POST", "/cpool", `{"cpoolList":[{"cpoolID":"` + w + `","type":"busybox","start_with":0,"cins":[]}]}`},
			} {
				got, body := e.do(c.method, c.path, c.body)
				if got != 400 || !strings.Contains(body, "reserved") {
					t.Errorf("%s %s %s: %d %s, want 400 reserved", c.method, c.path, c.body, got, body)
				}
			}
			var cens []core.CENView
			e.must(200, "GET", "/cen", "", &cens)
			if len(cens) != 0 {
				t.Errorf("CENs defined: %+v", cens)
			}
		})
	}
}
