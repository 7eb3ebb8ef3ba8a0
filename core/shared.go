package core

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/monitor"
)

// Events of several hosts. Each host publishes its own events on its bus
// as it commits; when other hosts share the store, it also writes them
// to graph.BucketEvents, where every other host's realizer reads them
// and publishes them on its own bus. So a monitor on any host sees every
// host's changes. A host's events take eventSlots keys, rewritten in
// turn: the bucket stays small, and a watcher sees every write.

const eventSlots = 1024

// sharedEvents is one commit's events, as the store holds them.
type sharedEvents struct {
	Host   string        `json:"host"`
	Seq    uint64        `json:"seq"`
	Events []sharedEvent `json:"events"`
}

type sharedEvent struct {
	Action monitor.Action  `json:"action"`
	Data   json.RawMessage `json:"data"`
}

// shareEvents writes evs for the other hosts, when there are any, in
// the transaction of the change they tell of. The caller holds evMu.
func (s *Service) shareEvents(tx graph.Tx, evs []monitor.Event) error {
	if len(evs) == 0 || !s.peers.shared() {
		return nil
	}
	se := sharedEvents{Host: s.host}
	for _, e := range evs {
		b, err := json.Marshal(e.Data)
		if err != nil {
			return fmt.Errorf("share event %s: %w", e.Action, err)
		}
		se.Events = append(se.Events, sharedEvent{Action: e.Action, Data: b})
	}
	s.evSeq++
	se.Seq = s.evSeq
	b, err := json.Marshal(se)
	if err != nil {
		return err
	}
	return tx.Put(graph.BucketEvents, fmt.Sprintf("%s/%04d", s.host, se.Seq%eventSlots), b)
}

// relayEvents publishes on this host's bus the events other hosts wrote
// in a commit.
func (s *Service) relayEvents(cm graph.Commit) {
	for _, ch := range cm.Changes {
		if ch.Bucket != graph.BucketEvents || ch.Deleted || strings.HasPrefix(ch.Key, s.host+"/") {
			continue
		}
		var se sharedEvents
		if err := json.Unmarshal(ch.Value, &se); err != nil {
			s.log.Warn("events of another host", "key", ch.Key, "err", err)
			continue
		}
		var evs []monitor.Event
		for _, e := range se.Events {
			ev := monitor.Event{Action: e.Action, Data: e.Data, Remote: true}
			if e.Action == monitor.ActionCINAddressCreate || e.Action == monitor.ActionCINAddressDelete {
				var ca monitor.CINAddresses
				if err := json.Unmarshal(e.Data, &ca); err != nil {
					continue
				}
				ev.Data = ca
			}
			evs = append(evs, ev)
		}
		s.evMu.Lock()
		s.bus.Publish(evs...)
		s.evMu.Unlock()
	}
}
