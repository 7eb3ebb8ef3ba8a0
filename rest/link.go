package rest

import (
	"encoding/json"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/graph"
)

// Link impairments: GET shows a member's link settings on a CEN, PUT
// changes the fields it gives, DELETE clears them all.

func (s *Server) getLink(c *gin.Context) (int, any, error) {
	v, err := s.svc.GetLink(c, c.Param("hostId"), c.Param("containerId"), c.Param("cenId"))
	return http.StatusOK, v, err
}

func (s *Server) putLink(c *gin.Context) (int, any, error) {
	var p core.LinkPatch
	dec := json.NewDecoder(c.Request.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return 0, nil, graph.Errorf(graph.ErrInvalid, `want {"state":"up"|"down","delay_ms":N,"jitter_ms":N,"loss_percent":P,"rate_kbit":N,"corrupt_percent":P,"duplicate_percent":P}: %w`, err)
	}
	if dec.More() {
		return 0, nil, graph.Errorf(graph.ErrInvalid, "trailing data after the link settings")
	}
	v, err := s.svc.SetLink(s.opCtx, c.Param("hostId"), c.Param("containerId"), c.Param("cenId"), p)
	return http.StatusOK, v, err
}

func (s *Server) deleteLink(c *gin.Context) (int, any, error) {
	v, err := s.svc.ClearLink(s.opCtx, c.Param("hostId"), c.Param("containerId"), c.Param("cenId"))
	return http.StatusOK, v, err
}
