package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/cpool"
)

// The tables the client prints for people: tab-separated here, aligned
// by a tabwriter. A missing value is "-".

func row(w io.Writer, cols ...string) {
	for i, c := range cols {
		if c == "" {
			cols[i] = "-"
		}
	}
	fmt.Fprintln(w, strings.Join(cols, "\t"))
}

func list(ss []string) string { return strings.Join(ss, ",") }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// stateOf is a state with its error, when there is one.
func stateOf[S ~string](s S, err string) string {
	if err != "" {
		return fmt.Sprintf("%s (%s)", s, err)
	}
	return string(s)
}

func cenTable(w io.Writer, cs []core.CENView) {
	row(w, "CEN", "STATE", "WIRING", "IFNAME", "MEMBERS")
	for _, c := range cs {
		row(w, c.ID, stateOf(c.State, c.Error), deref(c.Wiring), c.IfName, list(c.Members))
	}
}

func cenDetail(w io.Writer, c core.CENView) {
	cenTable(w, []core.CENView{c})
	if len(c.Each) == 0 {
		return
	}
	fmt.Fprintln(w)
	row(w, "MEMBER", "HOST", "STATE")
	for _, m := range c.Each {
		row(w, m.Container, m.Host, stateOf(m.State, m.Error))
	}
}

func cinTable(w io.Writer, cs []core.CINView) {
	row(w, "CIN", "STATE", "PREFIX", "DEFAULT_ROUTE", "CENS")
	for _, c := range cs {
		row(w, c.ID, stateOf(c.State, c.Error), c.Prefix, fmt.Sprint(c.DefaultRoute), list(c.CENs))
	}
}

func cinDetail(w io.Writer, c core.CINView) {
	cinTable(w, []core.CINView{c})
	if len(c.Members) == 0 {
		return
	}
	fmt.Fprintln(w)
	row(w, "MEMBER", "HOST", "CEN", "INTERFACE", "IPADDRESS", "TAG")
	for _, m := range c.Members {
		row(w, m.Container, m.Host, m.CEN, m.Interface, deref(m.IP), deref(m.Tag))
	}
}

func containerTable(w io.Writer, cs []core.ContainerView) {
	row(w, "CONTAINER", "HOST", "RUNTIME", "STATE", "TAG", "CENS")
	for _, c := range cs {
		row(w, c.ID, c.Host, c.Runtime, stateOf(c.State, c.Error), deref(c.Tag), list(c.CENs))
	}
}

func containerDetail(w io.Writer, c core.ContainerView) {
	containerTable(w, []core.ContainerView{c})
	fmt.Fprintln(w)
	row(w, "NETNS", c.Netns)
	if len(c.Interfaces) == 0 {
		return
	}
	fmt.Fprintln(w)
	row(w, "CEN", "INTERFACE", "MAC", "IPADDRESS", "CIN")
	for _, i := range c.Interfaces {
		row(w, i.CEN, i.Name, i.MAC, deref(i.IP), deref(i.CIN))
	}
}

func poolTable(w io.Writer, ps []cpool.View) {
	row(w, "CPOOL", "STATE", "IMAGE", "START_WITH", "MEMBERS")
	for _, p := range ps {
		row(w, p.ID, stateOf(p.State, p.Error), p.Image, fmt.Sprint(p.StartWith), list(p.Members))
	}
}

func poolDetail(w io.Writer, p cpool.View) {
	poolTable(w, []cpool.View{p})
	if len(p.CINs) > 0 {
		fmt.Fprintln(w)
		row(w, "CIN", "CEN", "DEFAULT_ROUTE")
		for _, c := range p.CINs {
			row(w, c.ID, c.CEN, fmt.Sprint(c.DefaultRoute))
		}
	}
	if len(p.Containers) > 0 {
		fmt.Fprintln(w)
		row(w, "CONTAINER", "HOST", "STATE")
		for _, m := range p.Containers {
			row(w, m.Container, m.Host, stateOf(m.State, m.Error))
		}
	}
}

func resultTable(w io.Writer, rs []core.Result) {
	row(w, "ID", "STATE", "ERROR")
	for _, r := range rs {
		id := r.CEN + r.CIN + r.CPool
		row(w, id, string(r.State), r.Error)
	}
}

func importTable(w io.Writer, s core.ImportSummary) {
	row(w, "CREATED", list(s.Created))
	row(w, "UPDATED", list(s.Updated))
	row(w, "UNCHANGED", list(s.Unchanged))
}
