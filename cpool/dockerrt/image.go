package dockerrt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
)

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
