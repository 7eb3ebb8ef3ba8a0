package dockerrt

// SetMinPrefix lets a test accept shorter ID prefixes, to make an
// ambiguous one; it returns the undo.
func SetMinPrefix(n int) (undo func()) {
	old := minPrefix
	minPrefix = n
	return func() { minPrefix = old }
}
