package vm

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"

	"github.com/leviathan-net/leviathan/graph"
)

// ProjectSpec is the body of POST /v1|v2/projects; every field is
// optional.
type ProjectSpec struct {
	ID        string `json:"project_id"`
	Name      string `json:"name"`
	Temporary bool   `json:"temporary"`
}

// ProjectView is a project as the GNS3-style API shows it.
type ProjectView struct {
	ID        string `json:"project_id"`
	Name      string `json:"name"`
	Temporary bool   `json:"temporary"`
	// Path is the project's directory on the server.
	Path string `json:"path"`
}

func (m *Manager) projectView(p *graph.Project) ProjectView {
	return ProjectView{ID: p.ID, Name: p.Name, Temporary: p.Temporary, Path: m.projectDir(p.ID)}
}

// CreateProject creates a project, with the ID given or a new one. A
// project that exists already is returned as it is, created false.
func (m *Manager) CreateProject(ctx context.Context, spec ProjectSpec) (view ProjectView, created bool, err error) {
	if spec.ID == "" {
		spec.ID = newUUID()
	} else if err := checkUUID("project_id", spec.ID); err != nil {
		return ProjectView{}, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ProjectView{}, false, errClosed
	}
	if m.projects[spec.ID] != nil {
		v, err := m.GetProject(ctx, spec.ID)
		return v, false, err
	}
	rec := &graph.Project{ID: spec.ID, Name: spec.Name, Temporary: spec.Temporary}
	if err := os.MkdirAll(m.projectDir(rec.ID), 0o755); err != nil {
		return ProjectView{}, false, fmt.Errorf("project directory: %w", err)
	}
	if err := m.cfg.Store.Update(func(tx graph.Tx) error { return graph.PutProject(tx, rec) }); err != nil {
		os.RemoveAll(m.projectDir(rec.ID))
		return ProjectView{}, false, err
	}
	m.projects[rec.ID] = &project{id: rec.ID, lock: make(chan struct{}, 1)}
	return m.projectView(rec), true, nil
}

var errClosed = graph.Errorf(graph.ErrUnavailable, "the VM manager is shutting down")

// ListProjects returns every project, ordered by ID.
func (m *Manager) ListProjects(ctx context.Context) ([]ProjectView, error) {
	var recs []*graph.Project
	err := m.cfg.Store.View(func(tx graph.Tx) (err error) {
		recs, err = graph.ListProjects(tx)
		return err
	})
	out := []ProjectView{}
	for _, p := range recs {
		out = append(out, m.projectView(p))
	}
	return out, err
}

// GetProject returns one project.
func (m *Manager) GetProject(ctx context.Context, id string) (ProjectView, error) {
	var rec *graph.Project
	err := m.cfg.Store.View(func(tx graph.Tx) (err error) {
		rec, err = graph.GetProject(tx, id)
		return err
	})
	if err != nil {
		return ProjectView{}, err
	}
	return m.projectView(rec), nil
}

// lockProject takes a project's lock; ErrNotFound when there is no such
// project (any more).
func (m *Manager) lockProject(ctx context.Context, id string) (*project, error) {
	m.mu.Lock()
	p, closed := m.projects[id], m.closed
	m.mu.Unlock()
	if closed {
		return nil, errClosed
	}
	if p == nil {
		return nil, graph.Errorf(graph.ErrNotFound, "project %q not found", id)
	}
	if err := lock(ctx, p.lock); err != nil {
		return nil, err
	}
	if p.gone {
		unlock(p.lock)
		return nil, graph.Errorf(graph.ErrNotFound, "project %q not found", id)
	}
	return p, nil
}

// DeleteProject stops and deletes the project's VMs (each announced with
// vm.deleted), lets go of every port it holds and removes its directory.
func (m *Manager) DeleteProject(ctx context.Context, id string) error {
	return m.removeProject(ctx, id, false)
}

