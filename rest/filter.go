package rest

import (
	"regexp"
	"slices"

	"github.com/gin-gonic/gin"

	"github.com/leviathan-net/leviathan/graph"
)

// maxFilter bounds a filter's length.
const maxFilter = 1024

// filterIDs keeps the items whose ID matches the request's ?filter=REGEX
// (Go's RE2 syntax, matched anywhere in the ID unless anchored), as IM's
// list calls filter; every item without one. A bad expression is a 400.
func filterIDs[T any](c *gin.Context, items []T, id func(T) string) ([]T, error) {
	f, ok := c.GetQuery("filter")
	if !ok || f == "" {
		return items, nil
	}
	if len(f) > maxFilter {
		return nil, graph.Errorf(graph.ErrInvalid, "filter: longer than %d bytes", maxFilter)
	}
	re, err := regexp.Compile(f)
	if err != nil {
		return nil, graph.Errorf(graph.ErrInvalid, "filter %q: %w", f, err)
	}
	return slices.DeleteFunc(items, func(x T) bool { return !re.MatchString(id(x)) }), nil
}
