// Command leviathan is the leviathan daemon ("leviathan serve") and the
// command-line client of its REST API ("leviathan cen make cen1", ...):
// one binary, two frontends of the one API.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := newRoot(streams{in: os.Stdin, out: os.Stdout, err: os.Stderr, tty: term.IsTerminal(int(os.Stderr.Fd()))})
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "leviathan:", err)
		os.Exit(1)
	}
}
