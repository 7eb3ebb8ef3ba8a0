package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/leviathan-net/leviathan/bench/benchkit"
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
		benchkit.Secs(l.pool), benchkit.Secs(l.dockerTime()), benchkit.Secs(wiringA), pct(wiringA, l.pool), benchkit.Msec(l.pool/n))
	fmt.Fprintf(tw, "the same POST, split at its last container's start (B)\t%s\t%s\t%s\t%s\t%s\t\n",
		benchkit.Secs(l.pool), benchkit.Secs(l.lastStart), benchkit.Secs(wiringB), pct(wiringB, l.pool), benchkit.Msec(l.pool/n))
	fmt.Fprintf(tw, "script: docker run x%d, then docker inspect and ip\t%s\t%s\t%s\t%s\t%s\t\n", r.n,
		benchkit.Secs(sh.total()), benchkit.Secs(sh.run), benchkit.Secs(sh.inspect+sh.ip), pct(sh.inspect+sh.ip, sh.total()), benchkit.Msec(sh.total()/n))
	fmt.Fprintf(tw, "script/leviathan\t%s\t\t%s\t\t\t\n", benchkit.Ratio(sh.total(), l.pool), benchkit.Ratio(sh.inspect+sh.ip, wiringA))
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
`, launches, benchkit.Secs(l.dockerOnly[0]), benchkit.Secs(l.dockerOnly[1]), benchkit.Secs(wiringB), pct(wiringB, l.pool),
		r.n, benchkit.Secs(sh.inspect), sh.ipCommands, benchkit.Secs(sh.ip), benchkit.Secs(l.poolDelete))

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
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", row.name, benchkit.Msec(benchkit.Quantile(row.ds, 0.50)), benchkit.Msec(benchkit.Quantile(row.ds, 0.99)), benchkit.Msec(slices.Max(row.ds)), benchkit.Msec(mean(row.ds)))
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
	fmt.Fprintf(tw, "launch: leviathan's wiring < 10%% of its total (A)\t%s (%s of %s)\t%s\n", pct(wiringA, l.pool), benchkit.Secs(wiringA), benchkit.Secs(l.pool), met(share(wiringA, l.pool) < maxWiringShare))
	fmt.Fprintf(tw, "launch: leviathan's wiring < 10%% of its total (B)\t%s (%s of %s)\t%s\n", pct(wiringB, l.pool), benchkit.Secs(wiringB), benchkit.Secs(l.pool), met(share(wiringB, l.pool) < maxWiringShare))
	for _, rj := range r.rejoin {
		p99 := benchkit.Quantile(rj.rejoin, 0.99)
		fmt.Fprintf(tw, "rejoin, %s: p99 < %s\t%s\t%s\n", rj.topology, benchkit.Msec(maxRejoinP99), benchkit.Msec(p99), met(p99 < maxRejoinP99))
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
