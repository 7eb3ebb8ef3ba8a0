// Package layering holds tests of the module's structure: which package
// may import what, and that every package says what it owns.
package layering

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// owners says which package alone may import a dependency (by import
// path prefix): a top-level directory, which counts every package under
// it, or a deeper one (internal/metrics), which counts itself and those
// under it.
var owners = map[string]string{
	"github.com/vishvananda/":                           "netfab",
	"github.com/docker/docker":                          "cpool",
	"github.com/containerd/":                            "cpool", // the Docker client's errors
	"github.com/gin-gonic/gin":                          "rest",
	"github.com/coder/websocket":                        "monitor",
	"github.com/creack/pty":                             "vm",
	"github.com/spf13/":                                 "cmd", // cobra and pflag: the command line
	"go.etcd.io/bbolt":                                  "graph",
	"github.com/prometheus/":                            "internal/metrics",
	"go.etcd.io/etcd":                                   "graph",
	"github.com/leviathan-net/leviathan/internal/ktest": "internal/mhtest", // tests, and the multi-host lab they use
}

type pkg struct {
	dir     string
	doc     bool
	imports map[string][]string // import path → files
}

func loadPackages(t *testing.T) map[string]*pkg {
	root := "../.."
	pkgs := map[string]*pkg{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		p := pkgs[rel]
		if p == nil {
			p = &pkg{dir: rel, imports: map[string][]string{}}
			pkgs[rel] = p
		}
		if f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" {
			p.doc = true
		}
		for _, imp := range f.Imports {
			ip, _ := strconv.Unquote(imp.Path.Value)
			p.imports[ip] = append(p.imports[ip], filepath.Base(path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

func TestOnlyOwnersImportTheirDependencies(t *testing.T) {
	for dir, p := range loadPackages(t) {
		top := strings.Split(dir, string(os.PathSeparator))[0]
		if top == "bench" {
			// The benchmarks are outside observers, like tests: they
			// check the kernel and speak the protocols on their own.
			continue
		}
		for ip, files := range p.imports {
			for prefix, owner := range owners {
				if strings.HasPrefix(ip, prefix) && !owns(owner, dir) {
					t.Errorf("%s (%s) imports %s, which only %q may import", dir, strings.Join(files, ", "), ip, owner)
				}
			}
		}
	}
}

// owns reports whether owner (a directory of owners) covers the package
// in dir.
func owns(owner, dir string) bool {
	dir = filepath.ToSlash(dir)
	return owner != "" && (dir == owner || strings.HasPrefix(dir, owner+"/"))
}

func TestEveryPackageHasADocComment(t *testing.T) {
	for dir, p := range loadPackages(t) {
		if !p.doc {
			t.Errorf("package %s has no doc comment saying what it owns", dir)
		}
	}
}
