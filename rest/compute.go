package rest

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/leviathan-net/leviathan/vm"
)

// DefaultGNS3Version is the GNS3 version the compute API reports: a GNS3
// controller accepts only a compute of its own version.
const DefaultGNS3Version = "2.2.59"

// computeFlush bounds the wait for node.updated to reach the controller's
// websocket before a start or stop is answered.
const computeFlush = 2 * time.Second

// computeRoutes registers the GNS3 2.2 compute API, what a GNS3
// controller calls on a remote server: projects, VPCS nodes, Ethernet
// switches and hubs (which are CENs), their NIOs and captures, and the
// notification websocket. docs/manual.md ("A GNS3 2.2 compute") says
// what is served.
func (s *Server) computeRoutes() {
	const base = "/v2/compute"
	s.handle(http.MethodGet, base+"/capabilities", s.needVMs(s.capabilities))
	s.stream(http.MethodGet, base+"/notifications/ws", s.mon.ServeComputeWS)
	s.handle(http.MethodPost, base+"/projects", s.needVMs(s.computeOpenProject))
	s.handle(http.MethodGet, base+"/projects", s.needVMs(s.computeProjects))
	s.handle(http.MethodGet, base+"/projects/:pid", s.needVMs(s.computeProject))
	s.handle(http.MethodDelete, base+"/projects/:pid", s.needVMs(s.deleteProject))
	s.handle(http.MethodPost, base+"/projects/:pid/close", s.needVMs(s.computeCloseProject))
	s.handle(http.MethodPost, base+"/projects/:pid/ports/udp", s.needVMs(s.allocUDP))
	for _, typ := range vm.NodeTypes {
		nodes := base + "/projects/:pid/" + typ + "/nodes"
		one := nodes + "/:nid"
		port := one + "/adapters/:adapter/ports/:port"
		s.handle(http.MethodPost, nodes, s.needVMs(s.computeCreateNode(typ)))
		s.handle(http.MethodGet, nodes, s.needVMs(s.computeNodes(typ)))
		s.handle(http.MethodGet, one, s.needVMs(s.computeNode(typ)))
		s.handle(http.MethodPut, one, s.needVMs(s.computeUpdateNode(typ)))
		s.handle(http.MethodDelete, one, s.needVMs(s.computeDeleteNode(typ)))
		for _, op := range []string{"start", "stop", "reload", "suspend"} {
			s.handle(http.MethodPost, one+"/"+op, s.needVMs(s.computeNodeOp(typ, op)))
		}
		s.handle(http.MethodPost, port+"/nio", s.needVMs(s.computeSetNIO(typ, false)))
		s.handle(http.MethodPut, port+"/nio", s.needVMs(s.computeSetNIO(typ, true)))
		s.handle(http.MethodDelete, port+"/nio", s.needVMs(s.computeDeleteNIO(typ)))
		s.handle(http.MethodPost, port+"/start_capture", s.needVMs(s.computeStartCapture))
		s.handle(http.MethodPost, port+"/stop_capture", s.needVMs(s.computeStopCapture))
		s.raw(http.MethodGet, port+"/pcap", s.computePcap)
	}
}

// capabilitiesBody is GET /v2/compute/capabilities: exactly these keys,
// or a controller refuses the compute.
type capabilitiesBody struct {
	Version   string   `json:"version"`
	NodeTypes []string `json:"node_types"`
	Platform  string   `json:"platform"`
}

func (s *Server) capabilities(c *gin.Context) (int, any, error) {
	return http.StatusOK, capabilitiesBody{Version: s.gns3Version, NodeTypes: vm.NodeTypes, Platform: "linux"}, nil
}

func (s *Server) computeOpenProject(c *gin.Context) (int, any, error) {
	m := s.vmm
	var spec vm.ComputeProjectSpec
	if err := decodeBody(c, &spec); err != nil {
		return 0, nil, err
	}
	v, err := m.OpenComputeProject(s.opCtx, spec)
	return http.StatusCreated, v, err
}

func (s *Server) computeProjects(c *gin.Context) (int, any, error) {
	m := s.vmm
	v, err := m.ComputeProjects(c)
	return http.StatusOK, v, err
}

func (s *Server) computeProject(c *gin.Context) (int, any, error) {
	m := s.vmm
	v, err := m.ComputeProject(c, c.Param("pid"))
	return http.StatusOK, v, err
}

func (s *Server) computeCloseProject(c *gin.Context) (int, any, error) {
	m := s.vmm
	return http.StatusNoContent, nil, m.CloseProject(s.opCtx, c.Param("pid"))
}

func isSwitch(typ string) bool { return typ != vm.NodeTypeVPCS }

func (s *Server) computeCreateNode(typ string) handler {
	return func(c *gin.Context) (int, any, error) {
		m := s.vmm
		var spec vm.NodeSpec
		if err := decodeBody(c, &spec); err != nil {
			return 0, nil, err
		}
		if isSwitch(typ) {
			v, err := m.CreateSwitch(s.opCtx, c.Param("pid"), typ, spec)
			return http.StatusCreated, v, err
		}
		v, err := m.CreateVPCSNode(s.opCtx, c.Param("pid"), spec)
		return http.StatusCreated, v, err
	}
}

func (s *Server) computeNodes(typ string) handler {
	return func(c *gin.Context) (int, any, error) {
		m := s.vmm
		if isSwitch(typ) {
			v, err := m.Switches(c, c.Param("pid"), typ)
			return http.StatusOK, v, err
		}
		v, err := m.VPCSNodes(c, c.Param("pid"))
		return http.StatusOK, v, err
	}
}

