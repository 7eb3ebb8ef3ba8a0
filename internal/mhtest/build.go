package mhtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

var built struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Binary builds the leviathan binary of this module once per test
// process, with the race detector when the tests have it, and returns its
// path. Run removes it when the tests end.
func Binary(t testing.TB) string {
	t.Helper()
	built.once.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			built.err = err
			return
		}
		if built.dir, err = os.MkdirTemp("", "lvmh-bin-"); err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(built.dir, "leviathan")
		args := []string{"build", "-o", built.path}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./cmd/leviathan")...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go %s (in %s): %v\n%s", strings.Join(cmd.Args[1:], " "), root, err, out)
		}
	})
	if built.err != nil {
		t.Fatalf("mhtest: build leviathan: %v", built.err)
	}
	return built.path
}

// moduleRoot is the directory of this module's go.mod: two up from this
// file's, or what "go env GOMOD" says from the working directory.
func moduleRoot() (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok {
		root := filepath.Join(filepath.Dir(file), "..", "..")
		if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
			return filepath.Clean(root), nil
		}
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module")
	}
	return filepath.Dir(mod), nil
}

// Run runs the tests and removes the binary Binary built; a package of
// lab tests calls it from TestMain: os.Exit(mhtest.Run(m)).
func Run(m *testing.M) int {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	return code
}
