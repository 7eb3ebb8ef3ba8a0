package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/leviathan-net/leviathan/bench/benchfmt"
)

// Targets.
const (
	maxWiringShare = 0.10                   // of leviathan's launch
	maxRejoinP99   = 500 * time.Millisecond // docker start to ping answered
)

type report struct {
	n      int
	launch launchResult
	rejoin []rejoinResult
}

func (r *report) print(w io.Writer) {
	l := r.launch
	n := time.Duration(r.n)
	wiringA := l.pool - l.dockerTime()
	wiringB := l.pool - l.lastStart
	sh := l.script

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "launch of %d containers\ttotal\tDocker\twiring\twiring share\tper container\t\n", r.n)
	fmt.Fprintf(tw, "leviathan: POST /cpool, Docker alone run apart (A)\t%s\t%s\t%s\t%s\t%s\t\n",
		benchfmt.Secs(l.pool), benchfmt.Secs(l.dockerTime()), benchfmt.Secs(wiringA), pct(wiringA, l.pool), benchfmt.Msec(l.pool/n))
	fmt.Fprintf(tw, "the same POST, split at its last container's start (B)\t%s\t%s\t%s\t%s\t%s\t\n",
		benchfmt.Secs(l.pool), benchfmt.Secs(l.lastStart), benchfmt.Secs(wiringB), pct(wiringB, l.pool), benchfmt.Msec(l.pool/n))
	fmt.Fprintf(tw, "script: docker run x%d, then docker inspect and ip\t%s\t%s\t%s\t%s\t%s\t\n", r.n,
		benchfmt.Secs(sh.total()), benchfmt.Secs(sh.run), benchfmt.Secs(sh.inspect+sh.ip), pct(sh.inspect+sh.ip, sh.total()), benchfmt.Msec(sh.total()/n))
	fmt.Fprintf(tw, "script/leviathan\t%s\t\t%s\t\t\t\n", benchfmt.Ratio(sh.total(), l.pool), benchfmt.Ratio(sh.inspect+sh.ip, wiringA))
	tw.Flush()
	fmt.Fprintf(w, `
  leviathan's Docker time is Docker alone running the same number of
  containers through dockerrt.Run, %d at once as cpool does, with no wiring:
  %s before the pool and %s after it, their mean; its wiring is the rest of
  the POST (A). Cross-check (B): the POST minus the time from sending it to
  the last StartedAt of the pool's containers: cpool wires only once every
  container runs, so what follows is wiring (and the last start's return):
  %s, %s of the POST.
  The script's wiring is %d docker inspect (%s) and %d ip processes (%s):
  veth add, move into the container, master, up in the fabric; rename,
  address, up, default route inside (nsenter). DELETE /cpool took %s.
`, launches, benchfmt.Secs(l.dockerOnly[0]), benchfmt.Secs(l.dockerOnly[1]), benchfmt.Secs(wiringB), pct(wiringB, l.pool),
		r.n, benchfmt.Secs(sh.inspect), sh.ipCommands, benchfmt.Secs(sh.ip), benchfmt.Secs(l.poolDelete))

	for _, rj := range r.rejoin {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "rejoin, %s, %d restarts\tp50\tp99\tmax\tmean\t\n", rj.topology, len(rj.rejoin))
		for _, row := range []struct {
			name string
			ds   []time.Duration
		}{
			{"docker start returned -> CIN address answers", rj.rejoin},
			{"docker start run -> CIN address answers", rj.fromInvoke},
			{"docker start (command line)", rj.start},
			{"docker stop returned -> API says stopped", rj.leave},
		} {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", row.name, benchfmt.Msec(benchfmt.Quantile(row.ds, 0.50)), benchfmt.Msec(benchfmt.Quantile(row.ds, 0.99)), benchfmt.Msec(slices.Max(row.ds)), benchfmt.Msec(mean(row.ds)))
		}
		tw.Flush()
		fmt.Fprintf(w, "  the address answered before docker start returned %d times of %d\n", rj.early, len(rj.rejoin))
		if rj.stopErrors > 0 {
			fmt.Fprintf(w, "  the stopped member's error in the API (%d of %d stops), the first: %s\n", rj.stopErrors, len(rj.rejoin), rj.firstError)
		}
	}
	fmt.Fprintln(w, "  (quantiles by nearest rank: with 20 restarts p99 is the slowest)")

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tmeasured\tresult")
	fmt.Fprintf(tw, "launch: leviathan's wiring < 10%% of its total (A)\t%s (%s of %s)\t%s\n", pct(wiringA, l.pool), benchfmt.Secs(wiringA), benchfmt.Secs(l.pool), met(share(wiringA, l.pool) < maxWiringShare))
	fmt.Fprintf(tw, "launch: leviathan's wiring < 10%% of its total (B)\t%s (%s of %s)\t%s\n", pct(wiringB, l.pool), benchfmt.Secs(wiringB), benchfmt.Secs(l.pool), met(share(wiringB, l.pool) < maxWiringShare))
	for _, rj := range r.rejoin {
		p99 := benchfmt.Quantile(rj.rejoin, 0.99)
		fmt.Fprintf(tw, "rejoin, %s: p99 < %s\t%s\t%s\n", rj.topology, benchfmt.Msec(maxRejoinP99), benchfmt.Msec(p99), met(p99 < maxRejoinP99))
	}
	tw.Flush()
}

func mean(ds []time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(max(1, len(ds)))
}

func share(part, total time.Duration) float64 {
	if total <= 0 {
		return math.NaN()
	}
	return float64(part) / float64(total)
}

func pct(part, total time.Duration) string { return fmt.Sprintf("%.1f%%", 100*share(part, total)) }

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}
