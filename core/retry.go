package core

import (
	"context"
	"time"
)

// Op is a batch operation on CENs or CINs.
type Op string

// The batch operations.
const (
	OpMake    Op = "make"
	OpDestroy Op = "destroy"
)

// retry runs once until it reports done or an error, backing off between
// tries (from 1 ms, doubling, to at most 100 ms) and giving up when ctx
// ends. It is for optimistic steps that find the graph changed under them
// (a CEN that moved to another CIN between a read and its locks): each try
// normally succeeds, and a try that does not has seen progress by someone
// else.
func retry[T any](ctx context.Context, once func() (T, bool, error)) (T, error) {
	wait := time.Millisecond
	for {
		v, done, err := once()
		if done || err != nil {
			return v, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}
