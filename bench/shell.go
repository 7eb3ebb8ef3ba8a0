package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"

	"github.com/leviathan-net/leviathan/netfab"
)

// shellEnv is the shell baseline: leviathan's historical way, one `ip`
// process per operation (argv, no shell), in a fabric namespace of its own
// and member namespaces of its own.
type shellEnv struct {
	ip     string // path of the ip binary
	fabric string // the fabric namespace's name
	prefix string // member namespaces are prefix + N
}

// netns is the name of the namespace of member j of CEN i.
func (sh *shellEnv) netns(lay layout, i, j int) string {
	return fmt.Sprintf("%s%d", sh.prefix, i*lay.per+j)
}

// hostEnd is the fabric end of the veth of member j of CEN i.
func (sh *shellEnv) hostEnd(lay layout, i, j int) string {
	return fmt.Sprintf("lvbh%d", i*lay.per+j)
}

func (sh *shellEnv) fabricPath() string { return netfab.NetnsPath(sh.fabric) }

// shellSystem prepares the baseline's fabric namespace (registered with cl
// along with every member namespace it will create) and returns it as a
// system ready to run every phase.
func shellSystem(ctx context.Context, lay layout, cl *cleanup) (*system, error) {
	ip, err := exec.LookPath("ip")
	if err != nil {
		return nil, fmt.Errorf("shell baseline: %w (install iproute2, or pass -skip-shell)", err)
	}
	tag := randHex(4)
	sh := &shellEnv{ip: ip, fabric: "lvb-shfab-" + tag, prefix: "lvb-sh-" + tag + "-"}
	paths := []string{sh.fabricPath()}
	for i := range lay.cens {
		for j := range lay.per {
			paths = append(paths, netfab.NetnsPath(sh.netns(lay, i, j)))
		}
	}
	if err := cl.claimNetns(paths...); err != nil {
		return nil, err
	}
	if err := sh.run(ctx, "netns", "add", sh.fabric); err != nil {
		return nil, err
	}
	fmt.Printf("shell baseline with %s (fabric %s, namespaces %sN)\n", ip, sh.fabric, sh.prefix)
	sys := &system{name: sysShell, layout: lay}
	for _, ph := range phases {
		sys.stages = append(sys.stages, ph.shell(lay, sh))
	}
	return sys, nil
}

// run runs one ip command and fails with its output when it fails.
func (sh *shellEnv) run(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, sh.ip, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// fab runs an ip command in the fabric namespace, counting its time
// against part.
func (sh *shellEnv) fab(ctx context.Context, p *parts, part string, args ...string) error {
	return p.time(part, func() error { return sh.run(ctx, append([]string{"-n", sh.fabric}, args...)...) })
}
