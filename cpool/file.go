// Package cpool owns container pools and the Docker runtime: a pool is a
// number of Docker containers launched from one image and kept at that
// number, whose containers join CENs (and through them CINs) like any
// other member. Docker containers named in CEN files are members through
// the same runtime. Only this package (and dockerrt under it) imports the
// Docker client.
//
// Everything here is level-triggered (DESIGN.md decision 8): Docker's
// events, a restart and a periodic pass all lead to the same reconcile of
// a container (core.SyncContainers) or of a pool (Manager.syncPool),
// which compares what is with what is wanted and closes the gap.
//
// Threading: a Manager is safe for concurrent use. Operations on one pool
// are serialized by that pool's lock; different pools run in parallel,
// and launches within a pool run concurrently up to a bound.
package cpool

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/leviathan-net/leviathan/graph"
)

// MaxStartWith bounds a pool's size.
const MaxStartWith = 1000

// Spec is one pool of a CPool file.
type Spec struct {
	ID        string
	Image     string
	StartWith int
	CINs      []CINSpec
}

// CINSpec is one entry of a pool's cins: a CIN or CEN ID, and whether
// the pool's containers take that CIN's gateway as their default route.
type CINSpec struct {
	ID           string
	DefaultRoute bool
}

type fileJSON struct {
	CPoolList *[]struct {
		ID        *string          `json:"cpoolID"`
		Type      *string          `json:"type"`
		StartWith *json.RawMessage `json:"start_with"`
		CINs      *[]struct {
			CIN          *string          `json:"cinID"`
			DefaultRoute *json.RawMessage `json:"default_route"`
		} `json:"cins"`
	} `json:"cpoolList"`
}

// ParseFile decodes and validates a CPool file, as the leviathan README
// gives it:
//
//	{"cpoolList":[{"cpoolID":"pool1","type":"busybox","start_with":3,
//	  "cins":[{"cinID":"cen1","default_route":"true"},{"cinID":"cen2"}]}]}
//
// Unknown keys are ignored. start_with is a number (or a string of one)
// from 0 to MaxStartWith; default_route is "true", "false" or a boolean,
// false when absent. A pool may appear once, and a cinID once per pool.
func ParseFile(r io.Reader) ([]Spec, error) {
	dec := json.NewDecoder(r)
	var f fileJSON
	if err := dec.Decode(&f); err != nil {
		return nil, graph.Errorf(graph.ErrInvalid, "CPool file: %w", err)
	}
	if dec.More() {
		return nil, graph.Errorf(graph.ErrInvalid, "CPool file: trailing data after the JSON object")
	}
	if f.CPoolList == nil {
		return nil, graph.Errorf(graph.ErrInvalid, `CPool file: want {"cpoolList":[{"cpoolID":...,"type":...,"start_with":N,"cins":[{"cinID":...}]}]}`)
	}
	var specs []Spec
	seen := map[string]bool{}
	for i, e := range *f.CPoolList {
		where := fmt.Sprintf("CPool file: cpoolList[%d]", i)
		if e.ID == nil {
			return nil, graph.Errorf(graph.ErrInvalid, "%s has no cpoolID", where)
		}
		sp := Spec{ID: *e.ID}
		if err := ValidateID(sp.ID); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		where = fmt.Sprintf("CPool file: pool %q", sp.ID)
		if seen[sp.ID] {
			return nil, graph.Errorf(graph.ErrInvalid, "CPool file: pool %q listed twice", sp.ID)
		}
		seen[sp.ID] = true
		if e.Type == nil || *e.Type == "" {
			return nil, graph.Errorf(graph.ErrInvalid, "%s has no type (the Docker image to run)", where)
		}
		sp.Image = *e.Type
		if e.StartWith == nil {
			return nil, graph.Errorf(graph.ErrInvalid, "%s has no start_with", where)
		}
		n, err := ParseStartWith(*e.StartWith)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		sp.StartWith = n
		if e.CINs == nil {
			return nil, graph.Errorf(graph.ErrInvalid, `%s has no cins (want "cins":[{"cinID":...}], or [] for none)`, where)
		}
		cins := map[string]bool{}
		for j, c := range *e.CINs {
			if c.CIN == nil {
				return nil, graph.Errorf(graph.ErrInvalid, "%s: cins[%d] has no cinID", where, j)
			}
			if err := graph.ValidateID("CIN", *c.CIN); err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			if cins[*c.CIN] {
				return nil, graph.Errorf(graph.ErrInvalid, "%s lists cinID %q twice", where, *c.CIN)
			}
			cins[*c.CIN] = true
			dr := false
			if c.DefaultRoute != nil {
				if dr, err = parseBool(*c.DefaultRoute); err != nil {
					return nil, fmt.Errorf("%s: cinID %q: %w", where, *c.CIN, err)
				}
			}
			sp.CINs = append(sp.CINs, CINSpec{ID: *c.CIN, DefaultRoute: dr})
		}
		specs = append(specs, sp)
	}
	return specs, nil
}

// ValidateID checks the ID of a new pool: a valid ID, not one of the
// API's route words (graph.RouteWords).
func ValidateID(id string) error { return graph.ValidateObjectID("CPool", id) }

// ParseStartWith reads a pool size: a JSON number, or a string holding
// one, from 0 to MaxStartWith.
func ParseStartWith(raw json.RawMessage) (int, error) {
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, graph.Errorf(graph.ErrInvalid, "start_with: want a number from 0 to %d, got %s", MaxStartWith, graph.Clip(string(raw)))
	}
	v, err := strconv.Atoi(string(n))
	if err != nil || v < 0 || v > MaxStartWith {
		return 0, graph.Errorf(graph.ErrInvalid, "start_with: want a whole number from 0 to %d, got %s", MaxStartWith, graph.Clip(string(raw)))
	}
	return v, nil
}

func parseBool(raw json.RawMessage) (bool, error) {
	var b bool
	if json.Unmarshal(raw, &b) == nil {
		return b, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		switch s {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
	}
	return false, graph.Errorf(graph.ErrInvalid, `default_route: want "true", "false" or a boolean, got %s`, graph.Clip(string(raw)))
}
