package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"text/tabwriter"
	"time"
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
		secs(l.pool), secs(l.dockerTime()), secs(wiringA), pct(wiringA, l.pool), msec(l.pool/n))
	fmt.Fprintf(tw, "the same POST, split at its last container's start (B)\t%s\t%s\t%s\t%s\t%s\t\n",
		secs(l.pool), secs(l.lastStart), secs(wiringB), pct(wiringB, l.pool), msec(l.pool/n))
	fmt.Fprintf(tw, "script: docker run x%d, then docker inspect and ip\t%s\t%s\t%s\t%s\t%s\t\n", r.n,
		secs(sh.total()), secs(sh.run), secs(sh.inspect+sh.ip), pct(sh.inspect+sh.ip, sh.total()), msec(sh.total()/n))
	fmt.Fprintf(tw, "script/leviathan\t%s\t\t%s\t\t\t\n", ratio(sh.total(), l.pool), ratio(sh.inspect+sh.ip, wiringA))
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
`, launches, secs(l.dockerOnly[0]), secs(l.dockerOnly[1]), secs(wiringB), pct(wiringB, l.pool),
		r.n, secs(sh.inspect), sh.ipCommands, secs(sh.ip), secs(l.poolDelete))

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
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", row.name, msec(quantile(row.ds, 0.50)), msec(quantile(row.ds, 0.99)), msec(slices.Max(row.ds)), msec(mean(row.ds)))
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
	fmt.Fprintf(tw, "launch: leviathan's wiring < 10%% of its total (A)\t%s (%s of %s)\t%s\n", pct(wiringA, l.pool), secs(wiringA), secs(l.pool), met(share(wiringA, l.pool) < maxWiringShare))
	fmt.Fprintf(tw, "launch: leviathan's wiring < 10%% of its total (B)\t%s (%s of %s)\t%s\n", pct(wiringB, l.pool), secs(wiringB), secs(l.pool), met(share(wiringB, l.pool) < maxWiringShare))
	for _, rj := range r.rejoin {
		p99 := quantile(rj.rejoin, 0.99)
		fmt.Fprintf(tw, "rejoin, %s: p99 < %s\t%s\t%s\n", rj.topology, msec(maxRejoinP99), msec(p99), met(p99 < maxRejoinP99))
	}
	tw.Flush()
}

// quantile is the q-quantile of ds by nearest rank.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
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

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func msec(d time.Duration) string {
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}

func ratio(a, b time.Duration) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fx", float64(a)/float64(b))
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}
