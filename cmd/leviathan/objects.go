package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/cpool"
)

// run makes a cobra RunE of a function of the connection to the daemon.
func (c *cli) run(fn func(ctx context.Context, a *api, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		a, err := c.connect()
		if err != nil {
			return err
		}
		return fn(cmd.Context(), a, args)
	}
}

// esc escapes an ID as one path segment.
func esc(id string) string { return url.PathEscape(id) }

type resultsBody struct {
	Results []core.Result `json:"results"`
}

// kind is what the cen and cin nouns differ in.
type kind struct {
	noun, name string // "cen", "CEN"
	file       string // the file import reads
	list       func(*api, []byte) error
	get        func(*api, []byte) error
	addUse     string
	addArgs    cobra.PositionalArgs
	addBody    func(args []string) io.Reader
}

func (c *cli) cenCmd() *cobra.Command {
	return c.objectCmd(kind{
		noun: "cen", name: "CEN", file: `a CEN file: {"cenList":[{"cenID":"cen1","containerIDs":["c1","c2"]}]}`,
		list:    func(a *api, b []byte) error { return showAs(a, b, cenTable) },
		get:     func(a *api, b []byte) error { return showAs(a, b, cenDetail) },
		addUse:  "add ID",
		addArgs: cobra.ExactArgs(1),
		addBody: func([]string) io.Reader {
			return nil
		},
	})
}

func (c *cli) cinCmd() *cobra.Command {
	return c.objectCmd(kind{
		noun: "cin", name: "CIN", file: `a CIN file: {"cin1":["cen1","cen2"]}`,
		list:    func(a *api, b []byte) error { return showAs(a, b, cinTable) },
		get:     func(a *api, b []byte) error { return showAs(a, b, cinDetail) },
		addUse:  "add ID [CEN...]",
		addArgs: cobra.MinimumNArgs(1),
		addBody: func(cens []string) io.Reader {
			if cens == nil {
				cens = []string{}
			}
			return jsonBody(cens)
		},
	})
}

