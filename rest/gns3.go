package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/vm"
)

// gns3Routes registers the GNS3 server API for VPCS VMs in both of its
// forms: v1 (/v1/projects/{pid}/vpcs/vms...) and the early v2
// (/v2/projects/{pid}/vms... with "vm_type"). Both name the same
// projects and VMs. Without a VM manager every route answers 503.
func (s *Server) gns3Routes() {
	s.handle(http.MethodGet, "/v1/version", s.version)
	s.handle(http.MethodPost, "/v1/ports/udp", s.needVMs(s.allocUDP))
	for _, v := range []string{"/v1", "/v2"} {
		s.handle(http.MethodPost, v+"/projects", s.needVMs(s.createProject))
		s.handle(http.MethodGet, v+"/projects", s.needVMs(s.listProjects))
		s.handle(http.MethodGet, v+"/projects/:pid", s.needVMs(s.getProject))
		s.handle(http.MethodDelete, v+"/projects/:pid", s.needVMs(s.deleteProject))
		s.handle(http.MethodPost, v+"/projects/:pid/ports/udp", s.needVMs(s.allocUDP))
	}
	s.vmRoutes("/v1/projects/:pid/vpcs/vms", false)
	s.vmRoutes("/v2/projects/:pid/vms", true)
}

func (s *Server) vmRoutes(base string, needType bool) {
	s.handle(http.MethodPost, base, s.needVMs(s.createVM(needType)))
	s.handle(http.MethodGet, base, s.needVMs(s.listVMs))
	one := base + "/:vmId"
	s.handle(http.MethodGet, one, s.needVMs(s.getVM))
	s.handle(http.MethodDelete, one, s.needVMs(s.vmOp((*vm.Manager).DeleteVM)))
	s.handle(http.MethodPost, one+"/start", s.needVMs(s.vmOp((*vm.Manager).StartVM)))
	s.handle(http.MethodPost, one+"/stop", s.needVMs(s.vmOp((*vm.Manager).StopVM)))
	s.handle(http.MethodPost, one+"/reload", s.needVMs(s.vmOp((*vm.Manager).ReloadVM)))
	nio := one + "/adapters/:adapter/ports/:port/nio"
	s.handle(http.MethodPost, nio, s.needVMs(s.setNIO(false)))
	s.handle(http.MethodPut, nio, s.needVMs(s.setNIO(true)))
	s.handle(http.MethodGet, nio, s.needVMs(s.getNIO))
	s.handle(http.MethodDelete, nio, s.needVMs(s.deleteNIO))
}

// needVMs answers 503 for h when this server has no VM manager; h can
// then take s.vmm as given.
func (s *Server) needVMs(h handler) handler {
	return func(c *gin.Context) (int, any, error) {
		if _, err := s.vms(); err != nil {
			return 0, nil, err
		}
		return h(c)
	}
}

// vms returns the VM manager, or the error that there is none.
func (s *Server) vms() (*vm.Manager, error) {
	if s.vmm == nil {
		return nil, graph.Errorf(graph.ErrUnavailable, "emulated VMs are not served by this server")
	}
	return s.vmm, nil
}

// decodeBody reads an optional JSON object; unknown fields are ignored,
// as GNS3 clients send more than a VPCS needs.
func decodeBody(c *gin.Context, v any) error {
	raw, err := io.ReadAll(c.Request.Body)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return graph.Errorf(graph.ErrInvalid, "request body: %v", err)
	}
	return nil
}

func (s *Server) createProject(c *gin.Context) (int, any, error) {
	m := s.vmm
	var spec vm.ProjectSpec
	if err := decodeBody(c, &spec); err != nil {
		return 0, nil, err
	}
	v, _, err := m.CreateProject(s.opCtx, spec)
	return http.StatusCreated, v, err
}

func (s *Server) listProjects(c *gin.Context) (int, any, error) {
	m := s.vmm
	v, err := m.ListProjects(c)
	return http.StatusOK, v, err
}

