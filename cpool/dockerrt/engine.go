// Package dockerrt is leviathan's Docker runtime: the only code that speaks
// to a Docker engine. It owns the connection to the engine named by the
// Docker client's environment (DOCKER_HOST, DOCKER_API_VERSION,
// DOCKER_CERT_PATH, DOCKER_TLS_VERIFY; default unix:///var/run/docker.sock),
// with the API version negotiated down to the engine's (Debian's engine
// speaks 1.41). It resolves container references, lists containers by
// label, runs and removes the containers of a CPool (no Docker networking:
// leviathan wires them), reads their logs, and delivers the engine's
// container events with a resync after every reconnection, so that callers
// stay level-triggered.
//
// It keeps no state of its own beyond the client: what it returns is what
// the engine said at the time of the call. An Engine is safe for concurrent
// use by several goroutines; Watch calls its callback from the goroutine
// that called Watch, one event at a time.
//
// Errors wrap Docker's own error (its message is kept) and, where a caller
// can act on it, one of the sentinels below (errors.Is).
package dockerrt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"
)

var (
	// ErrUnavailable: the engine does not answer.
	ErrUnavailable = errors.New("docker engine unavailable")
	// ErrNoContainer: the reference names no container.
	ErrNoContainer = errors.New("no such docker container")
	// ErrAmbiguous: an ID prefix matches several containers.
	ErrAmbiguous = errors.New("ambiguous docker container reference")
	// ErrNoImage: the image is not in the engine (dockerrt never pulls).
	ErrNoImage = errors.New("no such docker image")
	// ErrNameInUse: Run's name is taken by another container.
	ErrNameInUse = errors.New("docker container name in use")
)

// openTimeout bounds the first ping in Open.
const openTimeout = 3 * time.Second

// Log attribute keys.
const (
	logKeyHost    = "docker_host"
	logKeyVersion = "api_version"
	logKeyErr     = "err"
	logKeyRetry   = "retry_in"
)

// Engine is a connection to one Docker engine.
type Engine struct {
	cli *client.Client
	log *slog.Logger
}

// Open connects to the engine named by the Docker client's environment,
// negotiates the API version and pings the engine. When the engine does not
// answer within a few seconds it returns an error wrapping ErrUnavailable and
// the cause; an environment the client cannot use (a malformed DOCKER_HOST)
// is an error without it. A nil log discards.
func Open(ctx context.Context, log *slog.Logger) (*Engine, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	e := &Engine{cli: cli, log: log.With(logKeyHost, cli.DaemonHost())}
	ctx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	ping, err := cli.Ping(ctx)
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("docker engine at %s: %w: %w", cli.DaemonHost(), ErrUnavailable, err)
	}
	cli.NegotiateAPIVersionPing(ping)
	e.log.Debug("docker engine", logKeyVersion, cli.ClientVersion())
	return e, nil
}

// Close releases the connection's resources.
func (e *Engine) Close() error { return e.cli.Close() }

// Ping checks that the engine answers; ErrUnavailable when it does not.
func (e *Engine) Ping(ctx context.Context) error {
	if _, err := e.cli.Ping(ctx); err != nil {
		return fmt.Errorf("ping docker engine at %s: %w: %w", e.cli.DaemonHost(), ErrUnavailable, err)
	}
	return nil
}

// APIVersion is the API version in use: the engine's when it is older than
// the client's, else the client's own (or DOCKER_API_VERSION when set).
func (e *Engine) APIVersion() string { return e.cli.ClientVersion() }

// Host is the engine's address, as in DOCKER_HOST.
func (e *Engine) Host() string { return e.cli.DaemonHost() }

// wrap adds context to an error from the client and, where it applies,
// the sentinel a caller branches on: notFound for a not-found answer,
// ErrUnavailable when the engine cannot be reached.
func wrap(err error, notFound error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	what := fmt.Sprintf(format, args...)
	switch {
	case client.IsErrConnectionFailed(err):
		return fmt.Errorf("%s: %w: %w", what, ErrUnavailable, err)
	case notFound != nil && cerrdefs.IsNotFound(err):
		return fmt.Errorf("%s: %w: %w", what, notFound, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
