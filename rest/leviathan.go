package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/leviathan-net/leviathan/cen"
	"github.com/leviathan-net/leviathan/cin"
	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/graph"
)

// leviathanRoutes registers the leviathan API (paths as in
// leviathan_rest_lib) and leviathan's own additions.
func (s *Server) leviathanRoutes() {
	s.handle(http.MethodGet, "/v2/version", s.version)

	s.handle(http.MethodPost, "/cen/import", jsonBody(s.importCENs))
	s.handle(http.MethodPost, "/cen/make", jsonBody(s.batch("cen/make", "CEN", s.svc.MakeCENs)))
	s.handle(http.MethodPost, "/cen/destroy", jsonBody(s.batch("cen/destroy", "CEN", s.svc.DestroyCENs)))
	s.handle(http.MethodGet, "/cen", s.listCENs)
	s.handle(http.MethodPut, "/cen/:cenId", s.putCEN)
	s.handle(http.MethodGet, "/cen/:cenId", s.getCEN)
	s.handle(http.MethodDelete, "/cen/:cenId", s.deleteCEN)

	s.handle(http.MethodPost, "/cin/import", jsonBody(s.importCINs))
	s.handle(http.MethodPost, "/cin/make", jsonBody(s.batch("cin/make", "CIN", s.svc.MakeCINs)))
	s.handle(http.MethodPost, "/cin/destroy", jsonBody(s.batch("cin/destroy", "CIN", s.svc.DestroyCINs)))
	s.handle(http.MethodGet, "/cin", s.listCINs)
	s.handle(http.MethodPut, "/cin/:cinId", jsonBody(s.putCIN))
	s.handle(http.MethodGet, "/cin/:cinId", s.getCIN)
	s.handle(http.MethodDelete, "/cin/:cinId", s.deleteCIN)

	s.handle(http.MethodGet, "/host", s.listHosts)
	s.handle(http.MethodGet, "/host/:hostId", s.listContainers)
	s.handle(http.MethodPut, "/host/:hostId/:containerId", jsonBody(s.putContainer))
	s.handle(http.MethodGet, "/host/:hostId/:containerId", s.getContainer)
	s.handle(http.MethodDelete, "/host/:hostId/:containerId", s.deleteContainer)
	s.handle(http.MethodPut, "/host/:hostId/:containerId/:cenId", s.member(s.svc.AddMember))
	s.handle(http.MethodDelete, "/host/:hostId/:containerId/:cenId", s.member(s.svc.RemoveMember))

	s.handle(http.MethodGet, "/jobs/:jobId", s.getJob)
}

func (s *Server) version(c *gin.Context) (int, any, error) {
	return http.StatusOK, gin.H{"version": Version}, nil
}

func (s *Server) importCENs(c *gin.Context) (int, any, error) {
	specs, err := cen.ParseFile(c.Request.Body)
	if err != nil {
		return 0, nil, err
	}
	sum, err := s.svc.ImportCENs(s.opCtx, specs)
	return http.StatusOK, sum, err
}

type resultsBody struct {
	Results []core.Result `json:"results"`
}

// batch serves make and destroy: a JSON list of IDs; with ?async=true a
// 202 and a job to poll at /jobs/{jobId}.
func (s *Server) batch(op, kind string, fn func(context.Context, []string) ([]core.Result, error)) handler {
	return func(c *gin.Context) (int, any, error) {
		ids, err := cen.ParseIDList(kind, c.Request.Body)
		if err != nil {
			return 0, nil, err
		}
		if c.Query("async") == "true" {
			j, err := s.svc.StartJob(s.opCtx, op, ids)
			if err == nil {
				c.Header("Location", "/jobs/"+j.ID)
			}
			return http.StatusAccepted, j, err
		}
		res, err := fn(s.opCtx, ids)
		if err != nil && res != nil {
			return 0, nil, &resultsError{err: err, results: res}
		}
		return http.StatusOK, resultsBody{Results: res}, err
	}
}

func (s *Server) importCINs(c *gin.Context) (int, any, error) {
	specs, err := cin.ParseFile(c.Request.Body)
	if err != nil {
		return 0, nil, err
	}
	sum, err := s.svc.ImportCINs(s.opCtx, specs)
	return http.StatusOK, sum, err
}

func (s *Server) listCINs(c *gin.Context) (int, any, error) {
	v, err := s.svc.ListCINs(c)
	if err != nil {
		return 0, nil, err
	}
	v, err = filterIDs(c, v, func(x core.CINView) string { return x.ID })
	return http.StatusOK, v, err
}

