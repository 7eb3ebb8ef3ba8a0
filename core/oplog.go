package core

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/monitor"
)

// LogEntry is one line of an object's operation log: what was done to
// it, when, the state it left it in and, when it failed, why. It is IM's
// "contextualization log", made of the events the object was in.
type LogEntry struct {
	Time    time.Time `json:"time"`
	Action  string    `json:"action"`
	State   string    `json:"state,omitempty"`
	Error   string    `json:"error,omitempty"`
	Message string    `json:"message,omitempty"`
}

// Operation logs keep the last maxLogEntries entries of each object and
// are written to the store at most flushDelay after an event.
const (
	maxLogEntries = 200
	flushDelay    = 500 * time.Millisecond
	logBucket     = graph.BucketOplog
)

// oplog records every event of the bus, by object, and keeps it in the
// store: entries wait in pending until a flush appends them to the
// object's stored log, in one transaction for every object.
type oplog struct {
	store graph.Store

	mu        sync.Mutex            // guards pending and scheduled
	pending   map[string][]LogEntry // by object key, oldest first
	scheduled bool
}

func newOplog(store graph.Store, bus *monitor.Bus) *oplog {
	l := &oplog{store: store, pending: map[string][]LogEntry{}}
	bus.Observe(l.record)
	return l
}

// Log keys of the kinds of object.
func cenLogKey(id string) string       { return "cen/" + id }
func cinLogKey(id string) string       { return "cin/" + id }
func poolLogKey(id string) string      { return "cpool/" + id }
func ctrLogKey(host, id string) string { return "container/" + host + "/" + id }
func vmLogKey(id string) string        { return "vm/" + id }
func logEntry(e monitor.Event) LogEntry {
	return LogEntry{Time: time.Now().UTC(), Action: string(e.Action)}
}

// record is the bus's observer: it files each event under the objects it
// is about. It only appends to memory; a flush comes later.
func (l *oplog) record(evs []monitor.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range evs {
		if e.Remote {
			continue
		}
		en := logEntry(e)
		var keys []string
		switch d := e.Data.(type) {
		case monitor.ObjectEvent:
			en.State, en.Error = d.State, d.Error
			if d.CEN != "" {
				keys = append(keys, cenLogKey(d.CEN))
			}
			if d.CIN != "" {
				keys = append(keys, cinLogKey(d.CIN))
			}
			if d.CPool != "" {
				keys = append(keys, poolLogKey(d.CPool))
			}
			if d.Container != "" {
				keys = append(keys, ctrLogKey(d.Host, d.Container))
				if d.CEN != "" {
					en.Message = fmt.Sprintf("container %s, CEN %s", d.Container, d.CEN)
				}
			}
		case monitor.CINAddresses:
			keys = append(keys, cinLogKey(d.CIN))
			var ms []string
			for _, m := range d.Members {
				ms = append(ms, m.Container+" "+m.IP)
			}
			en.Message = graph.QuoteList(ms)
		case monitor.VMEvent:
			keys = append(keys, vmLogKey(d.VMID))
			en.State = d.Status
		case monitor.LogEvent:
			en.Message = d.Message
		}
		for _, k := range keys {
			l.pending[k] = append(l.pending[k], en)
		}
	}
	if len(l.pending) > 0 && !l.scheduled {
		l.scheduled = true
		time.AfterFunc(flushDelay, l.flush)
	}
}

// flush appends the pending entries to the stored logs.
func (l *oplog) flush() {
	l.mu.Lock()
	pending := l.pending
	l.pending, l.scheduled = map[string][]LogEntry{}, false
	l.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	// A store closed meanwhile (a daemon stopping) loses these entries:
	// the objects' states, which matter, are in the store already.
	l.store.Update(func(tx graph.Tx) error {
		for k, add := range pending {
			var cur []LogEntry
			if b, err := tx.Get(logBucket, k); err == nil && b != nil {
				json.Unmarshal(b, &cur)
			}
			cur = append(cur, add...)
			if n := len(cur) - maxLogEntries; n > 0 {
				cur = slices.Delete(cur, 0, n)
			}
			b, err := json.Marshal(cur)
			if err != nil {
				return err
			}
			if err := tx.Put(logBucket, k, b); err != nil {
				return err
			}
		}
		return nil
	})
}

// read returns the log of the objects keys name, stored and pending,
// oldest first.
func (l *oplog) read(keys ...string) ([]LogEntry, error) {
	out := []LogEntry{}
	err := l.store.View(func(tx graph.Tx) error {
		for _, k := range keys {
			b, err := tx.Get(logBucket, k)
			if err != nil {
				return err
			}
			if b != nil {
				var es []LogEntry
				if err := json.Unmarshal(b, &es); err != nil {
					return fmt.Errorf("log of %s: %w", k, err)
				}
				out = append(out, es...)
			}
		}
		return nil
	})
	l.mu.Lock()
	for _, k := range keys {
		out = append(out, l.pending[k]...)
	}
	l.mu.Unlock()
	slices.SortStableFunc(out, func(a, b LogEntry) int { return a.Time.Compare(b.Time) })
	return out, err
}

// Log returns the operation log of an object: kind is "cen", "cin",
// "cpool" or "container" (id then "HOST/ID"; an emulated VM's log is its
// container's with its own vm.* events).
func (s *Service) Log(ctx context.Context, kind, id string) ([]LogEntry, error) {
	var keys []string
	switch kind {
	case "cen":
		keys = []string{cenLogKey(id)}
	case "cin":
		keys = []string{cinLogKey(id)}
	case "cpool":
		keys = []string{poolLogKey(id)}
	case "container":
		host, ctr, _ := strings.Cut(id, "/")
		keys = []string{ctrLogKey(host, ctr), vmLogKey(ctr)}
	default:
		return nil, graph.Errorf(graph.ErrInvalid, "no log of a %q", kind)
	}
	return s.oplog.read(keys...)
}
