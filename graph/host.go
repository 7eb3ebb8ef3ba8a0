package graph

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Host is a host sharing the store: what the others must know to reach
// it and to agree with it. Its record stays when the host goes; whether
// it runs now is its key in BucketAlive.
type Host struct {
	ID string `json:"hostID"`
	// Underlay is the host's address on the network between hosts,
	// where its VXLAN ports are reached.
	Underlay  string `json:"underlay"`
	VXLANPort int    `json:"vxlan_port"`
	MTU       int    `json:"mtu"`
	// VNIRange is the range of VXLAN network identifiers it uses, as
	// "LO-HI" (e.g. "4096-16777215").
	VNIRange string    `json:"vni_range"`
	Version  string    `json:"version,omitempty"`
	Started  time.Time `json:"started"`
}

// Realized is what one host observed of its part of a CEN or CIN: the
// revision of the object it realized last, and the outcome.
type Realized struct {
	Host string `json:"host"`
	// Kind is RealizedCEN or RealizedCIN.
	Kind     string `json:"kind"`
	ID       string `json:"id"`
	Revision int64  `json:"revision"`
	State    State  `json:"state"`
	Error    string `json:"error,omitempty"`
}

// The kinds of object whose realization hosts record.
const (
	RealizedCEN = "cen"
	RealizedCIN = "cin"
)

// Buckets of several hosts.
const (
	// BucketHosts holds the Host records, by host ID.
	BucketHosts = "hosts"
	// BucketAlive holds a leased key per running host (see AnnounceHost).
	BucketAlive = "alive"
	// BucketRealized holds the Realized records, by RealizedKey.
	BucketRealized = "realized"
	// BucketEvents holds each host's recent events (core's), for the
	// other hosts' monitors, by host and slot.
	BucketEvents = "events"
)

// leasedBuckets are the buckets of leased keys: written by Announce, and
// emptied when a BoltStore opens (whoever announced them is gone).
var leasedBuckets = []string{BucketAlive}

// Alive is the value of a host's key in BucketAlive.
type Alive struct {
	// Since is when the host began announcing itself.
	Since time.Time `json:"since"`
}

// AnnounceHost keeps host id's key in BucketAlive while ctx lasts (see
// Store.Announce): the other hosts see it as running. It returns nil when
// ctx ends.
func AnnounceHost(ctx context.Context, s Store, id string, ttl time.Duration) error {
	if err := ValidateID("host", id); err != nil {
		return err
	}
	v, err := json.Marshal(Alive{Since: time.Now().UTC()})
	if err != nil {
		return err
	}
	return s.Announce(ctx, BucketAlive, id, v, ttl)
}

// ListAlive returns the IDs of the hosts whose key is in BucketAlive.
func ListAlive(tx Tx) (map[string]bool, error) {
	alive := map[string]bool{}
	err := tx.ForEach(BucketAlive, func(k string, _ []byte) error {
		alive[k] = true
		return nil
	})
	return alive, err
}

// GetHost reads one host's record; ErrNotFound if there is none.
func GetHost(tx Tx, id string) (*Host, error) {
	var h Host
	if err := get(tx, BucketHosts, id, &h); err != nil {
		return nil, fmt.Errorf("host %q: %w", id, err)
	}
	return &h, nil
}

// PutHost writes a host's record.
func PutHost(tx Tx, h *Host) error {
	if err := ValidateID("host", h.ID); err != nil {
		return err
	}
	return put(tx, BucketHosts, h.ID, h)
}

// ListHosts returns every host's record, ordered by ID.
func ListHosts(tx Tx) ([]*Host, error) { return list[Host](tx, BucketHosts) }

// RealizedKey is the key of a host's Realized record of an object:
// kind/id/host, so that an object's records are adjacent.
func RealizedKey(kind, id, host string) string { return kind + "/" + id + "/" + host }

// PutRealized writes a host's Realized record.
func PutRealized(tx Tx, r *Realized) error {
	if r.Kind != RealizedCEN && r.Kind != RealizedCIN {
		return Errorf(ErrInvalid, "realized record of kind %q: want %q or %q", r.Kind, RealizedCEN, RealizedCIN)
	}
	if err := ValidateID("host", r.Host); err != nil {
		return err
	}
	if err := ValidateID(r.Kind, r.ID); err != nil {
		return err
	}
	return put(tx, BucketRealized, RealizedKey(r.Kind, r.ID, r.Host), r)
}

// DeleteRealized removes a host's Realized record of an object.
func DeleteRealized(tx Tx, kind, id, host string) error {
	return tx.Delete(BucketRealized, RealizedKey(kind, id, host))
}

// ListRealized returns the Realized records of one object, every host's,
// ordered by host. It reads only that object's records.
func ListRealized(tx Tx, kind, id string) ([]*Realized, error) {
	var out []*Realized
	prefix := kind + "/" + id + "/"
	err := forEachPrefix(tx, BucketRealized, prefix, func(k string, v []byte) error {
		r := new(Realized)
		if err := decode(BucketRealized, k, v, r); err != nil {
			return err
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// prefixTx is a Tx that lists a bucket's keys under a prefix without
// reading the others.
type prefixTx interface {
	forEachPrefix(bucket, prefix string, fn func(key string, value []byte) error) error
}

// forEachPrefix calls fn for every key of bucket that starts with prefix,
// in ascending key order.
func forEachPrefix(tx Tx, bucket, prefix string, fn func(key string, value []byte) error) error {
	if p, ok := tx.(prefixTx); ok {
		return p.forEachPrefix(bucket, prefix, fn)
	}
	return tx.ForEach(bucket, func(k string, v []byte) error {
		if !strings.HasPrefix(k, prefix) {
			return nil
		}
		return fn(k, v)
	})
}
