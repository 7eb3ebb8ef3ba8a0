// Package benchkit holds what the benchmarks share: summing up and
// printing their timings, and calling a daemon's API.
package benchkit

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Quantile is the q-quantile of ds by nearest rank (0 for none).
func Quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// Secs prints d in seconds.
func Secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// Msec prints d in milliseconds.
func Msec(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

// Ratio prints a/b, or "-" when b is not positive.
func Ratio(a, b time.Duration) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fx", float64(a)/float64(b))
}
