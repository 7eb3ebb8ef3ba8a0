package cpool

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/cpool/dockerrt"
	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/monitor"
)

// LabelPool is the Docker label that marks a pool's containers with the
// pool's ID: how a restarted leviathan finds them again.
const LabelPool = "leviathan.cpool"

// Options configure a Manager.
type Options struct {
	// Engine is the Docker engine; nil when there is none (every pool
	// operation then answers that Docker is unavailable).
	Engine  *dockerrt.Engine
	Service *core.Service
	Store   graph.Store
	Host    string
	// Launches bounds the containers launched at once (8 when 0).
	Launches int
	// Resync is how often every pool and Docker member is reconciled
	// even when no event came (10 s when 0): the safety net of a
	// level-triggered design.
	Resync time.Duration
	Log    *slog.Logger
}

// Manager keeps pools at size and Docker members wired.
type Manager struct {
	eng      *dockerrt.Engine
	svc      *core.Service
	store    graph.Store
	host     string
	launches int
	resync   time.Duration
	log      *slog.Logger

	locks sync.Map // pool ID → *sync.Mutex, serializing a pool's operations

	mu      sync.Mutex           // guards the fields below
	dirty   map[string]bool      // pools to reconcile
	members map[string]bool      // Docker references (IDs, names) to sync
	all     bool                 // a full resync is due
	backoff map[string]*failures // pools whose containers keep failing
	kick    chan struct{}        // wakes the worker (buffered, 1)

	cancel context.CancelFunc
	done   sync.WaitGroup
}

// failures counts a pool's consecutive failed launches, for backoff.
type failures struct {
	n     int
	until time.Time
	seen  map[string]time.Time // container ID → the end already counted
}

// New returns a Manager; Start runs its event and reconcile loops.
func New(o Options) *Manager {
	if o.Launches <= 0 {
		o.Launches = 8
	}
	if o.Resync <= 0 {
		o.Resync = 10 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Manager{
		eng: o.Engine, svc: o.Service, store: o.Store, host: o.Host,
		launches: o.Launches, resync: o.Resync, log: o.Log,
		dirty: map[string]bool{}, members: map[string]bool{}, backoff: map[string]*failures{},
		kick: make(chan struct{}, 1),
	}
}

// ErrNoDocker is returned (wrapped in graph.ErrUnavailable) by pool
// operations when leviathan runs without a Docker engine.
var ErrNoDocker = errors.New("no Docker engine: leviathan runs without Docker (start dockerd, or see --docker)")

func (m *Manager) engine() error {
	if m.eng == nil {
		return graph.Errorf(graph.ErrUnavailable, "%w", ErrNoDocker)
	}
	return nil
}

// Start runs, until Close, the loop that follows Docker's events (with a
// full resync after every reconnection) and keeps pools at size. Without
// an engine it does nothing.
func (m *Manager) Start() {
	if m.eng == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.done.Add(2)
	go func() {
		defer m.done.Done()
		m.eng.Watch(ctx, m.onEvent)
	}()
	go func() {
		defer m.done.Done()
		m.work(ctx)
	}()
}

// Close stops the loops and waits for them; containers stay as they are.
func (m *Manager) Close() {
	if m.cancel != nil {
		m.cancel()
		m.done.Wait()
	}
}

// Resync asks the loop for a full pass over every pool and Docker member
// now (after an import recorded pools, say), without waiting for the
// periodic one.
func (m *Manager) Resync() {
	m.mu.Lock()
	m.all = true
	m.mu.Unlock()
	m.poke()
}

// onEvent queues what an engine event asks to look at. It never blocks
// the event stream: the worker takes the queue as a whole.
func (m *Manager) onEvent(e dockerrt.Event) {
	m.mu.Lock()
	if e.Kind == dockerrt.EventResync {
		m.all = true
	} else {
		m.members[e.ID] = true
		m.members[e.Name] = true
		if p := e.Labels[LabelPool]; p != "" {
			m.dirty[p] = true
		}
	}
	m.mu.Unlock()
	m.poke()
}

func (m *Manager) poke() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// work is the one reconcile loop: containers first (so a pool sees its
// members wired or not), then pools.
func (m *Manager) work(ctx context.Context) {
	tick := time.NewTicker(m.resync)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.kick:
		case <-tick.C:
			m.mu.Lock()
			m.all = true
			m.mu.Unlock()
		}
		m.mu.Lock()
		all, refs, pools := m.all, m.members, m.dirty
		m.all, m.members, m.dirty = false, map[string]bool{}, map[string]bool{}
		m.mu.Unlock()

		if all {
			if err := m.svc.SyncRuntime(ctx, graph.RuntimeDocker); err != nil {
				m.log.Warn("docker: resync of members", "err", err)
			}
			ps, err := m.poolIDs()
			if err != nil {
				m.log.Warn("docker: list pools", "err", err)
			}
			for _, p := range ps {
				pools[p] = true
			}
		} else if len(refs) > 0 {
			if err := m.syncMembers(ctx, refs); err != nil {
				m.log.Warn("docker: member sync", "err", err)
			}
		}
		for p := range pools {
			if ctx.Err() != nil {
				return
			}
			if _, err := m.syncPool(ctx, p); err != nil && !errors.Is(err, graph.ErrNotFound) {
				m.log.Warn("cpool: reconcile", "cpool", p, "err", err)
			}
		}
	}
}

// syncMembers syncs the Docker members an event named: by leviathan ID,
// which is a Docker name, full ID or ID prefix.
func (m *Manager) syncMembers(ctx context.Context, refs map[string]bool) error {
	ctrs, err := m.svc.ListContainers(ctx, m.host)
	if err != nil {
		return err
	}
	var ids []string
	for _, c := range ctrs {
		if c.Runtime != graph.RuntimeDocker {
			continue
		}
		if namedBy(c.ID, refs) {
			ids = append(ids, c.ID)
		}
	}
	return m.svc.SyncContainers(ctx, m.host, ids)
}

// namedBy reports whether a Docker member's ID (a name, full ID or ID
// prefix) names one of the containers an event gave by name and full ID.
func namedBy(id string, refs map[string]bool) bool {
	if refs[id] {
		return true
	}
	if len(id) < dockerrt.MinPrefix {
		return false
	}
	for r := range refs {
		if strings.HasPrefix(r, id) {
			return true
		}
	}
	return false
}

// poolIDs lists every pool of this host: those of other hosts sharing
// the store are their Docker engines' to keep.
func (m *Manager) poolIDs() ([]string, error) {
	var ids []string
	err := m.store.View(func(tx graph.Tx) error {
		ps, err := graph.ListCPools(tx)
		for _, p := range ps {
			if m.mine(p) == nil {
				ids = append(ids, p.ID)
			}
		}
		return err
	})
	return ids, err
}

// mine fails with a conflict for a pool of another host.
func (m *Manager) mine(p *graph.CPool) error {
	if p.Host == "" || p.Host == m.host {
		return nil
	}
	return graph.Errorf(graph.ErrConflict, "CPool %q runs on host %q's Docker engine: change it through that host's API", p.ID, p.Host)
}

// lock serializes operations on one pool.
func (m *Manager) lock(id string) func() {
	l, _ := m.locks.LoadOrStore(id, &sync.Mutex{})
	mu := l.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// publish sends pool events to monitors and notification streams.
func (m *Manager) publish(p *graph.CPool, action monitor.Action) {
	m.svc.Bus().Publish(monitor.Event{Action: action, Data: monitor.ObjectEvent{CPool: p.ID, State: string(p.State), Error: p.Error}})
}
