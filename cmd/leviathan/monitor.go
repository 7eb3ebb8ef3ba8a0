package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/leviathan-net/leviathan/monitor"
)

func (c *cli) monitorCmd() *cobra.Command {
	var tag string
	cmd := &cobra.Command{
		Use:   "monitor CIN",
		Short: "Follow a CIN's members and addresses: one JSON message a line",
		Long: `Start a monitor of the CIN on /leviathan/monitor and print what the daemon
sends, one JSON message a line, until interrupted: first the response with
the members' current addresses, then an event each time members gain
("create") or lose ("delete") an address. -o does not apply: the output is
always JSON.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: c.completeIDs("/cin"),
		RunE: c.run(func(ctx context.Context, a *api, args []string) error {
			var t *string
			if tag != "" {
				t = &tag
			}
			return c.monitor(ctx, a, args[0], t)
		}),
	}
	cmd.Flags().StringVar(&tag, "tag", "", "only the members with this tag")
	return cmd
}

func (c *cli) monitor(ctx context.Context, a *api, cinID string, tag *string) error {
	h := http.Header{}
	if a.auth {
		r, _ := http.NewRequest(http.MethodGet, "/", nil)
		r.SetBasicAuth(a.user, a.pass)
		h.Set("Authorization", r.Header.Get("Authorization"))
	}
	conn, resp, err := monitor.Dial(ctx, a.base+"/leviathan/monitor", monitor.DialOptions{HTTPClient: a.hc, Header: h})
	if err != nil {
		if resp != nil && resp.StatusCode/100 != 2 && resp.StatusCode != http.StatusSwitchingProtocols {
			b, _ := io.ReadAll(resp.Body)
			return a.errorOf(resp.StatusCode, b)
		}
		return a.unreachable(err)
	}
	defer conn.Close()
	msg, err := conn.Start(ctx, cinID, tag)
	if err != nil {
		return err
	}
	for {
		if _, err := fmt.Fprintf(c.out, "%s\n", msg); err != nil {
			return err
		}
		if msg, err = conn.Next(ctx); err != nil {
			if errors.Is(ctx.Err(), context.Canceled) {
				return nil // interrupted: the way to stop following
			}
			return fmt.Errorf("monitor %s: %w", cinID, err)
		}
	}
}
