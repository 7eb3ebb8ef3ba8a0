package rest

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/leviathan-net/leviathan/graph"
)

// logRoutes registers each object's operation log: what was done to it,
// when, and what failed.
func (s *Server) logRoutes() {
	for _, r := range []struct{ path, kind, param, idKind string }{
		{"/cen/:cenId/log", "cen", "cenId", "CEN"},
		{"/cin/:cinId/log", "cin", "cinId", "CIN"},
		{"/cpool/:cpoolId/log", "cpool", "cpoolId", "CPool"},
	} {
		s.handle(http.MethodGet, r.path, func(c *gin.Context) (int, any, error) {
			id := c.Param(r.param)
			if err := graph.ValidateID(r.idKind, id); err != nil {
				return 0, nil, err
			}
			v, err := s.svc.Log(c, r.kind, id)
			return http.StatusOK, v, err
		})
	}
	s.handle(http.MethodGet, "/host/:hostId/:containerId/log", func(c *gin.Context) (int, any, error) {
		host, id := c.Param("hostId"), c.Param("containerId")
		if err := graph.ValidateID("host", host); err != nil {
			return 0, nil, err
		}
		if err := graph.ValidateID("container", id); err != nil {
			return 0, nil, err
		}
		v, err := s.svc.Log(c, "container", host+"/"+id)
		return http.StatusOK, v, err
	})
}
