// Package monitor owns leviathan's event bus and what is served from it:
// the /leviathan/monitor websocket protocol (CIN membership, for service
// discovery) and the notification streams for operators and GNS3-style
// clients (/v2/notifications, newline-delimited JSON, and its websocket
// twin), and a GNS3 2.2 compute's notification websocket (pings with CPU
// and memory figures, node.updated). Client is the other end of
// /leviathan/monitor, for the command-line client.
//
// Events are published after the change they describe is committed, in
// commit order, each with the next sequence number. The publisher holds
// a lock across commit and publish (core does), and a snapshot taken
// under the same lock comes with the sequence number it is consistent
// with, so a client that starts from a snapshot and then applies events
// with higher numbers neither misses nor repeats a change.
//
// Threading: the Bus is safe for concurrent use. Publishing never blocks:
// every subscriber has a bounded queue, and a subscriber whose queue is
// full is dropped (its Done channel closes) rather than slowing the bus or
// the others. Each websocket connection has one reader and one writer
// goroutine; both end when the connection does. A Server counts its open
// connections and the events it writes (Stats) with atomics, so metrics
// can read them at any time.
package monitor

import (
	"sync"
	"time"
)

// Action names what an event says happened.
type Action string

// Event actions: leviathan's own, and the GNS3 ones whose shapes are set
// here (the VM side emits them).
const (
	ActionCINAddressCreate Action = "cin.address.create" // members gained an address in a CIN
	ActionCINAddressDelete Action = "cin.address.delete" // members lost their address in a CIN
	ActionCENMade          Action = "cen.made"
	ActionCENDestroyed     Action = "cen.destroyed"
	ActionCENFailed        Action = "cen.failed"
	ActionCINMade          Action = "cin.made"
	ActionCINDestroyed     Action = "cin.destroyed"
	ActionCINFailed        Action = "cin.failed"
	ActionContainerJoined  Action = "container.joined"
	ActionContainerLeft    Action = "container.left"
	ActionContainerStarted Action = "container.started" // its namespace came (back): its CENs wire it
	ActionContainerStopped Action = "container.stopped" // it stopped: its links left the kernel
	ActionLinkUpdated      Action = "link.updated"      // a member's link settings changed
	ActionCPoolCreated     Action = "cpool.created"
	ActionCPoolUpdated     Action = "cpool.updated" // its state, size or members changed
	ActionCPoolDeleted     Action = "cpool.deleted"
	ActionVMCreated        Action = "vm.created"
	ActionVMStarted        Action = "vm.started"
	ActionVMStopped        Action = "vm.stopped"
	ActionVMDeleted        Action = "vm.deleted"
	ActionLogError         Action = "log.error"
	ActionLogWarning       Action = "log.warning"
	ActionLogInfo          Action = "log.info"
	ActionPing             Action = "ping"
)

// Event is one committed change.
type Event struct {
	Seq    uint64
	Action Action
	// Data is the event's body: a CINAddresses for cin.address.*, else
	// the JSON object the notification streams show as "event".
	Data any
	// Remote says another host's API made the change: this host only
	// relays it (that host keeps its operation log).
	Remote bool
}

// Member is a container's address in a CIN, as the monitor protocol
// shows it.
type Member struct {
	Container string  `json:"containerID"`
	IP        string  `json:"ipaddress"`
	Tag       *string `json:"tag"`
}

// CINAddresses is the body of cin.address.create and .delete.
type CINAddresses struct {
	CIN     string   `json:"cinID"`
	Members []Member `json:"members"`
}

// ObjectEvent is the body of the cen.*, cin.* and container.* events.
type ObjectEvent struct {
	CEN       string `json:"cenID,omitempty"`
	CIN       string `json:"cinID,omitempty"`
	CPool     string `json:"cpoolID,omitempty"`
	Host      string `json:"hostID,omitempty"`
	Container string `json:"containerID,omitempty"`
	State     string `json:"state,omitempty"`
	Error     string `json:"error,omitempty"`
}

// VMEvent is the body of the vm.* events, as GNS3 sends them.
type VMEvent struct {
	VMID      string `json:"vm_id"`
	Name      string `json:"name"`
	ProjectID string `json:"project_id"`
	VMType    string `json:"vm_type"`
	Status    string `json:"status"`
	Console   int    `json:"console,omitempty"`
}

// LogEvent is the body of the log.* events.
type LogEvent struct {
	Message string `json:"message"`
}

// PingEvent is the body of a ping, sent when a stream is idle.
type PingEvent struct {
	Time time.Time `json:"time"`
}

// Bus fans committed events out to subscribers.
type Bus struct {
	mu        sync.Mutex // guards seq, subs, dropped and observers
	seq       uint64
	subs      map[*Sub]struct{}
	dropped   uint64 // subscribers dropped because their queue was full
	observers []func([]Event)
}

// Observe registers fn to see every batch of events as it is published,
// in order, synchronously: fn must be quick and must not publish.
func (b *Bus) Observe(fn func([]Event)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.observers = append(b.observers, fn)
}

// Sub is one subscriber's bounded queue.
type Sub struct {
	C    chan Event    // events, in order
	Done chan struct{} // closed when the bus dropped the subscriber
	bus  *Bus
	once sync.Once
}

// NewBus returns an empty bus.
func NewBus() *Bus { return &Bus{subs: map[*Sub]struct{}{}} }

// Publish numbers events and queues them for every subscriber, dropping
// the subscribers whose queue is full. It never blocks on a subscriber.
func (b *Bus) Publish(evs ...Event) {
	if len(evs) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range evs {
		b.seq++
		evs[i].Seq = b.seq
	}
	for _, fn := range b.observers {
		fn(evs)
	}
	for s := range b.subs {
	send:
		for _, e := range evs {
			select {
			case s.C <- e:
			default:
				s.drop()
				b.dropped++
				break send
			}
		}
	}
}

// Seq is the number of the last event published.
func (b *Bus) Seq() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seq
}

// Subscribe adds a subscriber with a queue of n events. It receives
// every event published after Subscribe returns; the sequence number
// returned is that of the last event it will not receive.
func (b *Bus) Subscribe(n int) (*Sub, uint64) {
	s := &Sub{C: make(chan Event, n), Done: make(chan struct{}), bus: b}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.subs[s] = struct{}{}
	return s, b.seq
}

// Close removes the subscriber.
func (s *Sub) Close() {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	s.drop()
}

// drop removes the subscriber; b.mu is held.
func (s *Sub) drop() {
	s.once.Do(func() {
		delete(s.bus.subs, s)
		close(s.Done)
	})
}

// Dropped is how many subscribers the bus has dropped because their
// queue was full: clients too slow to keep up.
func (b *Bus) Dropped() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dropped
}

// Subscribers is how many subscribers the bus has.
func (b *Bus) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}
