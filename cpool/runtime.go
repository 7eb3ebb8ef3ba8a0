package cpool

import (
	"context"
	"errors"
	"fmt"

	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/cpool/dockerrt"
	"github.com/leviathan-net/leviathan/graph"
)

// Runtime is the Docker runtime as core sees it: a container ID that
// names a Docker container (its name, full ID or a unique ID prefix of
// 12 or more hex digits) is a Docker member, whose namespace is the one
// of its running process.
type Runtime struct {
	eng *dockerrt.Engine
}

// NewRuntime returns the Docker runtime over an engine.
func NewRuntime(eng *dockerrt.Engine) *Runtime { return &Runtime{eng: eng} }

// Name implements core.Runtime.
func (r *Runtime) Name() string { return graph.RuntimeDocker }

// Lookup implements core.Runtime. An ID that names no Docker container
// is not this runtime's: it goes on to the netns runtime, as DESIGN.md
// orders them. An engine that stopped answering cannot tell, so the ID is
// refused (503) rather than guessed: a Docker container taken for a new
// namespace would stay one after the engine is back.
func (r *Runtime) Lookup(ctx context.Context, id string) (core.Sandbox, bool, error) {
	c, err := r.eng.Lookup(ctx, id)
	switch {
	case errors.Is(err, dockerrt.ErrNoContainer):
		return core.Sandbox{}, false, nil
	case errors.Is(err, dockerrt.ErrUnavailable):
		return core.Sandbox{}, false, graph.Errorf(graph.ErrUnavailable, "cannot tell whether %q is a Docker container: %w (leviathan serve --docker=false runs without Docker)", id, err)
	case errors.Is(err, dockerrt.ErrAmbiguous):
		return core.Sandbox{}, false, graph.Errorf(graph.ErrConflict, "%w", err)
	case err != nil:
		return core.Sandbox{}, false, err
	}
	return sandbox(c), true, nil
}

func sandbox(c dockerrt.Container) core.Sandbox {
	return core.Sandbox{Runtime: graph.RuntimeDocker, Netns: c.Netns(), Running: c.Running}
}

// Owns implements core.Runtime.
func (r *Runtime) Owns(c *graph.Container) bool { return c.Runtime == graph.RuntimeDocker }

// Observe implements core.Runtime: each container is inspected. One that
// is gone (removed) or an engine that does not answer is not running, and
// says why.
func (r *Runtime) Observe(ctx context.Context, ctrs []*graph.Container) ([]core.Sandbox, error) {
	out := make([]core.Sandbox, len(ctrs))
	for i, c := range ctrs {
		d, err := r.eng.Lookup(ctx, c.ID)
		switch {
		case err == nil:
			out[i] = sandbox(d)
			if !d.Running {
				out[i].Error = exitReason(d)
			}
		case errors.Is(err, dockerrt.ErrNoContainer):
			out[i] = core.Sandbox{Runtime: graph.RuntimeDocker, Error: "the Docker container is gone (removed)"}
		case errors.Is(err, dockerrt.ErrUnavailable):
			out[i] = core.Sandbox{Runtime: graph.RuntimeDocker, Error: err.Error()}
		default:
			return nil, fmt.Errorf("container %q: %w", c.ID, err)
		}
	}
	return out, nil
}

// exitReason says how a container that does not run ended.
func exitReason(c dockerrt.Container) string {
	switch {
	case c.Error != "":
		return c.Error
	case c.FinishedAt.IsZero():
		return "created, not started"
	default:
		return fmt.Sprintf("exited with code %d at %s", c.ExitCode, c.FinishedAt.UTC().Format("2006-01-02T15:04:05Z"))
	}
}

// Release implements core.Runtime: leviathan never removes a Docker
// container it is merely told about; a pool removes its own.
func (r *Runtime) Release(ctx context.Context, c *graph.Container) error { return nil }