func (s *Server) getProject(c *gin.Context) (int, any, error) {
	m := s.vmm
	v, err := m.GetProject(c, c.Param("pid"))
	return http.StatusOK, v, err
}

func (s *Server) deleteProject(c *gin.Context) (int, any, error) {
	m := s.vmm
	return http.StatusNoContent, nil, m.DeleteProject(s.opCtx, c.Param("pid"))
}

// udpPort is the answer of POST .../ports/udp.
type udpPort struct {
	Port int `json:"udp_port"`
}

// allocUDP serves POST /v1/ports/udp (no pid: the port belongs to no
// project until a NIO takes it) and POST /v1|v2/projects/{pid}/ports/udp.
func (s *Server) allocUDP(c *gin.Context) (int, any, error) {
	m := s.vmm
	p, err := m.AllocUDP(s.opCtx, c.Param("pid"))
	return http.StatusCreated, udpPort{p}, err
}

func (s *Server) createVM(needType bool) handler {
	return func(c *gin.Context) (int, any, error) {
		m := s.vmm
		var spec vm.VMSpec
		if err := decodeBody(c, &spec); err != nil {
			return 0, nil, err
		}
		if needType && spec.Type == "" {
			return 0, nil, graph.Errorf(graph.ErrInvalid, `vm_type is required: "vpcs"`)
		}
		v, err := m.CreateVM(s.opCtx, c.Param("pid"), spec)
		return http.StatusCreated, v, err
	}
}

func (s *Server) listVMs(c *gin.Context) (int, any, error) {
	m := s.vmm
	v, err := m.ListVMs(c, c.Param("pid"))
	return http.StatusOK, v, err
}

func (s *Server) getVM(c *gin.Context) (int, any, error) {
	m := s.vmm
	v, err := m.GetVM(c, c.Param("pid"), c.Param("vmId"))
	return http.StatusOK, v, err
}

// vmOp serves start, stop, reload and delete: 204 when done.
func (s *Server) vmOp(op func(*vm.Manager, context.Context, string, string) error) handler {
	return func(c *gin.Context) (int, any, error) {
		m := s.vmm
		return http.StatusNoContent, nil, op(m, s.opCtx, c.Param("pid"), c.Param("vmId"))
	}
}

// adapterPort reads the adapter and port numbers of a NIO path.
func adapterPort(c *gin.Context) (int, int, error) {
	a, err := strconv.Atoi(c.Param("adapter"))
	if err != nil {
		return 0, 0, graph.Errorf(graph.ErrInvalid, "adapter %q: want a number", c.Param("adapter"))
	}
	p, err := strconv.Atoi(c.Param("port"))
	if err != nil {
		return 0, 0, graph.Errorf(graph.ErrInvalid, "port %q: want a number", c.Param("port"))
	}
	return a, p, nil
}

// setNIO serves POST (create or replace: 201) and PUT (change an
// existing one: 200) of a NIO.
func (s *Server) setNIO(put bool) handler {
	return func(c *gin.Context) (int, any, error) {
		m := s.vmm
		a, p, err := adapterPort(c)
		if err != nil {
			return 0, nil, err
		}
		var spec vm.NIOSpec
		if err := decodeBody(c, &spec); err != nil {
			return 0, nil, err
		}
		v, err := m.SetNIO(s.opCtx, c.Param("pid"), c.Param("vmId"), a, p, spec, put)
		if put {
			return http.StatusOK, v, err
		}
		return http.StatusCreated, v, err
	}
}

func (s *Server) getNIO(c *gin.Context) (int, any, error) {
	m := s.vmm
	a, p, err := adapterPort(c)
	if err != nil {
		return 0, nil, err
	}
	v, err := m.GetNIO(c, c.Param("pid"), c.Param("vmId"), a, p)
	return http.StatusOK, v, err
}

func (s *Server) deleteNIO(c *gin.Context) (int, any, error) {
	m := s.vmm
	a, p, err := adapterPort(c)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, m.DeleteNIO(s.opCtx, c.Param("pid"), c.Param("vmId"), a, p)
}