func (s *Server) computeNode(typ string) handler {
	return func(c *gin.Context) (int, any, error) {
		m := s.vmm
		if isSwitch(typ) {
			v, err := m.Switch(c, c.Param("pid"), typ, c.Param("nid"))
			return http.StatusOK, v, err
		}
		v, err := m.VPCSNode(c, c.Param("pid"), c.Param("nid"))
		return http.StatusOK, v, err
	}
}

func (s *Server) computeUpdateNode(typ string) handler {
	return func(c *gin.Context) (int, any, error) {
		m := s.vmm
		var spec vm.NodeSpec
		if err := decodeBody(c, &spec); err != nil {
			return 0, nil, err
		}
		var v any
		var err error
		if isSwitch(typ) {
			v, err = m.UpdateSwitch(s.opCtx, c.Param("pid"), typ, c.Param("nid"), spec)
		} else {
			v, err = m.UpdateVPCSNode(s.opCtx, c.Param("pid"), c.Param("nid"), spec)
		}
		if err == nil {
			s.flushCompute()
		}
		return http.StatusOK, v, err
	}
}

func (s *Server) computeDeleteNode(typ string) handler {
	return func(c *gin.Context) (int, any, error) {
		m := s.vmm
		if isSwitch(typ) {
			return http.StatusNoContent, nil, m.DeleteSwitch(s.opCtx, c.Param("pid"), typ, c.Param("nid"))
		}
		if _, err := m.VPCSNode(c, c.Param("pid"), c.Param("nid")); err != nil {
			return 0, nil, err
		}
		return http.StatusNoContent, nil, m.DeleteVM(s.opCtx, c.Param("pid"), c.Param("nid"))
	}
}

// computeNodeOp serves start, stop, reload and suspend. The node's
// node.updated is written to the controller's websocket before the
// answer: a controller learns a node's status only from it.
func (s *Server) computeNodeOp(typ, op string) handler {
	vpcs := map[string]func(*vm.Manager, context.Context, string, string) error{
		"start": (*vm.Manager).StartVM, "stop": (*vm.Manager).StopVM,
		"reload": (*vm.Manager).ReloadVM, "suspend": (*vm.Manager).SuspendVPCSNode,
	}[op]
	return func(c *gin.Context) (int, any, error) {
		m := s.vmm
		pid, nid := c.Param("pid"), c.Param("nid")
		var err error
		if isSwitch(typ) {
			err = m.SwitchStatus(s.opCtx, pid, typ, nid)
		} else {
			err = vpcs(m, s.opCtx, pid, nid)
		}
		if err != nil {
			return 0, nil, err
		}
		s.flushCompute()
		return http.StatusNoContent, nil, nil
	}
}

// flushCompute waits for the compute websockets to have written what
// was published so far, within computeFlush.
func (s *Server) flushCompute() {
	ctx, cancel := context.WithTimeout(s.opCtx, computeFlush)
	defer cancel()
	s.mon.FlushCompute(ctx)
}

func (s *Server) computeSetNIO(typ string, put bool) handler {
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
		var v vm.NIOView
		if isSwitch(typ) {
			v, err = m.SetSwitchNIO(s.opCtx, c.Param("pid"), typ, c.Param("nid"), a, p, spec, put)
		} else {
			v, err = m.SetNIO(s.opCtx, c.Param("pid"), c.Param("nid"), a, p, spec, put)
		}
		if put {
			return http.StatusOK, v, err
		}
		return http.StatusCreated, v, err
	}
}

func (s *Server) computeDeleteNIO(typ string) handler {
	return func(c *gin.Context) (int, any, error) {
		m := s.vmm
		a, p, err := adapterPort(c)
		if err != nil {
			return 0, nil, err
		}
		if isSwitch(typ) {
			return http.StatusNoContent, nil, m.DeleteSwitchNIO(s.opCtx, c.Param("pid"), typ, c.Param("nid"), a, p)
		}
		return http.StatusNoContent, nil, m.DeleteNIO(s.opCtx, c.Param("pid"), c.Param("nid"), a, p)
	}
}

func (s *Server) computeStartCapture(c *gin.Context) (int, any, error) {
	m := s.vmm
	a, p, err := adapterPort(c)
	if err != nil {
		return 0, nil, err
	}
	var spec vm.CaptureSpec
	if err := decodeBody(c, &spec); err != nil {
		return 0, nil, err
	}
	v, err := m.StartCapture(s.opCtx, c.Param("pid"), c.Param("nid"), a, p, spec)
	return http.StatusOK, v, err
}

func (s *Server) computeStopCapture(c *gin.Context) (int, any, error) {
	m := s.vmm
	a, p, err := adapterPort(c)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, m.StopCapture(s.opCtx, c.Param("pid"), c.Param("nid"), a, p)
}

// computePcap streams a port's capture file as it grows, until the
// capture stops or the client goes.
func (s *Server) computePcap(c *gin.Context) error {
	m, err := s.vms()
	if err != nil {
		return err
	}
	a, p, err := adapterPort(c)
	if err != nil {
		return err
	}
	pid, nid := c.Param("pid"), c.Param("nid")
	if err := m.CaptureRunning(pid, nid, a, p); err != nil {
		return err
	}
	h := c.Writer.Header()
	h.Set("Content-Type", "application/vnd.tcpdump.pcap")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", nid+".pcap"))
	c.Status(http.StatusOK)
	rc := http.NewResponseController(c.Writer)
	rc.SetWriteDeadline(time.Time{})
	if err := m.StreamCapture(c.Request.Context(), pid, nid, a, p, c.Writer, func() { rc.Flush() }); err != nil {
		s.log.Warn("capture stream ended", "node", nid, "err", err)
	}
	return nil
}
