package dockerrt

import (
	"context"
	"strconv"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
)

// EventKind says what happened to a container.
type EventKind string

const (
	EventStart   EventKind = "start"
	EventDie     EventKind = "die" // its main process ended, whatever the cause
	EventStop    EventKind = "stop"
	EventDestroy EventKind = "destroy" // it was removed
	// EventResync: Watch (re)connected to the engine and may have missed
	// events; the caller lists what it cares about afresh.
	EventResync EventKind = "resync"
)

// Event is a container event. A resync carries only its Kind.
type Event struct {
	Kind     EventKind
	ID, Name string
	// Labels are the container's labels as the event reports them: its
	// attributes other than name, image, exitCode and execDuration.
	Labels   map[string]string
	ExitCode int // of a die event
}

// Backoff between attempts to reach the engine's event stream.
const (
	watchBackoffMin = 100 * time.Millisecond
	watchBackoffMax = 5 * time.Second
)

// watchSettle is how long a new event stream must stay up before Watch
// trusts it.
const watchSettle = 100 * time.Millisecond

// eventAttrs are the attributes the engine adds to a container's labels in
// its events.
var eventAttrs = map[string]bool{"name": true, "image": true, "exitCode": true, "execDuration": true}

// Watch delivers the engine's container events (start, die, stop, destroy)
// to fn until ctx ends, and then returns ctx.Err(). Right after every
// connection to the engine, the first included, it delivers EventResync:
// events may have been missed before it, so the caller lists everything it
// cares about afresh (level-triggered). When the stream ends or the engine
// goes away (a restart), Watch reconnects with exponential backoff from
// 100ms to 5s; it logs when it loses the engine and when it finds it again,
// not every attempt.
//
// fn runs on Watch's goroutine, one event at a time; while it runs, the
// engine's stream waits.
func (e *Engine) Watch(ctx context.Context, fn func(Event)) error {
	opts := events.ListOptions{Filters: filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("event", string(EventStart)),
		filters.Arg("event", string(EventDie)),
		filters.Arg("event", string(EventStop)),
		filters.Arg("event", string(EventDestroy)),
	)}
	backoff := watchBackoffMin
	connected := true // as far as the log has said
	for ctx.Err() == nil {
		err := e.watchOnce(ctx, opts, fn, func() {
			if !connected {
				e.log.Info("docker events: engine back")
			}
			connected = true
			backoff = watchBackoffMin
		})
		if ctx.Err() != nil {
			break
		}
		if connected {
			e.log.Warn("docker events: engine lost, reconnecting", logKeyErr, err, logKeyRetry, backoff)
			connected = false
		} else {
			e.log.Debug("docker events: engine still away", logKeyErr, err, logKeyRetry, backoff)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		backoff = min(2*backoff, watchBackoffMax)
	}
	return ctx.Err()
}

// watchOnce follows one connection to the event stream until it ends or ctx
// does. Once the engine has accepted the subscription it calls up, then
// delivers EventResync, then the events.
func (e *Engine) watchOnce(ctx context.Context, opts events.ListOptions, fn func(Event), up func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs, errs := e.cli.Events(ctx, opts)
	// Events returns once the engine has answered the request or failed
	// to, but it reports a failure just after returning: the stream is
	// taken as up when no failure follows within watchSettle. Events that
	// come meanwhile wait in the stream.
	settle := time.NewTimer(watchSettle)
	defer settle.Stop()
	select {
	case err := <-errs:
		return wrap(err, nil, "docker events")
	case <-settle.C:
	}
	up()
	fn(Event{Kind: EventResync})
	for {
		select {
		case m := <-msgs:
			if ev, ok := toEvent(m); ok {
				fn(ev)
			}
		case err := <-errs:
			return wrap(err, nil, "docker events")
		}
	}
}

func toEvent(m events.Message) (Event, bool) {
	if m.Type != events.ContainerEventType {
		return Event{}, false
	}
	ev := Event{Kind: EventKind(m.Action), ID: m.Actor.ID, Name: m.Actor.Attributes["name"]}
	switch ev.Kind {
	case EventStart, EventDie, EventStop, EventDestroy:
	default:
		return Event{}, false
	}
	if ev.Kind == EventDie {
		ev.ExitCode, _ = strconv.Atoi(m.Actor.Attributes["exitCode"])
	}
	for k, v := range m.Actor.Attributes {
		if eventAttrs[k] {
			continue
		}
		if ev.Labels == nil {
			ev.Labels = map[string]string{}
		}
		ev.Labels[k] = v
	}
	return ev, true
}
