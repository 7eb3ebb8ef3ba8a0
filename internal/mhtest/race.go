//go:build race

package mhtest

// raceEnabled: the tests run with the race detector, and so does the
// daemon they build.
const raceEnabled = true
