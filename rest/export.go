package rest

import (
	"encoding/json"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/graph"
)

// exportRoutes registers GET /export and POST /import: the whole desired
// state as one document, to hand a fabric to another server.
func (s *Server) exportRoutes() {
	s.handle(http.MethodGet, "/export", func(c *gin.Context) (int, any, error) {
		x, err := s.svc.Export(c)
		return http.StatusOK, x, err
	})
	s.handle(http.MethodPost, "/import", func(c *gin.Context) (int, any, error) {
		var x core.Export
		dec := json.NewDecoder(c.Request.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&x); err != nil {
			return 0, nil, graph.Errorf(graph.ErrInvalid, "import: want the document GET /export gives: %w", err)
		}
		if dec.More() {
			return 0, nil, graph.Errorf(graph.ErrInvalid, "import: trailing data after the document")
		}
		res, err := s.svc.Import(s.opCtx, x)
		if err == nil && res.CPools > 0 && s.pools != nil {
			s.pools.Resync() // their containers are launched now
		}
		return http.StatusCreated, res, err
	})
}
