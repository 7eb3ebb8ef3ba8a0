package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/leviathan-net/leviathan/core"
)

// exportCmd prints the whole desired state, as GET /export gives it.
func (c *cli) exportCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "export",
		Short: "Print the whole desired state as one JSON document (for leviathan import)",
		Args:  cobra.NoArgs,
		RunE: c.run(func(ctx context.Context, a *api, _ []string) error {
			raw, err := a.get(ctx, "/export", nil)
			if err != nil {
				return err
			}
			var out bytes.Buffer
			if err := json.Indent(&out, raw, "", "  "); err != nil {
				return fmt.Errorf("unexpected answer %.200q: %w", raw, err)
			}
			out.WriteByte('\n')
			_, err = a.out.Write(out.Bytes())
			return err
		}),
	}
}

// importCmd hands an exported fabric to an empty server.
func (c *cli) importCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "import FILE|-",
		Short: "Recreate an exported fabric on an empty server (then make its CENs and CINs)",
		Args:  cobra.ExactArgs(1),
		RunE: c.run(func(ctx context.Context, a *api, args []string) error {
			f, err := c.fileBody(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			raw, err := a.call(ctx, http.MethodPost, "/import", f)
			if err != nil {
				return err
			}
			return showAs(a, raw, func(w io.Writer, r core.ImportResult) {
				fmt.Fprintf(w, "imported\t%d CENs\t%d CINs\t%d containers\t%d pools\n", r.CENs, r.CINs, r.Containers, r.CPools)
			})
		}),
	}
}
