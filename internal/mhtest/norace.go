//go:build !race

package mhtest

const raceEnabled = false
