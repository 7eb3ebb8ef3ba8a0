// Package ui is leviathan's web topology view: a page, its script and
// style sheet, and the graph-drawing library they use, embedded in the
// binary so the view needs no network beyond the daemon itself. It owns
// the files only; rest serves them at /ui.
//
// The drawing library is Cytoscape.js 3.35.0 (MIT licence, copyright the
// Cytoscape Consortium; its notice heads static/cytoscape.min.js), copied
// unchanged from the npm package's dist/cytoscape.min.js.
//
// Threading: the files are read-only and safe for concurrent use.
package ui

import (
	"embed"
	"io/fs"
	"mime"
	"path"
)

//go:embed static
var static embed.FS

// Index is the name of the page.
const Index = "index.html"

// Files returns the view's files, by name (Index is the page).
func Files() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree always has it
	}
	return sub
}

// ContentType returns the media type of a file of the view.
func ContentType(name string) string {
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return t
	}
	return "application/octet-stream"
}
