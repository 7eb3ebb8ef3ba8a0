package rest

import (
	"context"
	"errors"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/leviathan-net/leviathan/netfab"
)

// openAPIFile is the spec that documents the API.
const openAPIFile = "../docs/openapi.yaml"

// routesOnlyFabric satisfies core.Fabric so that a Server can be built to
// list its routes. It exists only for that: no request is served, and any
// call is an error.
type routesOnlyFabric struct{}

var errRoutesOnly = errors.New("routesOnlyFabric exists only to list routes; it must not be called")

func (routesOnlyFabric) Apply(context.Context, *netfab.CEN, *netfab.CEN) error { return errRoutesOnly }
func (routesOnlyFabric) Destroy(context.Context, *netfab.CEN) error            { return errRoutesOnly }
func (routesOnlyFabric) DestroyMany(context.Context, []*netfab.CEN) error      { return errRoutesOnly }
func (routesOnlyFabric) Reconcile(context.Context, []*netfab.CEN, []string) (netfab.ReconcileReport, error) {
	return netfab.ReconcileReport{}, errRoutesOnly
}
func (routesOnlyFabric) ApplyCIN(context.Context, *netfab.CIN, *netfab.CIN, func(netfab.Address) bool) error {
	return errRoutesOnly
}
func (routesOnlyFabric) ReconcileCINs(context.Context, []*netfab.CIN, []string) (netfab.ReconcileReport, error) {
	return netfab.ReconcileReport{}, errRoutesOnly
}

// openAPIMethods are the operation keys of an OpenAPI path item.
var openAPIMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// openAPISpec is the part of an OpenAPI document the tests read.
type openAPISpec struct {
	OpenAPI    string                    `yaml:"openapi"`
	Paths      map[string]map[string]any `yaml:"paths"`
	Components struct {
		Parameters map[string]map[string]any `yaml:"parameters"`
	} `yaml:"components"`
}

func readOpenAPI(t *testing.T) *openAPISpec {
	t.Helper()
	b, err := os.ReadFile(openAPIFile)
	if err != nil {
		t.Fatal(err)
	}
	var spec openAPISpec
	if err := yaml.Unmarshal(b, &spec); err != nil {
		t.Fatalf("%s: %v", openAPIFile, err)
	}
	if !strings.HasPrefix(spec.OpenAPI, "3.0.") {
		t.Fatalf("%s: openapi is %q, want 3.0.x", openAPIFile, spec.OpenAPI)
	}
	if len(spec.Paths) == 0 {
		t.Fatalf("%s: no paths", openAPIFile)
	}
	return &spec
}

// operations lists the spec's operations as "METHOD /path" strings.
func (spec *openAPISpec) operations() map[string]bool {
	out := map[string]bool{}
	for path, item := range spec.Paths {
		for key := range item {
			if slices.Contains(openAPIMethods, key) {
				out[strings.ToUpper(key)+" "+path] = true
			}
		}
	}
	return out
}

// pathParams returns the names of the path parameters declared in a list
// of parameters (a path item's or an operation's), following local $refs.
func (spec *openAPISpec) pathParams(list any) []string {
	var names []string
	params, _ := list.([]any)
	for _, p := range params {
		m, _ := p.(map[string]any)
		if ref, ok := m["$ref"].(string); ok {
			m = spec.Components.Parameters[strings.TrimPrefix(ref, "#/components/parameters/")]
		}
		if m["in"] == "path" {
			name, _ := m["name"].(string)
			names = append(names, name)
		}
	}
	return names
}

// openAPIPath turns gin's "/cen/:cenId" into OpenAPI's "/cen/{cenId}".
func openAPIPath(ginPath string) string {
	parts := strings.Split(ginPath, "/")
	for i, p := range parts {
		if name, ok := strings.CutPrefix(p, ":"); ok {
			parts[i] = "{" + name + "}"
		} else if name, ok := strings.CutPrefix(p, "*"); ok {
			parts[i] = "{" + name + "}"
		}
	}
	return strings.Join(parts, "/")
}

// TestOpenAPIMatchesRoutes keeps docs/openapi.yaml true: every route the
// server registers is in the spec with its method, and every operation in
// the spec is a registered route.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	s := routesOnlyServer(t)

	registered := map[string]bool{}
	for _, r := range s.Routes() {
		registered[r.Method+" "+openAPIPath(r.Path)] = true
	}
	if len(registered) == 0 {
		t.Fatal("the server registers no routes")
	}
	spec := readOpenAPI(t)
	documented := spec.operations()

	for _, r := range slices.Sorted(maps.Keys(registered)) {
		if !documented[r] {
			t.Errorf("route %s is not in %s", r, openAPIFile)
		}
	}
	for _, r := range slices.Sorted(maps.Keys(documented)) {
		if !registered[r] {
			t.Errorf("%s documents %s, which the server does not register", openAPIFile, r)
		}
	}
}

func TestOpenAPIPath(t *testing.T) {
	for in, want := range map[string]string{
		"/v2/version":                       "/v2/version",
		"/cen/:cenId":                       "/cen/{cenId}",
		"/host/:hostId/:containerId/:cenId": "/host/{hostId}/{containerId}/{cenId}",
		"/files/*path":                      "/files/{path}",
		"/v2/projects/:pid/vms/:vmId/start": "/v2/projects/{pid}/vms/{vmId}/start",
	} {
		if got := openAPIPath(in); got != want {
			t.Errorf("openAPIPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestOpenAPIPathParams checks that every {param} of a path in the spec is
// declared as a path parameter of each of its operations, and nothing more.
func TestOpenAPIPathParams(t *testing.T) {
	spec := readOpenAPI(t)
	for _, path := range slices.Sorted(maps.Keys(spec.Paths)) {
		var want []string
		for _, seg := range strings.Split(path, "/") {
			if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
				want = append(want, seg[1:len(seg)-1])
			}
		}
		slices.Sort(want)
		item := spec.Paths[path]
		for _, method := range openAPIMethods {
			op, ok := item[method].(map[string]any)
			if !ok {
				continue
			}
			got := append(spec.pathParams(item["parameters"]), spec.pathParams(op["parameters"])...)
			slices.Sort(got)
			got = slices.Compact(got)
			if !slices.Equal(got, want) {
				t.Errorf("%s %s: path parameters %q, want %q", strings.ToUpper(method), path, got, want)
			}
		}
	}
}
