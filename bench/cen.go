package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// cenPhase builds every CEN of the layout as a bridge with its members.
func cenPhase() phase {
	return phase{
		name:    "cen",
		members: layout.members,
		targets: []target{
			{op: "make", maxShare: 10, maxPerMember: 2 * time.Millisecond},
			{op: "destroy", maxShare: 20},
		},
		leviathan: cenLeviathan,
		shell:     cenShell,
	}
}

// What the benchmark reads of the API's answers, decoded from the JSON the
// API documents rather than through core's types: the wire format is what
// is being exercised.
type (
	resultJSON struct {
		CEN   string `json:"cenID"`
		CIN   string `json:"cinID"`
		State string `json:"state"`
		Error string `json:"error"`
	}
	ifaceJSON struct {
		CEN  string `json:"cenID"`
		Name string `json:"name"`
	}
)

// cenFile is the CEN file of the layout, as POST /cen/import takes it.
func cenFile(lay layout) any {
	type entry struct {
		CENID        string   `json:"cenID"`
		ContainerIDs []string `json:"containerIDs"`
	}
	var list []entry
	for i := range lay.cens {
		e := entry{CENID: lay.cenID(i)}
		for j := range lay.per {
			e.ContainerIDs = append(e.ContainerIDs, lay.containerID(i, j))
		}
		list = append(list, e)
	}
	return map[string]any{"cenList": list}
}

func cenIDs(lay layout) []string {
	ids := make([]string, lay.cens)
	for i := range ids {
		ids[i] = lay.cenID(i)
	}
	return ids
}

// cenLeviathan: make is POST /cen/import of the CEN file and POST
// /cen/make of every CEN in one request; destroy is POST /cen/destroy of
// every CEN.
func cenLeviathan(lay layout, d *daemon) stage {
	ids := cenIDs(lay)
	batch := func(ctx context.Context, op, want string) error {
		var res struct {
			Results []resultJSON `json:"results"`
		}
		if err := d.call(ctx, http.MethodPost, "/cen/"+op, ids, &res); err != nil {
			return err
		}
		if len(res.Results) != len(ids) {
			return fmt.Errorf("%s: %d results for %d CENs", op, len(res.Results), len(ids))
		}
		for _, r := range res.Results {
			if r.State != want {
				return fmt.Errorf("%s: CEN %s is %q, want %q: %s", op, r.CEN, r.State, want, r.Error)
			}
		}
		return nil
	}
	return stage{
		make: func(ctx context.Context, p *parts) error {
			var sum struct {
				Created []string `json:"created"`
			}
			if err := d.call(ctx, http.MethodPost, "/cen/import", cenFile(lay), &sum); err != nil {
				return err
			}
			p.lap("import")
			if len(sum.Created) != lay.cens {
				return fmt.Errorf("import created %d CENs, want %d", len(sum.Created), lay.cens)
			}
			if err := batch(ctx, "make", "configured"); err != nil {
				return err
			}
			p.lap("make")
			return nil
		},
		checkMade: func(ctx context.Context) error {
			if err := checkFabric(d.fab.Path(), lay.cens, lay.members()); err != nil {
				return err
			}
			for _, s := range lay.spots() {
				cid, cenID := lay.containerID(s[0], s[1]), lay.cenID(s[0])
				if err := checkMember(d.netnsPath(cid), cenID); err != nil {
					return fmt.Errorf("container %s: %w", cid, err)
				}
				// And the API says so too.
				var v struct {
					Interfaces []ifaceJSON `json:"interfaces"`
				}
				if err := d.call(ctx, http.MethodGet, "/host/"+hostID+"/"+cid, nil, &v); err != nil {
					return err
				}
				if !slices.Contains(v.Interfaces, ifaceJSON{CEN: cenID, Name: cenID}) {
					return fmt.Errorf("GET /host/%s/%s: no interface %s on CEN %s: %+v", hostID, cid, cenID, cenID, v.Interfaces)
				}
			}
			return nil
		},
		destroy: func(ctx context.Context, p *parts) error {
			return batch(ctx, "destroy", "pending")
		},
		checkDestroyed: func(ctx context.Context) error {
			if err := checkFabric(d.fab.Path(), 0, 0); err != nil {
				return err
			}
			for _, s := range lay.spots() {
				cid := lay.containerID(s[0], s[1])
				if err := checkMember(d.netnsPath(cid), ""); err != nil {
					return fmt.Errorf("container %s: %w", cid, err)
				}
			}
			return nil
		},
	}
}

// cenShell: per CEN a bridge brought up, per member a namespace and a veth
// created with its peer in it, enslaved and brought up at both ends, one
// ip process each; destroy deletes every veth, then every bridge.
func cenShell(lay layout, sh *shellEnv) stage {
	return stage{
		make: func(ctx context.Context, p *parts) error {
			for i := range lay.cens {
				br := lay.cenID(i)
				if err := sh.fab(ctx, p, "bridge", "link", "add", br, "type", "bridge"); err != nil {
					return err
				}
				if err := sh.fab(ctx, p, "bridge", "link", "set", br, "up"); err != nil {
					return err
				}
				for j := range lay.per {
					ns, host := sh.netns(lay, i, j), sh.hostEnd(lay, i, j)
					if err := p.time("netns", func() error { return sh.run(ctx, "netns", "add", ns) }); err != nil {
						return err
					}
					if err := sh.fab(ctx, p, "veth", "link", "add", host, "type", "veth", "peer", "name", br, "netns", ns); err != nil {
						return err
					}
					if err := sh.fab(ctx, p, "port", "link", "set", host, "master", br); err != nil {
						return err
					}
					if err := sh.fab(ctx, p, "port", "link", "set", host, "up"); err != nil {
						return err
					}
					if err := p.time("port", func() error { return sh.run(ctx, "-n", ns, "link", "set", br, "up") }); err != nil {
						return err
					}
				}
			}
			return nil
		},
		checkMade: func(ctx context.Context) error {
			if err := checkFabric(sh.fabricPath(), lay.cens, lay.members()); err != nil {
				return err
			}
			for _, s := range lay.spots() {
				if err := checkMember(netnsPathOf(sh.netns(lay, s[0], s[1])), lay.cenID(s[0])); err != nil {
					return fmt.Errorf("namespace %s: %w", sh.netns(lay, s[0], s[1]), err)
				}
			}
			return nil
		},
		destroy: func(ctx context.Context, p *parts) error {
			for i := range lay.cens {
				for j := range lay.per {
					if err := sh.fab(ctx, p, "veth", "link", "del", sh.hostEnd(lay, i, j)); err != nil {
						return err
					}
				}
			}
			for i := range lay.cens {
				if err := sh.fab(ctx, p, "bridge", "link", "del", lay.cenID(i)); err != nil {
					return err
				}
			}
			return nil
		},
		checkDestroyed: func(ctx context.Context) error {
			if err := checkFabric(sh.fabricPath(), 0, 0); err != nil {
				return err
			}
			for _, s := range lay.spots() {
				if err := checkMember(netnsPathOf(sh.netns(lay, s[0], s[1])), ""); err != nil {
					return fmt.Errorf("namespace %s: %w", sh.netns(lay, s[0], s[1]), err)
				}
			}
			return nil
		},
	}
}
