package cpool

import (
	"errors"
	"strings"
	"testing"

	"github.com/leviathan-net/leviathan/graph"
)

// TestParseFileMissingLists checks that a missing (or null) list is
// malformed, never taken for an empty one.
func TestParseFileMissingLists(t *testing.T) {
	tests := []struct {
		name, in string
		msg      string // empty: must succeed
	}{
		{name: "empty pool list", in: `{"cpoolList":[]}`},
		{name: "empty cins", in: `{"cpoolList":[{"cpoolID":"p","type":"busybox","start_with":1,"cins":[]}]}`},
		{name: "cpoolList missing", in: `{}`, msg: "cpoolList"},
		{name: "cpoolList null", in: `{"cpoolList":null}`, msg: "cpoolList"},
		{name: "cins missing", in: `{"cpoolList":[{"cpoolID":"p","type":"busybox","start_with":1}]}`, msg: "has no cins"},
		{name: "cins null", in: `{"cpoolList":[{"cpoolID":"p","type":"busybox","start_with":1,"cins":null}]}`, msg: "has no cins"},
		{name: "pool null", in: `{"cpoolList":[null]}`, msg: "no cpoolID"},
		{name: "cin null", in: `{"cpoolList":[{"cpoolID":"p","type":"busybox","start_with":1,"cins":[null]}]}`, msg: "no cinID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseFile(strings.NewReader(tt.in))
			if tt.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, graph.ErrInvalid) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want ErrInvalid mentioning %q", err, tt.msg)
			}
		})
	}
}
