package multihost

import (
	"flag"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/leviathan-net/leviathan/bench/benchkit"
	"github.com/leviathan-net/leviathan/internal/ktest"
	"github.com/leviathan-net/leviathan/internal/mhtest"
)

var (
	nMembers = flag.Int("members", 300, "members of the CEN")
	nWrites  = flag.Int("writes", 30, "single-member additions timed")
)

func TestMain(m *testing.M) { os.Exit(mhtest.Run(m)) }

// result is one lab's figures.
type result struct {
	hosts            int
	cenMake, cinMake time.Duration
	cenKV, cinKV     int64
	writes           []time.Duration
	writeKV          int64 // over all writes
	reachable        bool  // the last added member pings the first
}

// The CIN gets a prefix of its own: the default /16 splits into /24s, of
// 245 members each, too few for one CEN of 300.
const cinPrefix = "10.64.0.0/12"

func BenchmarkMultihost(b *testing.B) {
	// A make of hundreds of members may take long: keep the default
	// bound of a call from cutting it.
	mhtest.RequestTimeout = 15 * time.Minute
	rs := map[int]*result{}
	for _, hosts := range []int{3, 1} {
		name := "3 hosts"
		if hosts == 1 {
			name = "1 host"
		}
		b.Run(name, func(b *testing.B) {
			// One measurement, however many times the framework
			// calls for (-benchtime 1x asks for one).
			if rs[hosts] == nil {
				r := measure(b, hosts, *nMembers, *nWrites)
				rs[hosts] = &r
			}
		})
	}
	if rs[3] != nil && rs[1] != nil {
		report(*rs[3], *rs[1])
	}
}

func measure(b *testing.B, hosts, n, writes int) result {
	lab := mhtest.New(b, hosts, mhtest.LogLevel("warn"))
	api := lab.Hosts[0]
	last := lab.Hosts[len(lab.Hosts)-1]
	r := result{hosts: hosts}
	kv := func() int64 {
		b.Helper()
		v, err := lab.EtcdKVRequests()
		if err != nil {
			b.Fatal(err)
		}
		return v
	}
	timed := func(method, path string, body any) (time.Duration, int64) {
		b.Helper()
		k0 := kv()
		start := time.Now()
		api.Must(method, path, body)
		d := time.Since(start)
		return d, kv() - k0
	}

	var ids []string
	for i := range n {
		ids = append(ids, fmt.Sprintf("%s/m%03d", lab.Hosts[i%hosts].ID, i))
	}
	api.Must("POST", "/cen/import", map[string]any{"cenList": []any{map[string]any{"cenID": "big", "containerIDs": ids}}})
	r.cenMake, r.cenKV = timed("POST", "/cen/make", []string{"big"})
	api.Must("POST", "/cin/import", map[string]any{"bignet": map[string]any{"cens": []string{"big"}, "prefix": cinPrefix}})
	r.cinMake, r.cinKV = timed("POST", "/cin/make", []string{"bignet"})

	k0 := kv()
	var w string
	for i := range writes {
		w = fmt.Sprintf("w%02d", i)
		start := time.Now()
		api.Must("PUT", "/host/"+last.ID+"/"+w+"/big", nil)
		r.writes = append(r.writes, time.Since(start))
	}
	r.writeKV = kv() - k0
	if writes > 0 {
		r.reachable = ktest.Ping(b, last.MemberNetns(w), address(b, api, lab.Hosts[0].ID, "m000"))
	}
	return r
}

// address is a member's address on "big", without its length.
func address(b *testing.B, api *mhtest.Host, host, c string) string {
	b.Helper()
	var ctr struct {
		Interfaces []struct {
			CENID     string  `json:"cenID"`
			IPAddress *string `json:"ipaddress"`
		} `json:"interfaces"`
	}
	if s, body := api.JSON("GET", "/host/"+host+"/"+c, nil, &ctr); s != 200 {
		b.Fatalf("GET /host/%s/%s: %d %s", host, c, s, body)
	}
	for _, i := range ctr.Interfaces {
		if i.CENID == "big" && i.IPAddress != nil {
			a, _, _ := strings.Cut(*i.IPAddress, "/")
			return a
		}
	}
	b.Fatalf("%s/%s has no address on big", host, c)
	return ""
}

func report(multi, one result) {
	fmt.Printf("\nmulti-host: one CEN of %d members and a CIN over it, made through hA's API; %d additions of one member\n", *nMembers, len(multi.writes))
	fmt.Printf("on the last host (hC; hA alone on 1 host) through hA's API, each answered once realized\n\n")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "\t%d members on 3 hosts\ton 1 host\t3 hosts / 1\t\n", *nMembers)
	fmt.Fprintf(tw, "POST /cen/make\t%s\t%s\t%s\t\n", benchkit.Secs(multi.cenMake), benchkit.Secs(one.cenMake), benchkit.Ratio(multi.cenMake, one.cenMake))
	fmt.Fprintf(tw, "  etcd round trips\t%d\t%d\t\t\n", multi.cenKV, one.cenKV)
	fmt.Fprintf(tw, "POST /cin/make\t%s\t%s\t%s\t\n", benchkit.Secs(multi.cinMake), benchkit.Secs(one.cinMake), benchkit.Ratio(multi.cinMake, one.cinMake))
	fmt.Fprintf(tw, "  etcd round trips\t%d\t%d\t\t\n", multi.cinKV, one.cinKV)
	for _, q := range []float64{0.50, 0.99} {
		a, o := benchkit.Quantile(multi.writes, q), benchkit.Quantile(one.writes, q)
		fmt.Fprintf(tw, "add a member, write to answer: p%.0f\t%s\t%s\t%s\t\n", q*100, benchkit.Msec(a), benchkit.Msec(o), benchkit.Ratio(a, o))
	}
	fmt.Fprintf(tw, "  etcd round trips per write (mean)\t%.1f\t%.1f\t\t\n", perWrite(multi), perWrite(one))
	fmt.Fprintf(tw, "the last added member pings the first\t%s\t%s\t\t\n", yes(multi.reachable), yes(one.reachable))
	tw.Flush()
	fmt.Println(`
  etcd round trips: requests etcd's KV service (Range, Put, DeleteRange,
  Txn) handled during the call, from its grpc_server_handled_total; lease
  keep-alives and watches are not counted. Quantiles by nearest rank.`)
}

func perWrite(r result) float64 {
	if len(r.writes) == 0 {
		return math.NaN()
	}
	return float64(r.writeKV) / float64(len(r.writes))
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}
