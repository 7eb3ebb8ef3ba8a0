package dockerrt_test

import (
	"context"
	"testing"
	"time"

	"github.com/leviathan-net/leviathan/cpool/dockerrt"
	"github.com/leviathan-net/leviathan/cpool/dockerrt/dtest"
)

func isResync(e dockerrt.Event) bool { return e.Kind == dockerrt.EventResync }

// of matches the events of kind k about container id.
func of(k dockerrt.EventKind, id string) func(dockerrt.Event) bool {
	return func(e dockerrt.Event) bool { return e.Kind == k && e.ID == id }
}

func TestWatch(t *testing.T) {
	e := dtest.Engine(t)
	name := dtest.Name(t) + "a"
	labels := map[string]string{"leviathan.cpool": "pool1"}
	ev := watch(t, e)
	if first := <-ev.ch; first.Kind != dockerrt.EventResync {
		t.Fatalf("first event %+v, want a resync", first)
	}

	c := run(t, e, dockerrt.RunSpec{Name: name, Image: dtest.Image(t, e), Labels: labels})
	got := ev.next(t, "start", of(dockerrt.EventStart, c.ID))
	if got.Name != name || got.Labels["leviathan.cpool"] != "pool1" {
		t.Errorf("start event %+v, want name %s and its labels", got, name)
	}
	if _, ok := got.Labels["image"]; ok {
		t.Errorf("start event labels %v hold the image attribute", got.Labels)
	}

	if err := e.Remove(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	got = ev.next(t, "die", of(dockerrt.EventDie, c.ID))
	if got.ExitCode != 137 { // killed
		t.Errorf("die event %+v, want exit code 137", got)
	}
	ev.next(t, "destroy", of(dockerrt.EventDestroy, c.ID))

	// A container that ends by itself dies with its status.
	c = run(t, e, dockerrt.RunSpec{Name: name + "x", Image: dtest.Image(t, e), Cmd: []string{"/bin/sh", "-c", "exit 7"}})
	if got := ev.next(t, "die", of(dockerrt.EventDie, c.ID)); got.ExitCode != 7 {
		t.Errorf("die event %+v, want exit code 7", got)
	}
}

// An engine that goes away and comes back (played by a proxy that hangs up
// every connection, then answers again) gets a resync, and Watch does not
// hammer it meanwhile.
func TestWatchReconnects(t *testing.T) {
	e0 := dtest.Engine(t)
	img := dtest.Image(t, e0)
	prefix := dtest.Name(t)
	p := newProxy(t)
	t.Setenv("DOCKER_HOST", p.host())
	e := dtest.Engine(t)
	ev := watch(t, e)
	ev.next(t, "first resync", isResync)

	c := run(t, e, dockerrt.RunSpec{Name: prefix + "a", Image: img})
	ev.next(t, "start", of(dockerrt.EventStart, c.ID))

	p.setDown(true)
	// Events of the engine while Watch cannot see them.
	if err := e0.Remove(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	// Backoff from 100ms: 100+200+400+800 makes 4 or 5 attempts in 1.5s.
	if n := p.refused(); n < 2 || n > 6 {
		t.Errorf("%d attempts to reconnect in 1.5s, want 2..6", n)
	}
	select {
	case got := <-ev.ch:
		t.Errorf("while the engine was away: event %+v", got)
	default:
	}

	p.setDown(false)
	ev.next(t, "resync after reconnection", isResync)
	c = run(t, e, dockerrt.RunSpec{Name: prefix + "b", Image: img})
	ev.next(t, "start after reconnection", of(dockerrt.EventStart, c.ID))
}
