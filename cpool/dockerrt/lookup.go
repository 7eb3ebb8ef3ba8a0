package dockerrt

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
)

// MinPrefix is the shortest ID prefix Lookup accepts: shorter ones are too
// likely to name something else tomorrow.
const MinPrefix = 12

// minPrefix is MinPrefix, but for tests of ambiguity (two random IDs that
// share 12 digits cannot be made).
var minPrefix = MinPrefix

// Container is what the engine says of one container at the time of the
// call.
type Container struct {
	ID       string
	Name     string // without Docker's leading "/"
	Image    string // as given when it was created (a name or an ID)
	Running  bool
	Pid      int // of its main process while it runs, else 0
	ExitCode int
	Error    string // the engine's last error starting it, if any
	Labels   map[string]string

	StartedAt, FinishedAt time.Time // zero when it never started, or never finished
}

// Netns is the path of the container's network namespace while it runs
// (/proc/<Pid>/ns/net), "" otherwise. A restarted container has a new one.
func (c Container) Netns() string {
	if !c.Running || c.Pid <= 0 {
		return ""
	}
	return "/proc/" + strconv.Itoa(c.Pid) + "/ns/net"
}

// Lookup resolves ref, in this order, as a full container ID, a container
// name (with or without its leading "/"), or a unique ID prefix of
// MinPrefix or more hex digits, and inspects the container. A shorter
// prefix, or anything else that is not a container, is ErrNoContainer; a
// prefix matching several containers is ErrAmbiguous.
func (e *Engine) Lookup(ctx context.Context, ref string) (Container, error) {
	name := strings.TrimPrefix(ref, "/")
	if name == "" {
		return Container{}, fmt.Errorf("look up docker container %q: %w", ref, ErrNoContainer)
	}
	// The engine resolves ID, name, then any ID prefix, in that order.
	// It is kept when it matched the ID or the name, or a long prefix.
	r, err := e.cli.ContainerInspect(ctx, name)
	if err == nil {
		c := fromInspect(r)
		if c.ID == name || c.Name == name || isPrefix(name) {
			return c, nil
		}
		return Container{}, fmt.Errorf("look up docker container %q: %w (an ID prefix needs %d or more hex digits)", ref, ErrNoContainer, minPrefix)
	}
	if !isPrefix(name) || client.IsErrConnectionFailed(err) {
		return Container{}, wrap(err, ErrNoContainer, "look up docker container %q", ref)
	}
	// A prefix the engine did not resolve: tell an ambiguous one (engines
	// differ in how they report it) from any other failure.
	ids, lerr := e.prefixed(ctx, name)
	if lerr != nil {
		return Container{}, errors.Join(wrap(err, nil, "look up docker container %q", ref), lerr)
	}
	if len(ids) > 1 {
		return Container{}, fmt.Errorf("look up docker container %q: %w: matches %s", ref, ErrAmbiguous, strings.Join(ids, ", "))
	}
	return Container{}, wrap(err, ErrNoContainer, "look up docker container %q", ref)
}

// isPrefix says whether s can be an ID prefix Lookup accepts.
func isPrefix(s string) bool {
	if len(s) < minPrefix || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			return false
		}
	}
	return true
}

// prefixed returns the IDs of every container whose ID starts with prefix.
func (e *Engine) prefixed(ctx context.Context, prefix string) ([]string, error) {
	cs, err := e.cli.ContainerList(ctx, container.ListOptions{All: true})
	if err != nil {
		return nil, wrap(err, nil, "list docker containers")
	}
	var ids []string
	for _, c := range cs {
		if strings.HasPrefix(c.ID, prefix) {
			ids = append(ids, c.ID)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// List returns every container, running or not, that has the label key
// (with any value when value is "") or key=value, ordered by name. A
// container removed while it is being listed is left out.
func (e *Engine) List(ctx context.Context, key, value string) ([]Container, error) {
	label := key
	if value != "" {
		label = key + "=" + value
	}
	what := fmt.Sprintf("list docker containers labelled %s", label)
	if key == "" {
		return nil, fmt.Errorf("%s: no label key", what)
	}
	return e.list(ctx, what, filters.NewArgs(filters.Arg("label", label)), nil)
}

// ListNamed returns every container, running or not, whose name starts
// with prefix, ordered by name.
func (e *Engine) ListNamed(ctx context.Context, prefix string) ([]Container, error) {
	what := fmt.Sprintf("list docker containers named %s...", prefix)
	// The engine's name filter is an unanchored regular expression.
	f := filters.NewArgs(filters.Arg("name", "^/"+regexp.QuoteMeta(prefix)))
	return e.list(ctx, what, f, func(s container.Summary) bool {
		for _, n := range s.Names {
			if strings.HasPrefix(strings.TrimPrefix(n, "/"), prefix) {
				return true
			}
		}
		return false
	})
}

// list inspects every container that f selects and keep (when not nil)
// keeps.
func (e *Engine) list(ctx context.Context, what string, f filters.Args, keep func(container.Summary) bool) ([]Container, error) {
	cs, err := e.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, wrap(err, nil, "%s", what)
	}
	out := make([]Container, 0, len(cs))
	for _, s := range cs {
		if keep != nil && !keep(s) {
			continue
		}
		r, err := e.cli.ContainerInspect(ctx, s.ID)
		if cerrdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, wrap(err, nil, "%s: inspect %s", what, s.ID)
		}
		out = append(out, fromInspect(r))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// inspect returns the container with the full ID or name ref.
func (e *Engine) inspect(ctx context.Context, ref string) (Container, error) {
	r, err := e.cli.ContainerInspect(ctx, ref)
	if err != nil {
		return Container{}, wrap(err, ErrNoContainer, "inspect docker container %q", ref)
	}
	return fromInspect(r), nil
}

func fromInspect(r container.InspectResponse) Container {
	var c Container
	if r.ContainerJSONBase == nil {
		return c
	}
	c.ID = r.ID
	c.Name = strings.TrimPrefix(r.Name, "/")
	c.Image = r.Image
	if r.Config != nil {
		if r.Config.Image != "" {
			c.Image = r.Config.Image
		}
		c.Labels = r.Config.Labels
	}
	if s := r.State; s != nil {
		c.Running = s.Running
		if s.Running {
			c.Pid = s.Pid
		}
		c.ExitCode = s.ExitCode
		c.Error = s.Error
		c.StartedAt = parseTime(s.StartedAt)
		c.FinishedAt = parseTime(s.FinishedAt)
	}
	return c
}

// parseTime reads the engine's RFC 3339 times; its zero time
// ("0001-01-01T00:00:00Z") and anything unreadable are the zero Time.
func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.IsZero() {
		return time.Time{}
	}
	return t
}