// objectCmd is the cen or cin noun and its verbs.
func (c *cli) objectCmd(k kind) *cobra.Command {
	noun := &cobra.Command{
		Use:   k.noun,
		Short: "Manage " + k.name + "s: import, make, destroy, list, get, add, rm",
	}
	one := func(use, short string, fn func(ctx context.Context, a *api, id string) error) *cobra.Command {
		return &cobra.Command{
			Use: use, Short: short, Args: cobra.ExactArgs(1),
			ValidArgsFunction: c.completeIDs("/" + k.noun),
			RunE: c.run(func(ctx context.Context, a *api, args []string) error {
				return fn(ctx, a, args[0])
			}),
		}
	}
	batch := func(verb, short string) *cobra.Command {
		return &cobra.Command{
			Use: verb + " ID...", Short: short, Args: cobra.MinimumNArgs(1),
			ValidArgsFunction: c.completeIDs("/" + k.noun),
			RunE: c.run(func(ctx context.Context, a *api, ids []string) error {
				raw, err := c.batch(ctx, a, k.noun+"/"+verb, ids)
				if err != nil {
					return err
				}
				return showAs(a, raw, func(w io.Writer, b resultsBody) { resultTable(w, b.Results) })
			}),
		}
	}
	noun.AddCommand(
		&cobra.Command{
			Use: "import FILE|-", Short: "Create or update the " + k.name + "s of " + k.file, Args: cobra.ExactArgs(1),
			RunE: c.run(func(ctx context.Context, a *api, args []string) error {
				f, err := c.fileBody(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				raw, err := a.call(ctx, http.MethodPost, "/"+k.noun+"/import", f)
				if err != nil {
					return err
				}
				return showAs(a, raw, importTable)
			}),
		},
		batch("make", "Realize "+k.name+"s in the kernel"),
		batch("destroy", "Take "+k.name+"s out of the kernel, keeping their description"),
		&cobra.Command{
			Use: "list", Short: "List the " + k.name + "s", Args: cobra.NoArgs,
			RunE: c.run(func(ctx context.Context, a *api, _ []string) error {
				raw, err := a.get(ctx, "/"+k.noun, nil)
				if err != nil {
					return err
				}
				return k.list(a, raw)
			}),
		},
		one("get ID", "Show a "+k.name+" and its members", func(ctx context.Context, a *api, id string) error {
			raw, err := a.get(ctx, "/"+k.noun+"/"+esc(id), nil)
			if err != nil {
				return err
			}
			return k.get(a, raw)
		}),
		&cobra.Command{
			Use: k.addUse, Short: "Create a " + k.name + " (an existing one is kept)", Args: k.addArgs,
			RunE: c.run(func(ctx context.Context, a *api, args []string) error {
				raw, err := a.call(ctx, http.MethodPut, "/"+k.noun+"/"+esc(args[0]), k.addBody(args[1:]))
				if err != nil {
					return err
				}
				return k.get(a, raw)
			}),
		},
		one("rm ID", "Delete a "+k.name+" (destroyed first if it is made)", func(ctx context.Context, a *api, id string) error {
			_, err := a.call(ctx, http.MethodDelete, "/"+k.noun+"/"+esc(id), nil)
			return err
		}),
	)
	return noun
}

func (c *cli) hostCmd() *cobra.Command {
	noun := &cobra.Command{
		Use:   "host",
		Short: "Manage the containers of a host (--host-id): add, get, list, rm, join, leave",
	}
	path := func(parts ...string) string {
		p := "/host/" + esc(c.hostID)
		for _, s := range parts {
			p += "/" + esc(s)
		}
		return p
	}
	complete := func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) == 0 {
			return c.completeIDs(path())(cmd, args, toComplete)
		}
		if len(args) == 1 && (cmd.Name() == "join" || cmd.Name() == "leave") {
			return c.completeIDs("/cen")(cmd, args, toComplete)
		}
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var tag string
	add := &cobra.Command{
		Use: "add C", Short: "Register a container (a Docker container or a network namespace, created if missing)", Args: cobra.ExactArgs(1),
		RunE: c.run(func(ctx context.Context, a *api, args []string) error {
			var body io.Reader
			if tag != "" {
				body = jsonBody(map[string]string{"tag": tag})
			}
			raw, err := a.call(ctx, http.MethodPut, path(args[0]), body)
			if err != nil {
				return err
			}
			return showAs(a, raw, containerDetail)
		}),
	}
	add.Flags().StringVar(&tag, "tag", "", "the container's tag, as monitors filter on it")
	member := func(verb, method, short string) *cobra.Command {
		return &cobra.Command{
			Use: verb + " C CEN", Short: short, Args: cobra.ExactArgs(2), ValidArgsFunction: complete,
			RunE: c.run(func(ctx context.Context, a *api, args []string) error {
				raw, err := a.call(ctx, method, path(args[0], args[1]), nil)
				if err != nil {
					return err
				}
				return showAs(a, raw, cenDetail)
			}),
		}
	}
	noun.AddCommand(
		add,
		&cobra.Command{
			Use: "get C", Short: "Show a container: its namespace and its interfaces", Args: cobra.ExactArgs(1), ValidArgsFunction: complete,
			RunE: c.run(func(ctx context.Context, a *api, args []string) error {
				raw, err := a.get(ctx, path(args[0]), nil)
				if err != nil {
					return err
				}
				return showAs(a, raw, containerDetail)
			}),
		},
		&cobra.Command{
			Use: "list", Short: "List the host's containers", Args: cobra.NoArgs,
			RunE: c.run(func(ctx context.Context, a *api, _ []string) error {
				raw, err := a.get(ctx, path(), nil)
				if err != nil {
					return err
				}
				return showAs(a, raw, containerTable)
			}),
		},
		&cobra.Command{
			Use: "rm C", Short: "Forget a container: it leaves its CENs (a namespace leviathan created is removed)", Args: cobra.ExactArgs(1), ValidArgsFunction: complete,
			RunE: c.run(func(ctx context.Context, a *api, args []string) error {
				_, err := a.call(ctx, http.MethodDelete, path(args[0]), nil)
				return err
			}),
		},
		member("join", http.MethodPut, "Add a container to a CEN (a made CEN is re-wired at once)"),
		member("leave", http.MethodDelete, "Take a container out of a CEN"),
	)
	return noun
}

