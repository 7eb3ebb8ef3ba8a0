package graph

import (
	"context"
	"net"
	"strconv"
	"strings"
)

// StoreSpec says which Store to open: the embedded bbolt file, or an etcd
// cluster when Endpoints is set.
type StoreSpec struct {
	// Dir holds the bbolt file; "" means the state directory.
	Dir string
	// Endpoints are the etcd cluster's members, as host:port.
	Endpoints []string
	// Prefix is the etcd key prefix under which the store lives.
	Prefix string
}

// DefaultEtcdPrefix is the prefix of an etcd store URL that names none.
const DefaultEtcdPrefix = "leviathan"

// ParseStoreURL parses a --store value:
//
//	""  or  "bolt"                          the bbolt file under --state-dir (the default)
//	"bolt:///DIR"                           the bbolt file in DIR
//	"etcd://HOST:PORT[,HOST:PORT...]/PREFIX"  an etcd cluster, keys under PREFIX
//	                                        (DefaultEtcdPrefix when none is given)
func ParseStoreURL(s string) (StoreSpec, error) {
	switch {
	case s == "" || s == "bolt":
		return StoreSpec{}, nil
	case strings.HasPrefix(s, "bolt://"):
		dir := strings.TrimPrefix(s, "bolt://")
		if !strings.HasPrefix(dir, "/") {
			return StoreSpec{}, Errorf(ErrInvalid, "store URL %q: want bolt:///ABSOLUTE/DIR", s)
		}
		return StoreSpec{Dir: dir}, nil
	case strings.HasPrefix(s, "etcd://"):
		hosts, prefix, _ := strings.Cut(strings.TrimPrefix(s, "etcd://"), "/")
		spec := StoreSpec{Prefix: strings.Trim(prefix, "/")}
		if spec.Prefix == "" {
			spec.Prefix = DefaultEtcdPrefix
		}
		for _, hp := range strings.Split(hosts, ",") {
			host, port, err := net.SplitHostPort(hp)
			if err != nil || host == "" {
				return StoreSpec{}, Errorf(ErrInvalid, "store URL %q: endpoint %q: want HOST:PORT", s, hp)
			}
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				return StoreSpec{}, Errorf(ErrInvalid, "store URL %q: endpoint %q: bad port", s, hp)
			}
			spec.Endpoints = append(spec.Endpoints, hp)
		}
		return spec, nil
	}
	return StoreSpec{}, Errorf(ErrInvalid, "store URL %q: want bolt, bolt:///DIR or etcd://HOST:PORT[,HOST:PORT...]/PREFIX", s)
}

// OpenStore opens the store spec names; stateDir holds the bbolt file
// when spec names no directory of its own.
func OpenStore(ctx context.Context, spec StoreSpec, stateDir string) (Store, error) {
	// Each branch returns a nil Store, not a nil pointer in one, on error.
	if len(spec.Endpoints) > 0 {
		s, err := OpenEtcd(ctx, spec.Endpoints, spec.Prefix)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	if spec.Dir != "" {
		stateDir = spec.Dir
	}
	s, err := OpenBolt(stateDir)
	if err != nil {
		return nil, err
	}
	return s, nil
}

var (
	_ Store = (*BoltStore)(nil)
	_ Store = (*EtcdStore)(nil)
)