// putCIN takes a list of CEN IDs, or the object form of a CIN file entry.
func (s *Server) putCIN(c *gin.Context) (int, any, error) {
	id := c.Param("cinId")
	if err := cin.ValidateCINID(id); err != nil {
		return 0, nil, err
	}
	raw, err := io.ReadAll(c.Request.Body)
	if err != nil {
		return 0, nil, err
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = []byte("[]")
	}
	sp, err := cin.ParseEntry(id, raw)
	if err != nil {
		return 0, nil, err
	}
	v, created, err := s.svc.PutCIN(s.opCtx, sp)
	if created {
		return http.StatusCreated, v, err
	}
	return http.StatusOK, v, err
}

func (s *Server) getCIN(c *gin.Context) (int, any, error) {
	v, err := s.svc.GetCIN(c, c.Param("cinId"))
	return http.StatusOK, v, err
}

func (s *Server) deleteCIN(c *gin.Context) (int, any, error) {
	return http.StatusNoContent, nil, s.svc.DeleteCIN(s.opCtx, c.Param("cinId"))
}

func (s *Server) listCENs(c *gin.Context) (int, any, error) {
	cs, err := s.svc.ListCENs(c)
	if err != nil {
		return 0, nil, err
	}
	cs, err = filterIDs(c, cs, func(x core.CENView) string { return x.ID })
	return http.StatusOK, cs, err
}

func (s *Server) putCEN(c *gin.Context) (int, any, error) {
	v, created, err := s.svc.CreateCEN(s.opCtx, c.Param("cenId"))
	if created {
		return http.StatusCreated, v, err
	}
	return http.StatusOK, v, err
}

func (s *Server) getCEN(c *gin.Context) (int, any, error) {
	v, err := s.svc.GetCEN(c, c.Param("cenId"))
	return http.StatusOK, v, err
}

func (s *Server) deleteCEN(c *gin.Context) (int, any, error) {
	return http.StatusNoContent, nil, s.svc.DeleteCEN(s.opCtx, c.Param("cenId"))
}

// containerBody is the optional body of PUT /host/{hostId}/{containerId}.
type containerBody struct {
	Tag *string `json:"tag"`
}

func (s *Server) putContainer(c *gin.Context) (int, any, error) {
	raw, err := io.ReadAll(c.Request.Body)
	if err != nil {
		return 0, nil, err
	}
	var body containerBody
	if len(bytes.TrimSpace(raw)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil {
			return 0, nil, graph.Errorf(graph.ErrInvalid, `want an empty body or {"tag":"..."}: %v`, err)
		}
	}
	v, created, err := s.svc.RegisterContainer(s.opCtx, c.Param("hostId"), c.Param("containerId"), core.Registration{Tag: body.Tag})
	if created {
		return http.StatusCreated, v, err
	}
	return http.StatusOK, v, err
}

// listHosts lists the hosts sharing the store, with their liveness.
func (s *Server) listHosts(c *gin.Context) (int, any, error) {
	v, err := s.svc.ListHosts(c)
	return http.StatusOK, v, err
}

func (s *Server) listContainers(c *gin.Context) (int, any, error) {
	v, err := s.svc.ListContainers(c, c.Param("hostId"))
	if err != nil {
		return 0, nil, err
	}
	v, err = filterIDs(c, v, func(x core.ContainerView) string { return x.ID })
	return http.StatusOK, v, err
}

func (s *Server) getContainer(c *gin.Context) (int, any, error) {
	v, err := s.svc.GetContainer(c, c.Param("hostId"), c.Param("containerId"))
	return http.StatusOK, v, err
}

func (s *Server) deleteContainer(c *gin.Context) (int, any, error) {
	return http.StatusNoContent, nil, s.svc.DeleteContainer(s.opCtx, c.Param("hostId"), c.Param("containerId"))
}

func (s *Server) member(fn func(ctx context.Context, host, id, cenID string) (core.CENView, error)) handler {
	return func(c *gin.Context) (int, any, error) {
		v, err := fn(s.opCtx, c.Param("hostId"), c.Param("containerId"), c.Param("cenId"))
		return http.StatusOK, v, err
	}
}

func (s *Server) getJob(c *gin.Context) (int, any, error) {
	j, err := s.svc.GetJob(c.Param("jobId"))
	return http.StatusOK, j, err
}