type poolsBody struct {
	CPools []cpool.View `json:"cpools"`
}

func (c *cli) cpoolCmd() *cobra.Command {
	noun := &cobra.Command{
		Use:   "cpool",
		Short: "Manage pools of Docker containers: create, list, get, scale, rm",
	}
	noun.AddCommand(
		&cobra.Command{
			Use:   "create FILE|-",
			Short: `Create the pools of a CPool file ({"cpoolList":[...]}) and start their containers`,
			Args:  cobra.ExactArgs(1),
			RunE: c.run(func(ctx context.Context, a *api, args []string) error {
				f, err := c.fileBody(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				raw, err := c.createPools(ctx, a, f)
				if err != nil {
					return err
				}
				return showAs(a, raw, func(w io.Writer, b poolsBody) { poolTable(w, b.CPools) })
			}),
		},
		&cobra.Command{
			Use: "list", Short: "List the pools", Args: cobra.NoArgs,
			RunE: c.run(func(ctx context.Context, a *api, _ []string) error {
				raw, err := a.get(ctx, "/cpool", nil)
				if err != nil {
					return err
				}
				return showAs(a, raw, poolTable)
			}),
		},
		&cobra.Command{
			Use: "get ID", Short: "Show a pool and its containers", Args: cobra.ExactArgs(1), ValidArgsFunction: c.completeIDs("/cpool"),
			RunE: c.run(func(ctx context.Context, a *api, args []string) error {
				raw, err := a.get(ctx, "/cpool/"+esc(args[0]), nil)
				if err != nil {
					return err
				}
				return showAs(a, raw, poolDetail)
			}),
		},
		&cobra.Command{
			Use: "scale ID N", Short: "Grow or shrink a pool to N containers", Args: cobra.ExactArgs(2), ValidArgsFunction: c.completeIDs("/cpool"),
			RunE: c.run(func(ctx context.Context, a *api, args []string) error {
				var n any = args[1]
				if i, err := strconv.Atoi(args[1]); err == nil {
					n = i
				}
				raw, err := a.call(ctx, http.MethodPut, "/cpool/"+esc(args[0]), jsonBody(map[string]any{"start_with": n}))
				if err != nil {
					return err
				}
				return showAs(a, raw, poolDetail)
			}),
		},
		&cobra.Command{
			Use: "rm ID", Short: "Delete a pool and its containers", Args: cobra.ExactArgs(1), ValidArgsFunction: c.completeIDs("/cpool"),
			RunE: c.run(func(ctx context.Context, a *api, args []string) error {
				_, err := a.call(ctx, http.MethodDelete, "/cpool/"+esc(args[0]), nil)
				return err
			}),
		},
	)
	return noun
}

// completeIDs completes the IDs of the objects GET path lists (each
// with a cenID, cinID, containerID or cpoolID), asking the daemon.
func (c *cli) completeIDs(path string) cobra.CompletionFunc {
	return func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		a, err := c.connect()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var objs []map[string]json.RawMessage
		if _, err := a.get(ctx, path, &objs); err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var ids []cobra.Completion
		for _, o := range objs {
			for _, key := range []string{"cenID", "cinID", "containerID", "cpoolID"} {
				var id string
				if json.Unmarshal(o[key], &id) == nil && id != "" {
					ids = append(ids, id)
					break
				}
			}
		}
		return ids, cobra.ShellCompDirectiveNoFileComp
	}
}
