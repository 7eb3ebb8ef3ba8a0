package core

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/leviathan-net/leviathan/cen"
	"github.com/leviathan-net/leviathan/graph"
)

// ExportFormat and ExportVersion name what an Export is.
const (
	ExportFormat  = "leviathan-export"
	ExportVersion = 1
)

// Export is the whole desired state of a fabric, as GET /export gives it
// and POST /import takes it: every CEN, CIN, container and pool, with
// what makes a rebuild identical (link groups, subnets, every member's
// address; MACs and interface names follow from the IDs).
type Export struct {
	Format     string             `json:"format"`
	Version    int                `json:"version"`
	Host       string             `json:"hostID"`
	Exported   time.Time          `json:"exported"`
	CENs       []*graph.CEN       `json:"cens"`
	CINs       []*graph.CIN       `json:"cins"`
	Containers []*graph.Container `json:"containers"`
	CPools     []*graph.CPool     `json:"cpools"`
}

// ImportResult says what an import created.
type ImportResult struct {
	CENs       int `json:"cens"`
	CINs       int `json:"cins"`
	Containers int `json:"containers"`
	CPools     int `json:"cpools"`
}

// Export reads the whole desired state in one transaction.
func (s *Service) Export(ctx context.Context) (Export, error) {
	x := Export{Format: ExportFormat, Version: ExportVersion, Host: s.host, Exported: time.Now().UTC()}
	err := s.store.View(func(tx graph.Tx) (err error) {
		if x.CENs, err = graph.ListCENs(tx); err != nil {
			return err
		}
		if x.CINs, err = graph.ListCINs(tx); err != nil {
			return err
		}
		if x.Containers, err = graph.ListContainers(tx); err != nil {
			return err
		}
		x.CPools, err = graph.ListCPools(tx)
		return err
	})
	x.CENs, x.CINs, x.Containers, x.CPools = orEmpty(x.CENs), orEmpty(x.CINs), orEmpty(x.Containers), orEmpty(x.CPools)
	return x, err
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// Import recreates an exported fabric on a server that holds nothing
// (a conflict otherwise), all of it or nothing. Everything comes in
// defined, not made: a make then rebuilds the same kernel state, with
// the same interface names, MACs and addresses. Objects of another host
// ID are moved to this server's. Containers are found again by their
// runtimes (a namespace leviathan owns is made anew); pools are recorded
// pending, and the pool manager launches their containers.
func (s *Service) Import(ctx context.Context, x Export) (ImportResult, error) {
	var res ImportResult
	if x.Format != ExportFormat || x.Version != ExportVersion {
		return res, graph.Errorf(graph.ErrInvalid, "import: want a %s document of version %d, got %q version %d", ExportFormat, ExportVersion, x.Format, x.Version)
	}
	if err := graph.ValidateID("host", x.Host); err != nil {
		return res, fmt.Errorf("import: %w", err)
	}
	if err := s.checkImport(&x); err != nil {
		return res, err
	}
	// Containers as this server's runtimes find them (I/O outside the
	// transaction); their tags and default routes come along.
	for i, c := range x.Containers {
		n, err := s.reimportContainer(ctx, c)
		if err != nil {
			return res, fmt.Errorf("import: %w", err)
		}
		x.Containers[i] = n
	}
	// The check that the server is empty and the writes are one
	// transaction: nothing created meanwhile is overwritten.
	err := s.commit(func(tx graph.Tx) error {
		for _, list := range []func(graph.Tx) (int, error){
			func(tx graph.Tx) (int, error) { cs, err := graph.ListCENs(tx); return len(cs), err },
			func(tx graph.Tx) (int, error) { cs, err := graph.ListCINs(tx); return len(cs), err },
			func(tx graph.Tx) (int, error) { cs, err := graph.ListContainers(tx); return len(cs), err },
			func(tx graph.Tx) (int, error) { cs, err := graph.ListCPools(tx); return len(cs), err },
		} {
			n, err := list(tx)
			if err != nil {
				return err
			}
			if n > 0 {
				return graph.Errorf(graph.ErrConflict, "import: this server holds objects already; import needs an empty one (delete them, or start with an empty --state-dir)")
			}
		}
		for _, c := range x.Containers {
			if err := graph.PutContainer(tx, c); err != nil {
				return err
			}
		}
		for _, c := range x.CENs {
			c.State, c.Error = graph.StatePending, ""
			if err := s.putCEN(tx, c); err != nil {
				return err
			}
		}
		for _, c := range x.CINs {
			c.State, c.Error = graph.StatePending, ""
			if err := s.putCIN(tx, c); err != nil {
				return err
			}
		}
		for _, p := range x.CPools {
			p.State, p.Error = graph.StatePending, ""
			if err := graph.PutCPool(tx, p); err != nil {
				return err
			}
		}
		return nil
	}, nil)
	if err != nil {
		return res, err
	}
	if err := s.refresh(ctx, x.Containers); err != nil {
		s.log.Warn("import: observing containers", "err", err)
	}
	return ImportResult{CENs: len(x.CENs), CINs: len(x.CINs), Containers: len(x.Containers), CPools: len(x.CPools)}, nil
}

// reimportContainer finds an exported container again on this server: a
// namespace by this server's runtimes; a Docker container stays one (it
// is observed, and shown stopped until it runs here).
func (s *Service) reimportContainer(ctx context.Context, c *graph.Container) (*graph.Container, error) {
	n := *c
	n.State, n.Error = "", ""
	if c.Runtime == graph.RuntimeDocker {
		return &n, nil
	}
	r, err := s.resolve(ctx, c.Host, c.ID)
	if err != nil {
		return nil, err
	}
	n.Runtime, n.Netns, n.Owned, n.State = r.Runtime, r.Netns, r.Owned, r.State
	return &n, nil
}

// checkImport validates a document whole, and moves it to this host.
func (s *Service) checkImport(x *Export) error {
	bad := func(format string, args ...any) error {
		return graph.Errorf(graph.ErrInvalid, "import: "+format, args...)
	}
	rehost := func(h string) string {
		if h == x.Host {
			return s.host
		}
		return h
	}
	ctrs := map[graph.Member]bool{}
	for _, c := range x.Containers {
		if c == nil {
			return bad("a null container")
		}
		c.Host = rehost(c.Host)
		if c.Host != s.host {
			return bad("container %q is on host %q: this server is %q, and an export holds one host", c.ID, c.Host, s.host)
		}
		if err := graph.ValidateID("container", c.ID); err != nil {
			return bad("%w", err)
		}
		if ctrs[c.Member()] {
			return bad("container %q listed twice", c.ID)
		}
		ctrs[c.Member()] = true
	}
	cens := map[string]*graph.CEN{}
	names, groups := map[string]string{}, map[uint32]string{}
	for _, c := range x.CENs {
		if c == nil {
			return bad("a null CEN")
		}
		if err := cen.ValidateCENID(c.ID); err != nil {
			return bad("%w", err)
		}
		if cens[c.ID] != nil {
			return bad("CEN %q listed twice", c.ID)
		}
		cens[c.ID] = c
		if c.IfName != cen.IfName(c.ID) {
			return bad("CEN %q: interface name %q, want %q", c.ID, c.IfName, cen.IfName(c.ID))
		}
		if !cen.IsOwnGroup(c.Group) || c.Group == cen.DyingGroup {
			return bad("CEN %q: link group %#x is not one of leviathan's", c.ID, c.Group)
		}
		if o, ok := groups[c.Group]; ok {
			return bad("CENs %q and %q share link group %#x", o, c.ID, c.Group)
		}
		groups[c.Group] = c.ID
		if o, ok := names[c.IfName]; ok {
			return bad("CENs %q and %q share interface name %q", o, c.ID, c.IfName)
		}
		names[c.IfName] = c.ID
		links := map[string]*graph.LinkSettings{}
		for i, m := range c.Members {
			m.Host = rehost(m.Host)
			c.Members[i] = m
			if !ctrs[m] {
				return bad("CEN %q: member %q is not among the containers", c.ID, m.Container)
			}
		}
		for k, l := range c.Links {
			h, id, _ := strings.Cut(k, "/")
			m := graph.Member{Host: rehost(h), Container: id}
			if !c.HasMember(m) {
				return bad("CEN %q: link settings of %q, which is not a member", c.ID, k)
			}
			links[m.Key()] = l
		}
		if len(links) > 0 {
			c.Links = links
		}
	}
	tables := map[int]string{}
	for _, c := range x.CINs {
		if c == nil {
			return bad("a null CIN")
		}
		if err := graph.ValidateID("CIN", c.ID); err != nil {
			return bad("%w", err)
		}
		p, err := netip.ParsePrefix(c.Prefix)
		if err != nil || !p.Addr().Is4() || p.Masked() != p {
			return bad("CIN %q: prefix %q is not an IPv4 network", c.ID, c.Prefix)
		}
		if o, ok := tables[c.Table]; ok {
			return bad("CINs %q and %q share routing table %d", o, c.ID, c.Table)
		}
		tables[c.Table] = c.ID
		for _, id := range c.CENs {
			if cens[id] == nil {
				return bad("CIN %q spans CEN %q, which is not in the document", c.ID, id)
			}
		}
		addrs := map[string]string{}
		for k, a := range c.Addrs {
			parts := strings.SplitN(k, "|", 3)
			if len(parts) != 3 {
				return bad("CIN %q: address key %q", c.ID, k)
			}
			ip, err := netip.ParseAddr(a)
			if err != nil || !p.Contains(ip) {
				return bad("CIN %q: address %q is not in %s", c.ID, a, p)
			}
			addrs[graph.AddrKey(parts[0], graph.Member{Host: rehost(parts[1]), Container: parts[2]})] = a
		}
		c.Addrs = addrs
	}
	for _, p := range x.CPools {
		if p == nil {
			return bad("a null CPool")
		}
		if err := graph.ValidateID("CPool", p.ID); err != nil {
			return bad("%w", err)
		}
		for _, e := range p.CINs {
			if cens[e.CEN] == nil {
				return bad("CPool %q joins CEN %q, which is not in the document", p.ID, e.CEN)
			}
		}
	}
	return nil
}
