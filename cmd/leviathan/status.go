package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/cpool"
)

// statusBody is status's JSON: the API's lists as they came; cpools is
// null when the daemon runs without Docker.
type statusBody struct {
	CENs       json.RawMessage `json:"cens"`
	CINs       json.RawMessage `json:"cins"`
	Containers json.RawMessage `json:"containers"`
	CPools     json.RawMessage `json:"cpools"`
}

func (c *cli) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show every CEN, CIN, container (of --host-id) and pool, and its state",
		Args:  cobra.NoArgs,
		RunE:  c.run(c.status),
	}
}

func (c *cli) status(ctx context.Context, a *api, _ []string) error {
	var (
		body  statusBody
		cens  []core.CENView
		cins  []core.CINView
		ctrs  []core.ContainerView
		pools []cpool.View
		err   error
	)
	if body.CENs, err = a.get(ctx, "/cen", &cens); err != nil {
		return err
	}
	if body.CINs, err = a.get(ctx, "/cin", &cins); err != nil {
		return err
	}
	if body.Containers, err = a.get(ctx, "/host/"+esc(c.hostID), &ctrs); err != nil {
		return err
	}
	noPools := ""
	body.CPools, err = a.get(ctx, "/cpool", &pools)
	var ae *apiError
	switch {
	case errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable:
		body.CPools, noPools = json.RawMessage("null"), ae.Message
	case err != nil:
		return err
	}
	if a.json {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		return a.show(raw, nil)
	}
	return a.show(nil, func(w io.Writer) error {
		cenTable(w, cens)
		fmt.Fprintln(w)
		cinTable(w, cins)
		fmt.Fprintln(w)
		containerTable(w, ctrs)
		fmt.Fprintln(w)
		if noPools != "" {
			row(w, "CPOOL", "unavailable: "+noPools)
			return nil
		}
		poolTable(w, pools)
		return nil
	})
}
