package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/leviathan-net/leviathan/rest"
)

const usage = `leviathan: a container network orchestrator.

Usage:
  leviathan serve [flags]        run the daemon (see "leviathan serve -h")
  leviathan client [flags] ARGS  call a running daemon (see "leviathan client -h")
  leviathan version              print the version
`

func run(ctx context.Context, args []string) error {
	err := dispatch(ctx, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil // the flag set printed the help asked for
	}
	return err
}

func dispatch(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return fmt.Errorf("no command")
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:])
	case "client":
		return client(ctx, args[1:], os.Stdout)
	case "version", "--version", "-version":
		fmt.Println("leviathan", rest.Version)
		return nil
	case "help", "-h", "--help":
		fmt.Print(usage)
		return nil
	}
	fmt.Fprint(os.Stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
