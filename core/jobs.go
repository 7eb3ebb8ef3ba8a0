package core

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"

	"github.com/leviathan-net/leviathan/graph"
)

// Job states.
const (
	JobRunning = "running"
	JobDone    = "done"
	JobFailed  = "failed"
)

// Job is an operation run in the background (make or destroy with
// ?async=true), kept for polling until maxJobs newer ones push it out.
type Job struct {
	ID       string    `json:"jobID"`
	Op       string    `json:"op"`
	IDs      []string  `json:"ids"`
	State    string    `json:"state"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
	Results  []Result  `json:"results"`
	Error    string    `json:"error,omitempty"`
	// Done of Total objects are through (Total 0 until the work knows).
	Done  int `json:"done"`
	Total int `json:"total"`
}

type progressKey struct{}

// withProgress returns ctx carrying fn, which work calls as it goes.
func withProgress(ctx context.Context, fn func(done, total int)) context.Context {
	return context.WithValue(ctx, progressKey{}, fn)
}

// Progress tells the job running under ctx, if any, that done of total
// objects are through.
func Progress(ctx context.Context, done, total int) {
	if fn, ok := ctx.Value(progressKey{}).(func(int, int)); ok {
		fn(done, total)
	}
}

const maxJobs = 1000

type jobs struct {
	mu    sync.Mutex      // guards byID, order and the jobs in them
	byID  map[string]*Job //
	order []string        // oldest first
	wg    sync.WaitGroup  // running jobs
}

// StartJob runs op ("make" or "destroy") on ids in the background and
// returns the job at once. ctx bounds the job (the server's lifetime, not
// the request's).
func (s *Service) StartJob(ctx context.Context, op string, ids []string) (Job, error) {
	var fn func(context.Context, []string) ([]Result, error)
	kind := "CEN"
	switch op {
	case "cen/make":
		fn = s.MakeCENs
	case "cen/destroy":
		fn = s.DestroyCENs
	case "cin/make":
		fn, kind = s.MakeCINs, "CIN"
	case "cin/destroy":
		fn, kind = s.DestroyCINs, "CIN"
	default:
		return Job{}, graph.Errorf(graph.ErrInvalid, "no such job operation %q", op)
	}
	// Bad and unknown IDs are refused now, as without ?async.
	if err := validateIDs(kind, ids); err != nil {
		return Job{}, err
	}
	if err := s.store.View(func(tx graph.Tx) (err error) {
		if kind == "CEN" {
			_, err = getAll(tx, kind, ids, graph.GetCEN)
		} else {
			_, err = getAll(tx, kind, ids, graph.GetCIN)
		}
		return err
	}); err != nil {
		return Job{}, err
	}
	return s.StartFunc(ctx, op, ids, fn), nil
}

// StartFunc runs fn in the background as a job named op over ids, and
// returns the job at once; fn's results and error are the job's.
func (s *Service) StartFunc(ctx context.Context, op string, ids []string, fn func(context.Context, []string) ([]Result, error)) Job {
	b := make([]byte, 8)
	rand.Read(b)
	j := &Job{ID: hex.EncodeToString(b), Op: op, IDs: ids, State: JobRunning, Started: time.Now().UTC(), Results: []Result{}}
	s.jobs.mu.Lock()
	if s.jobs.byID == nil {
		s.jobs.byID = map[string]*Job{}
	}
	s.jobs.byID[j.ID] = j
	s.jobs.order = append(s.jobs.order, j.ID)
	for len(s.jobs.order) > maxJobs {
		delete(s.jobs.byID, s.jobs.order[0])
		s.jobs.order = s.jobs.order[1:]
	}
	snap := *j
	s.jobs.mu.Unlock()

	s.jobs.wg.Add(1)
	ctx = withProgress(ctx, func(done, total int) {
		s.jobs.mu.Lock()
		j.Done, j.Total = done, total
		s.jobs.mu.Unlock()
	})
	go func() {
		defer s.jobs.wg.Done()
		res, err := fn(ctx, ids)
		s.jobs.mu.Lock()
		defer s.jobs.mu.Unlock()
		j.Finished = time.Now().UTC()
		if res != nil {
			j.Results = res
		}
		j.State = JobDone
		if j.Total == 0 {
			j.Total = len(ids)
		}
		j.Done = j.Total
		if err != nil {
			j.State, j.Error = JobFailed, err.Error()
		}
	}()
	return snap
}

// GetJob returns a job's current state.
func (s *Service) GetJob(id string) (Job, error) {
	s.jobs.mu.Lock()
	defer s.jobs.mu.Unlock()
	j, ok := s.jobs.byID[id]
	if !ok {
		return Job{}, graph.Errorf(graph.ErrNotFound, "no job %q", id)
	}
	return *j, nil
}

// Wait waits for running jobs to end (their context ends them early).
// The operation logs' last entries are written to the store then.
func (s *Service) Wait() {
	s.jobs.wg.Wait()
	s.oplog.flush()
}
