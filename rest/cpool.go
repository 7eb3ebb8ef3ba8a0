package rest

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/cpool"
	"github.com/leviathan-net/leviathan/graph"
)

// cpoolRoutes registers the CPool resource: POST /cpool as the leviathan
// README gives it, and leviathan's own GET, PUT (scale) and DELETE.
func (s *Server) cpoolRoutes() {
	s.handle(http.MethodPost, "/cpool", jsonBody(s.createPools))
	s.handle(http.MethodGet, "/cpool", s.withPools(func(c *gin.Context, m *cpool.Manager) (int, any, error) {
		v, err := m.List(c)
		if err != nil {
			return 0, nil, err
		}
		v, err = filterIDs(c, v, func(x cpool.View) string { return x.ID })
		return http.StatusOK, v, err
	}))
	s.handle(http.MethodGet, "/cpool/:cpoolId", s.withPools(func(c *gin.Context, m *cpool.Manager) (int, any, error) {
		v, err := m.Get(c, c.Param("cpoolId"))
		return http.StatusOK, v, err
	}))
	s.handle(http.MethodPut, "/cpool/:cpoolId", jsonBody(s.withPools(s.scalePool)))
	s.handle(http.MethodDelete, "/cpool/:cpoolId", s.withPools(func(c *gin.Context, m *cpool.Manager) (int, any, error) {
		return http.StatusNoContent, nil, m.Delete(s.opCtx, c.Param("cpoolId"))
	}))
}

// withPools answers 503 when leviathan runs without Docker.
func (s *Server) withPools(h func(*gin.Context, *cpool.Manager) (int, any, error)) handler {
	return func(c *gin.Context) (int, any, error) {
		if s.pools == nil {
			return 0, nil, graph.Errorf(graph.ErrUnavailable, "%w", cpool.ErrNoDocker)
		}
		return h(c, s.pools)
	}
}

type poolsBody struct {
	CPools []cpool.View `json:"cpools"`
}

// createPools serves POST /cpool: it returns when the pools' containers
// run and are wired; with ?async=true, a 202 and a job to poll.
func (s *Server) createPools(c *gin.Context) (int, any, error) {
	specs, err := cpool.ParseFile(c.Request.Body)
	if err != nil {
		return 0, nil, err
	}
	if s.pools == nil {
		return 0, nil, graph.Errorf(graph.ErrUnavailable, "%w", cpool.ErrNoDocker)
	}
	ids := make([]string, len(specs))
	for i, sp := range specs {
		ids[i] = sp.ID
	}
	run := func(ctx context.Context, _ []string) ([]core.Result, error) {
		views, err := s.pools.Create(ctx, specs)
		res := make([]core.Result, len(views))
		for i, v := range views {
			res[i] = core.Result{CPool: v.ID, State: v.State, Error: v.Error}
		}
		return res, err
	}
	if c.Query("async") == "true" {
		j := s.svc.StartFunc(s.opCtx, "cpool/create", ids, run)
		c.Header("Location", "/jobs/"+j.ID)
		return http.StatusAccepted, j, nil
	}
	views, err := s.pools.Create(s.opCtx, specs)
	if err != nil {
		if views != nil {
			return 0, nil, &resultsError{err: err, results: views}
		}
		return 0, nil, err
	}
	return http.StatusCreated, poolsBody{CPools: views}, nil
}

// scalePool serves PUT /cpool/{id} {"start_with": N}.
func (s *Server) scalePool(c *gin.Context, m *cpool.Manager) (int, any, error) {
	var body struct {
		StartWith *json.RawMessage `json:"start_with"`
	}
	if err := json.NewDecoder(c.Request.Body).Decode(&body); err != nil {
		return 0, nil, graph.Errorf(graph.ErrInvalid, `want {"start_with": N}: %w`, err)
	}
	if body.StartWith == nil {
		return 0, nil, graph.Errorf(graph.ErrInvalid, `want {"start_with": N}`)
	}
	n, err := cpool.ParseStartWith(*body.StartWith)
	if err != nil {
		return 0, nil, err
	}
	v, err := m.Scale(s.opCtx, c.Param("cpoolId"), n)
	return http.StatusOK, v, err
}
