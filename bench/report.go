package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"
)

// target is what one operation of a phase is held to.
type target struct {
	op string
	// maxShare: leviathan takes at most 1/maxShare of the shell's time
	// (0: no such target).
	maxShare float64
	// maxPerMember: leviathan takes less than this per member (0: none).
	maxPerMember time.Duration
}

// report gathers results and judges them against the phases' targets.
type report struct {
	cfg     config
	results []result
}

func newReport(cfg config) *report { return &report{cfg: cfg} }

func (r *report) add(rs ...result) { r.results = append(r.results, rs...) }

func (r *report) find(ph, op, sys string) *result {
	for i := range r.results {
		if x := &r.results[i]; x.Phase == ph && x.Op == op && x.System == sys {
			return x
		}
	}
	return nil
}

// row is one phase and operation, both systems side by side.
type row struct {
	Phase     string    `json:"phase"`
	Op        string    `json:"op"`
	Members   int       `json:"members"`
	Leviathan *figures  `json:"leviathan,omitempty"`
	Shell     *figures  `json:"shell,omitempty"`
	Ratio     float64   `json:"shell_over_leviathan,omitempty"`
	Verdicts  []verdict `json:"targets"`
}

type figures struct {
	Seconds     float64            `json:"seconds"`
	PerMemberMs float64            `json:"per_member_ms"`
	Parts       map[string]float64 `json:"parts_seconds,omitempty"`
}

type verdict struct {
	Target   string `json:"target"`
	Measured string `json:"measured"`
	Met      *bool  `json:"met"` // null: not measured (no baseline)
}

func figuresOf(x *result) *figures {
	if x == nil {
		return nil
	}
	f := &figures{Seconds: x.Total.Seconds(), PerMemberMs: perMember(x).Seconds() * 1000}
	if x.Parts != nil && len(x.Parts.names) > 1 {
		f.Parts = map[string]float64{}
		for _, n := range x.Parts.names {
			f.Parts[n] = x.Parts.d[n].Seconds()
		}
	}
	return f
}

func perMember(x *result) time.Duration {
	if x.Members == 0 {
		return 0
	}
	return x.Total / time.Duration(x.Members)
}

func (r *report) rows() []row {
	var out []row
	for _, ph := range phases {
		for _, op := range []string{"make", "destroy"} {
			lev, sh := r.find(ph.name, op, sysLeviathan), r.find(ph.name, op, sysShell)
			if lev == nil && sh == nil {
				continue
			}
			rw := row{Phase: ph.name, Op: op, Leviathan: figuresOf(lev), Shell: figuresOf(sh), Verdicts: []verdict{}}
			if lev != nil {
				rw.Members = lev.Members
			} else {
				rw.Members = sh.Members
			}
			if lev != nil && sh != nil && lev.Total > 0 {
				rw.Ratio = float64(sh.Total) / float64(lev.Total)
			}
			for _, t := range ph.targets {
				if t.op != op {
					continue
				}
				if t.maxShare > 0 {
					v := verdict{Target: fmt.Sprintf("≤ 1/%g of shell", t.maxShare), Measured: "no baseline"}
					if rw.Ratio > 0 {
						met := rw.Ratio >= t.maxShare
						v.Measured, v.Met = fmt.Sprintf("1/%.2f", rw.Ratio), &met
					}
					rw.Verdicts = append(rw.Verdicts, v)
				}
				if t.maxPerMember > 0 {
					v := verdict{Target: fmt.Sprintf("< %g ms per member", float64(t.maxPerMember)/float64(time.Millisecond)), Measured: "not measured"}
					if lev != nil {
						met := perMember(lev) < t.maxPerMember
						v.Measured, v.Met = ms(perMember(lev))+" per member", &met
					}
					rw.Verdicts = append(rw.Verdicts, v)
				}
			}
			out = append(out, rw)
		}
	}
	return out
}

func (r *report) print(w io.Writer) {
	rows := r.rows()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\top\tmembers\tleviathan\tper member\tshell\tper member\tshell/leviathan\t")
	for _, rw := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t\n", rw.Phase, rw.Op, rw.Members,
			secs(rw.Leviathan), perMs(rw.Leviathan), secs(rw.Shell), perMs(rw.Shell), ratio(rw.Ratio))
	}
	tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tleviathan\tresult")
	for _, rw := range rows {
		for _, v := range rw.Verdicts {
			res := "not measured"
			if v.Met != nil {
				res = map[bool]string{true: "met", false: "MISSED"}[*v.Met]
			}
			fmt.Fprintf(tw, "%s %s %s\t%s\t%s\n", rw.Phase, rw.Op, v.Target, v.Measured, res)
		}
	}
	tw.Flush()

	// Where the time went, for the operations that split it.
	var notes []string
	for _, rw := range rows {
		for _, s := range []struct {
			name string
			f    *figures
		}{{sysLeviathan, rw.Leviathan}, {sysShell, rw.Shell}} {
			if x := r.find(rw.Phase, rw.Op, s.name); x != nil && x.Parts != nil && len(x.Parts.names) > 1 {
				notes = append(notes, fmt.Sprintf("  %s %s, %s: %s", rw.Phase, rw.Op, s.name, strings.TrimSuffix(strings.TrimPrefix(x.Parts.String(), " ("), ")")))
			}
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w, "\nwhere the time went:")
		for _, n := range notes {
			fmt.Fprintln(w, n)
		}
	}
}

func secs(f *figures) string {
	if f == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f s", f.Seconds)
}

func perMs(f *figures) string {
	if f == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f ms", f.PerMemberMs)
}

func ratio(x float64) string {
	if x == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fx", x)
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond))
}

// writeJSON writes the configuration, the machine and the rows.
func (r *report) writeJSON(path string) error {
	var uts unix.Utsname
	unix.Uname(&uts)
	doc := struct {
		Time    time.Time `json:"time"`
		CENs    int       `json:"cens"`
		Per     int       `json:"members_per_cen"`
		CINs    int       `json:"cins"`
		CENsPer int       `json:"cens_per_cin"`
		CPUs    int       `json:"cpus"`
		Kernel  string    `json:"kernel"`
		Results []row     `json:"results"`
	}{time.Now().UTC(), r.cfg.cens, r.cfg.per, r.cfg.cins(), censPerCIN, runtime.NumCPU(), unix.ByteSliceToString(uts.Release[:]), r.rows()}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