// removeProject deletes a project, its switches and VMs, keeping its
// directory with keepFiles (a closed GNS3 project keeps its files).
func (m *Manager) removeProject(ctx context.Context, id string, keepFiles bool) error {
	p, err := m.lockProject(ctx, id)
	if err != nil {
		return err
	}
	defer unlock(p.lock)
	if err := m.deleteSwitchesOf(ctx, id); err != nil {
		return err
	}
	var errs []error
	for _, n := range m.sortedNodes(func(n *node) bool { return n.project == id }) {
		if err := lock(ctx, n.lock); err != nil {
			return err
		}
		if !n.gone {
			errs = append(errs, m.deleteLocked(n, keepFiles))
		}
		unlock(n.lock)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := m.cfg.Store.Update(func(tx graph.Tx) error { return graph.DeleteProject(tx, id) }); err != nil {
		return err
	}
	p.gone = true
	m.mu.Lock()
	delete(m.projects, id)
	m.mu.Unlock()
	freed := m.cfg.Ports.Release(id)
	m.log.Info("project deleted", "project", id, "ports", len(freed), "files_kept", keepFiles)
	if keepFiles {
		return nil
	}
	if err := os.RemoveAll(m.projectDir(id)); err != nil {
		m.log.Warn("remove project directory", "project", id, "err", err)
	}
	return nil
}

// AllocUDP hands out a UDP port for a NIO, held for the project until the
// project goes or a NIO that used it goes. With project "" (POST
// /v1/ports/udp) the port is held for no project until a NIO takes it.
func (m *Manager) AllocUDP(ctx context.Context, projectID string) (int, error) {
	if projectID == "" {
		m.mu.Lock()
		closed := m.closed
		m.mu.Unlock()
		if closed {
			return 0, errClosed
		}
		return m.allocUDP(globalOwner)
	}
	p, err := m.lockProject(ctx, projectID)
	if err != nil {
		return 0, err
	}
	defer unlock(p.lock)
	port, err := m.allocUDP(projectID)
	if err != nil {
		return 0, err
	}
	err = m.cfg.Store.Update(func(tx graph.Tx) error {
		rec, err := graph.GetProject(tx, projectID)
		if err != nil {
			return err
		}
		rec.UDPPorts = append(rec.UDPPorts, port)
		return graph.PutProject(tx, rec)
	})
	if err != nil {
		m.cfg.Ports.Free(Port{UDP, port})
		return 0, err
	}
	return port, nil
}

func (m *Manager) allocUDP(owner string) (int, error) {
	port, err := m.cfg.Ports.AllocUDP(owner, netip.Addr{})
	if errors.Is(err, ErrExhausted) {
		return 0, graph.Errorf(graph.ErrConflict, "%w", err)
	}
	return port, err
}

// claimUDP gives a NIO's local port to VM vmID of project pid: a port
// the project holds and no VM binds, one POST /v1/ports/udp handed out,
// or one nobody holds. Anything else is a conflict.
func (m *Manager) claimUDP(pid, vmID string, port int) (undo func(), err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if user, ok := m.udpUse[port]; ok {
		return nil, graph.Errorf(graph.ErrConflict, "UDP port %d is in use by VM %s", port, user)
	}
	q := Port{UDP, port}
	owner, held := m.cfg.Ports.Owner(q)
	switch {
	case held && owner == pid:
	case held && owner == globalOwner:
		m.cfg.Ports.Free(q)
		fallthrough
	case !held:
		if err := m.cfg.Ports.Reserve(pid, q); err != nil {
			return nil, graph.Errorf(graph.ErrConflict, "%w", err)
		}
	default:
		return nil, graph.Errorf(graph.ErrConflict, "UDP port %d belongs to another project", port)
	}
	m.udpUse[port] = vmID
	return func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		delete(m.udpUse, port)
		if !held || owner == globalOwner {
			m.cfg.Ports.Free(q)
		}
	}, nil
}

// releaseUDP lets go of a NIO's local port, which its project no longer
// holds either.
func (m *Manager) releaseUDP(pid string, port int) {
	m.mu.Lock()
	delete(m.udpUse, port)
	m.cfg.Ports.Free(Port{UDP, port})
	m.mu.Unlock()
	err := m.cfg.Store.Update(func(tx graph.Tx) error {
		rec, err := graph.GetProject(tx, pid)
		if err != nil {
			return err
		}
		i := slices.Index(rec.UDPPorts, port)
		if i < 0 {
			return nil
		}
		rec.UDPPorts = slices.Delete(rec.UDPPorts, i, i+1)
		return graph.PutProject(tx, rec)
	})
	if err != nil {
		m.log.Warn("release UDP port", "project", pid, "port", port, "err", err)
	}
}
