package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/cpool"
)

// batch runs make or destroy (op "cen/make", ...) on ids and returns the
// answer's body, {"results":[...]}. On a terminal it runs as a job
// (?async=true) and shows a spinner with the time spent until the job
// ends; elsewhere it is one request that returns when the work is done.
func (c *cli) batch(ctx context.Context, a *api, op string, ids []string) ([]byte, error) {
	if !c.tty {
		return a.call(ctx, http.MethodPost, "/"+op, jsonBody(ids))
	}
	j, err := c.runJob(ctx, a, "/"+op+"?async=true", jsonBody(ids), op+" "+strings.Join(ids, " "))
	if err != nil {
		return nil, err
	}
	return json.Marshal(resultsBody{Results: j.Results})
}

// createPools serves cpool create as batch does make: the answer's
// body is {"cpools":[...]}.
func (c *cli) createPools(ctx context.Context, a *api, file io.Reader) ([]byte, error) {
	if !c.tty {
		return a.call(ctx, http.MethodPost, "/cpool", file)
	}
	j, err := c.runJob(ctx, a, "/cpool?async=true", file, "cpool/create")
	if err != nil {
		return nil, err
	}
	body := poolsBody{CPools: []cpool.View{}}
	for _, id := range j.IDs {
		var v cpool.View
		if _, err := a.get(ctx, "/cpool/"+esc(id), &v); err != nil {
			return nil, err
		}
		body.CPools = append(body.CPools, v)
	}
	return json.Marshal(body)
}

// runJob starts a job and polls GET /jobs/{id} until it ends, showing a
// spinner on the terminal.
func (c *cli) runJob(ctx context.Context, a *api, path string, body io.Reader, what string) (core.Job, error) {
	var j core.Job
	raw, err := a.call(ctx, http.MethodPost, path, body)
	if err != nil {
		return j, err
	}
	if err := json.Unmarshal(raw, &j); err != nil || j.ID == "" {
		return j, fmt.Errorf("unexpected answer %.200q", raw)
	}
	if len(what) > 60 {
		what = what[:57] + "..."
	}
	const frames = `|/-\`
	start := time.Now()
	t := time.NewTicker(150 * time.Millisecond)
	defer t.Stop()
	for i := 0; j.State == core.JobRunning; i++ {
		if j.Total > 0 {
			const width = 20
			n := width * j.Done / j.Total
			fmt.Fprintf(c.err, "\r\033[K[%s%s] %d/%d %s  %.1fs", strings.Repeat("#", n), strings.Repeat(" ", width-n), j.Done, j.Total, what, time.Since(start).Seconds())
		} else {
			fmt.Fprintf(c.err, "\r\033[K%c %s  %.1fs", frames[i%len(frames)], what, time.Since(start).Seconds())
		}
		select {
		case <-ctx.Done():
			fmt.Fprint(c.err, "\r\033[K")
			return j, fmt.Errorf("interrupted: job %s goes on in the daemon (leviathan client GET /jobs/%s)", j.ID, j.ID)
		case <-t.C:
		}
		if _, err := a.get(ctx, "/jobs/"+esc(j.ID), &j); err != nil {
			fmt.Fprint(c.err, "\r\033[K")
			return j, err
		}
	}
	fmt.Fprintf(c.err, "\r\033[K%s: %s in %.1fs\n", what, j.State, time.Since(start).Seconds())
	if j.State == core.JobFailed {
		return j, errors.New(j.Error)
	}
	return j, nil
}
