package dockerrt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/pkg/stdcopy"
)

// DefaultCmd is the command of a container whose image has none (no Cmd and
// no Entrypoint): a shell that sleeps until it is told to stop, and exits 0
// at once on SIGTERM (as PID 1 it would otherwise ignore the signal, and
// docker stop would wait its whole timeout). It needs /bin/sh and sleep in
// the image.
var DefaultCmd = []string{"/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"}

// RunSpec says what container Run makes.
type RunSpec struct {
	Name   string // the container's name; "" lets the engine choose one
	Image  string // a local image: Run never pulls
	Cmd    []string
	Labels map[string]string
}

// cleanupTimeout bounds the removal of a half-made container, which runs
// even when the caller's context has ended.
const cleanupTimeout = 10 * time.Second

// maxLogBytes bounds what Logs reads.
const maxLogBytes = 4 << 20

// Run creates and starts a container with no Docker networking (network
// mode "none": it has only lo until leviathan wires it), with s's name and
// labels, running s.Cmd, or when s.Cmd is empty the image's own command, or
// DefaultCmd when the image has none. It returns the container as inspected
// once started. The image must be local: ErrNoImage otherwise. A name in use
// is ErrNameInUse. When anything fails after the container was created, Run
// removes it.
func (e *Engine) Run(ctx context.Context, s RunSpec) (c Container, err error) {
	what := fmt.Sprintf("run docker container %q of image %q", s.Name, s.Image)
	img, err := e.cli.ImageInspect(ctx, s.Image)
	if err != nil {
		return Container{}, wrap(err, ErrNoImage, "%s", what)
	}
	cmd := s.Cmd
	if len(cmd) == 0 && (img.Config == nil || len(img.Config.Cmd) == 0 && len(img.Config.Entrypoint) == 0) {
		cmd = DefaultCmd
	}
	created, err := e.cli.ContainerCreate(ctx,
		&container.Config{Image: s.Image, Cmd: cmd, Labels: s.Labels},
		&container.HostConfig{NetworkMode: "none"},
		nil, nil, s.Name)
	if err != nil {
		if cerrdefs.IsConflict(err) {
			return Container{}, fmt.Errorf("%s: %w: %w", what, ErrNameInUse, err)
		}
		return Container{}, wrap(err, ErrNoImage, "%s", what)
	}
	defer func() {
		if err == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if rerr := e.Remove(ctx, created.ID); rerr != nil {
			err = errors.Join(err, fmt.Errorf("undo: %w", rerr))
		}
	}()
	if err := e.cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return Container{}, wrap(err, nil, "%s: start", what)
	}
	c, err = e.inspect(ctx, created.ID)
	if err != nil {
		return Container{}, fmt.Errorf("%s: %w", what, err)
	}
	return c, nil
}

// Start starts a container that exists and does not run (a pool's
// container that stopped or died); one that runs already is not an error.
func (e *Engine) Start(ctx context.Context, id string) error {
	if err := e.cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return wrap(err, ErrNoContainer, "start docker container %q", id)
	}
	return nil
}

// Remove force-removes a container (stopping it first if it runs) with its
// anonymous volumes. A container that is not there is not an error, and
// neither is one that another request is removing already (a request of a
// leviathan killed since, say): Remove waits for that removal, up to
// removeWait, and tries again if it failed.
func (e *Engine) Remove(ctx context.Context, id string) error {
	deadline := time.Now().Add(removeWait)
	backoff := removeBackoffMin
	for {
		err := e.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
		if err == nil || cerrdefs.IsNotFound(err) {
			return nil
		}
		// A forced removal conflicts only with a removal under way. The
		// container's status does not tell: it shows "running" while
		// that removal kills it.
		if !cerrdefs.IsConflict(err) || time.Now().After(deadline) {
			return wrap(err, nil, "remove docker container %q", id)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return wrap(err, nil, "remove docker container %q", id)
		case <-t.C:
		}
		backoff = min(2*backoff, removeBackoffMax)
	}
}

// removeWait bounds how long Remove waits for another request's removal
// of a container, asking again from removeBackoffMin doubling to
// removeBackoffMax.
const (
	removeWait       = 30 * time.Second
	removeBackoffMin = 10 * time.Millisecond
	removeBackoffMax = 500 * time.Millisecond
)

// Logs returns the last n lines (all of them when n <= 0) of a container's
// standard output and error, interleaved as the engine stored them, as
// text. It reads at most 4 MiB.
func (e *Engine) Logs(ctx context.Context, id string, n int) (string, error) {
	what := fmt.Sprintf("logs of docker container %q", id)
	r, err := e.cli.ContainerInspect(ctx, id)
	if err != nil {
		return "", wrap(err, ErrNoContainer, "%s", what)
	}
	tail := "all"
	if n > 0 {
		tail = strconv.Itoa(n)
	}
	rc, err := e.cli.ContainerLogs(ctx, r.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: tail})
	if err != nil {
		return "", wrap(err, ErrNoContainer, "%s", what)
	}
	defer rc.Close()
	src := io.LimitReader(rc, maxLogBytes)
	var b bytes.Buffer
	if r.Config != nil && r.Config.Tty {
		// With a terminal the engine sends the stream as it is.
		_, err = io.Copy(&b, src)
	} else {
		_, err = stdcopy.StdCopy(&b, &b, src)
	}
	if err != nil {
		return b.String(), wrap(err, nil, "%s", what)
	}
	return b.String(), nil
}

// HasImage says whether the engine holds the image ref.
func (e *Engine) HasImage(ctx context.Context, ref string) (bool, error) {
	_, err := e.cli.ImageInspect(ctx, ref)
	switch {
	case err == nil:
		return true, nil
	case cerrdefs.IsNotFound(err):
		return false, nil
	}
	return false, wrap(err, nil, "inspect docker image %q", ref)
}

// ImportImage makes the image ref from rootfs, a tar of its root file
// system, like "docker import": changes are Dockerfile instructions such
// as `CMD ["/bin/sleep","infinity"]`. It is how images are made where no
// registry can be reached.
func (e *Engine) ImportImage(ctx context.Context, ref string, rootfs io.Reader, changes ...string) error {
	what := fmt.Sprintf("import docker image %q", ref)
	rc, err := e.cli.ImageImport(ctx, image.ImportSource{Source: rootfs, SourceName: "-"}, ref, image.ImportOptions{Changes: changes})
	if err != nil {
		return wrap(err, nil, "%s", what)
	}
	defer rc.Close()
	// The answer is a stream of JSON progress messages; a failure comes
	// as one of them.
	dec := json.NewDecoder(rc)
	for {
		var m struct {
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return wrap(err, nil, "%s", what)
		}
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			return fmt.Errorf("%s: %s", what, m.ErrorDetail.Message)
		}
		if m.Error != "" {
			return fmt.Errorf("%s: %s", what, m.Error)
		}
	}
}
