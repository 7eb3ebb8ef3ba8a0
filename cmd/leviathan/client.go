package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

func (c *cli) clientCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "client METHOD PATH [BODY|@FILE|@-]",
		Short: "Send one request to the API and print the answer's body",
		Long: `Send one request to the API and print the answer's body as it came, for
anything the nouns do not cover. The body is given inline, or read from a
file with @FILE (@- for standard input). The exit status is 1 when the
answer is not a 2xx, with the status on stderr.`,
		Example: `  leviathan client POST /cen/make '["cen1"]'
  leviathan client GET /topology
  leviathan client POST /cen/make?async=true '["cen1"]'`,
		Args: cobra.RangeArgs(2, 3),
		RunE: c.run(c.client),
	}
}

func (c *cli) client(ctx context.Context, a *api, args []string) error {
	method, path := strings.ToUpper(args[0]), args[1]
	var body io.Reader
	if len(args) == 3 {
		switch b := args[2]; {
		case b == "@-":
			body = c.in
		case strings.HasPrefix(b, "@"):
			f, err := os.Open(b[1:])
			if err != nil {
				return err
			}
			defer f.Close()
			body = f
		default:
			body = strings.NewReader(b)
		}
	}
	resp, err := a.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(c.out, resp.Body); err != nil {
		return err
	}
	fmt.Fprintln(c.out)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return nil
}
