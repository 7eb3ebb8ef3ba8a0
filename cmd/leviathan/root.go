package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/leviathan-net/leviathan/rest"
)

// streams are the command's standard files; tty says whether err is a
// terminal (progress is shown there).
type streams struct {
	in       io.Reader
	out, err io.Writer
	tty      bool
}

// cli holds the global flags of the client commands.
type cli struct {
	streams
	server   string
	socket   string
	auth     string
	authFile string
	output   string
	hostID   string
	tlsCA    string
}

const rootLong = `leviathan is a container network orchestrator.

"leviathan serve" runs the daemon. Every other command is a client of its
REST API: it reaches the daemon on --server URL or --socket PATH (by
default the daemon's default socket, ` + defaultSocket + `, when it exists,
else http://127.0.0.1:8080), prints tables for people or, with -o json,
the API's JSON for scripts. On an error it prints the API's message on
stderr and exits with status 1.`

const rootExample = `  leviathan cen import examples/cen.json
  leviathan cen make cen1 cen2 cen3 cen4 cen5
  leviathan cen list
  leviathan host join c9 cen4
  leviathan -o json cin get cin1
  leviathan --server https://lab:8443 --auth admin:s3cret status
  leviathan client GET /jobs/1f2e3d4c5b6a7988`

func newRoot(s streams) *cobra.Command {
	c := &cli{streams: s}
	root := &cobra.Command{
		Use:           "leviathan",
		Short:         "A container network orchestrator: the daemon and its command-line client",
		Long:          rootLong,
		Example:       rootExample,
		Version:       rest.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(s.in)
	root.SetOut(s.out)
	root.SetErr(s.err)
	root.SetVersionTemplate("leviathan {{.Version}}\n")

	pf := root.PersistentFlags()
	pf.StringVar(&c.server, "server", "", "the daemon's URL, http:// or https:// (default: the default socket when it exists, else http://127.0.0.1:8080)")
	pf.StringVar(&c.socket, "socket", "", "reach the daemon on this unix socket")
	pf.StringVar(&c.auth, "auth", "", "USER:PASSWORD for basic auth (default $LEVIATHAN_AUTH)")
	pf.StringVar(&c.authFile, "auth-file", "", "read USER:PASSWORD from this file (mode 0600)")
	pf.StringVarP(&c.output, "output", "o", "table", "output format: table or json")
	pf.StringVar(&c.hostID, "host-id", "host1", "the daemon's host ID, for host commands and status")
	pf.StringVar(&c.tlsCA, "tls-ca", "", "PEM file of the certificate authorities to trust for an https:// server (default: the system's)")
	root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp))
	root.MarkFlagsMutuallyExclusive("server", "socket")
	root.MarkFlagsMutuallyExclusive("auth", "auth-file")

	root.AddGroup(&cobra.Group{ID: "objects", Title: "Objects:"}, &cobra.Group{ID: "other", Title: "Other commands:"})
	for _, cmd := range []*cobra.Command{c.cenCmd(), c.cinCmd(), c.hostCmd(), c.cpoolCmd(), c.statusCmd(), c.monitorCmd(), c.exportCmd(), c.importCmd()} {
		cmd.GroupID = "objects"
		root.AddCommand(cmd)
	}
	for _, cmd := range []*cobra.Command{serveCmd(), c.clientCmd(), versionCmd()} {
		cmd.GroupID = "other"
		root.AddCommand(cmd)
	}
	root.SetHelpCommandGroupID("other")
	root.SetCompletionCommandGroupID("other")
	return root
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "leviathan", rest.Version)
			return err
		},
	}
}
