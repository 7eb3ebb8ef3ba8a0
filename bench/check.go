package main

import (
	"fmt"
	"strings"

	"github.com/leviathan-net/leviathan/netfab"
)

func netnsPathOf(name string) string { return netfab.NetnsPath(name) }

// checkFabric checks that the fabric namespace at path holds exactly lo,
// bridges up bridges and veths veth host ends, each up on a bridge.
func checkFabric(path string, bridges, veths int) error {
	ls, err := netfab.ListLinks(path)
	if err != nil {
		return fmt.Errorf("fabric %s: %w", path, err)
	}
	var nb, nv int
	var odd []string
	for _, l := range ls {
		switch {
		case l.Name == "lo":
		case l.Kind == "bridge" && l.Up:
			nb++
		case l.Kind == "veth" && l.Up && l.Master != "":
			nv++
		default:
			odd = append(odd, fmt.Sprintf("%s (%s, up %v, master %q)", l.Name, l.Kind, l.Up, l.Master))
		}
	}
	if nb != bridges || nv != veths || len(odd) > 0 {
		msg := fmt.Sprintf("fabric %s holds %d bridges and %d veth ports on bridges, want %d and %d", path, nb, nv, bridges, veths)
		if len(odd) > 0 {
			msg += fmt.Sprintf("; and %d other links: %s", len(odd), strings.Join(head(odd, 10), ", "))
		}
		return fmt.Errorf("%s", msg)
	}
	return nil
}

// checkMember checks that the member namespace at path holds lo and, when
// ifname is not empty, an up veth by that name, and nothing else.
func checkMember(path, ifname string) error {
	ls, err := netfab.ListLinks(path)
	if err != nil {
		return err
	}
	found := false
	var odd []string
	for _, l := range ls {
		switch {
		case l.Name == "lo":
		case ifname != "" && l.Name == ifname && l.Kind == "veth" && l.Up:
			found = true
		default:
			odd = append(odd, fmt.Sprintf("%s (%s, up %v)", l.Name, l.Kind, l.Up))
		}
	}
	if ifname != "" && !found {
		return fmt.Errorf("no up veth %q in %s (links: %d others %v)", ifname, path, len(odd), head(odd, 10))
	}
	if len(odd) > 0 {
		return fmt.Errorf("unexpected links in %s: %v", path, head(odd, 10))
	}
	return nil
}

func head(ss []string, n int) []string {
	if len(ss) > n {
		return append(ss[:n:n], "...")
	}
	return ss
}
