package rest

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/leviathan-net/leviathan/core"
)

// metricsScrape is one parsed GET /metrics.
type metricsScrape map[string]*dto.MetricFamily

// scrape reads /metrics as a Prometheus server would, with basic auth
// when user is not empty.
func (e *env) scrape(user, pass string) metricsScrape {
	e.t.Helper()
	req, err := http.NewRequest("GET", e.srv.URL+"/metrics", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		e.t.Fatalf("GET /metrics: status %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		e.t.Errorf("GET /metrics: Content-Type %q, want text/plain", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		e.t.Fatalf("GET /metrics: %v", err)
	}
	return fams
}

// value is the sample of family name with exactly the labels given as
// "k=v" pairs (a histogram's count); ok is false when there is none.
func (s metricsScrape) value(name string, labels ...string) (v float64, ok bool) {
	slices.Sort(labels)
	for _, m := range s[name].GetMetric() {
		var got []string
		for _, l := range m.GetLabel() {
			got = append(got, l.GetName()+"="+l.GetValue())
		}
		slices.Sort(got)
		if !slices.Equal(got, labels) {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// want checks one sample.
func (s metricsScrape) want(t *testing.T, want float64, name string, labels ...string) {
	t.Helper()
	got, ok := s.value(name, labels...)
	if !ok {
		t.Errorf("%s{%s}: missing", name, strings.Join(labels, ","))
	} else if got != want {
		t.Errorf("%s{%s} = %v, want %v", name, strings.Join(labels, ","), got, want)
	}
}

// scrapeUntil scrapes until cond holds, failing after 10 s: what the
// monitor counts follows the request that caused it by a moment.
func (e *env) scrapeUntil(what string, cond func(metricsScrape) bool) metricsScrape {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := e.scrape("", "")
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("metrics never showed %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMetrics makes CENs and a CIN on a real server and reads them back
// from /metrics: the objects agree with the API, each make is one
// histogram observation, each kernel call is counted, and the monitor's
// open connections and events show.
func TestMetrics(t *testing.T) {
	e := newEnv(t, Options{})
	mon := e.monitor()
	notes, _, err := e.dialWS("/v2/notifications/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { notes.c.CloseNow() })
	e.scrapeUntil("both websockets open", func(s metricsScrape) bool {
		m, _ := s.value("leviathan_monitor_connections", "stream=monitor")
		n, _ := s.value("leviathan_monitor_connections", "stream=notifications_ws")
		return m == 1 && n == 1
	})
	seq0 := e.svc.Bus().Seq()

	e.must(200, "POST", "/cen/import", `{"cenList":[
		{"cenID":"cen1","containerIDs":["a","b"]},
		{"cenID":"cen2","containerIDs":["b","c","d"]},
		{"cenID":"cen3","containerIDs":["e"]}]}`, nil)
	e.must(200, "POST", "/cen/make", `["cen1","cen2"]`, nil)
	e.must(200, "POST", "/cin/import", `{"cin1":["cen1"]}`, nil)
	e.must(200, "POST", "/cin/make", `["cin1"]`, nil)
	e.must(404, "POST", "/cin/make", `["cin1","nosuch"]`, nil) // a failed make
	e.must(200, "POST", "/cen/destroy", `["cen3"]`, nil)

	published := e.svc.Bus().Seq() - seq0
	s := e.scrapeUntil("every event sent to the notification websocket", func(s metricsScrape) bool {
		n, _ := s.value("leviathan_monitor_events_sent_total", "stream=notifications_ws")
		return n == float64(published)
	})

	t.Run("objects agree with the API", func(t *testing.T) {
		s.want(t, 2, "leviathan_objects", "kind=cen", "state=configured")
		s.want(t, 1, "leviathan_objects", "kind=cen", "state=pending")
		s.want(t, 0, "leviathan_objects", "kind=cen", "state=failed")
		s.want(t, 1, "leviathan_objects", "kind=cin", "state=configured")
		var ctrs []core.ContainerView
		e.must(200, "GET", "/host/host1", "", &ctrs)
		running := 0
		for _, c := range ctrs {
			if c.State == "running" {
				running++
			}
		}
		if running != 5 {
			t.Fatalf("%d containers run, want 5: %+v", running, ctrs)
		}
		s.want(t, 5, "leviathan_objects", "kind=container", "state=running")
		s.want(t, 5, "leviathan_containers", "runtime=netns", "state=running")
		s.want(t, 0, "leviathan_containers", "runtime=docker", "state=running")
		if _, ok := s.value("leviathan_objects", "kind=cpool", "state=configured"); ok {
			t.Error("CPools are counted on a server without Docker")
		}
	})
	t.Run("make and destroy durations", func(t *testing.T) {
		s.want(t, 1, "leviathan_operation_duration_seconds", "kind=cen", "op=make", "outcome=ok")
		s.want(t, 1, "leviathan_operation_duration_seconds", "kind=cin", "op=make", "outcome=ok")
		s.want(t, 1, "leviathan_operation_duration_seconds", "kind=cin", "op=make", "outcome=failed")
		s.want(t, 1, "leviathan_operation_duration_seconds", "kind=cen", "op=destroy", "outcome=ok")
		if got := s["leviathan_operation_duration_seconds"].GetType(); got != dto.MetricType_HISTOGRAM {
			t.Errorf("type %v, want a histogram", got)
		}
	})
	t.Run("kernel operations", func(t *testing.T) {
		for _, tc := range []struct {
			op   string
			want float64
		}{
			{"reconcile", 1}, // at start
			{"reconcile_cins", 1},
			{"apply", 2}, // one per CEN made
			{"apply_cin", 1},
			{"destroy_many", 1},
			{"destroy", 0},
		} {
			s.want(t, tc.want, "leviathan_kernel_operations_total", "op="+tc.op, "outcome=ok")
			s.want(t, 0, "leviathan_kernel_operations_total", "op="+tc.op, "outcome=failed")
			s.want(t, tc.want, "leviathan_kernel_operation_duration_seconds", "op="+tc.op)
		}
	})
	t.Run("monitor", func(t *testing.T) {
		s.want(t, 1, "leviathan_monitor_connections", "stream=monitor")
		s.want(t, 1, "leviathan_monitor_connections", "stream=notifications_ws")
		s.want(t, 0, "leviathan_monitor_connections", "stream=notifications")
		s.want(t, float64(e.svc.Bus().Seq()), "leviathan_monitor_events_published_total")
		s.want(t, 0, "leviathan_monitor_clients_dropped_total")
		mon.c.CloseNow()
		e.scrapeUntil("the monitor websocket closed", func(s metricsScrape) bool {
			n, _ := s.value("leviathan_monitor_connections", "stream=monitor")
			return n == 0
		})
	})
	t.Run("every metric has help and the prefix", func(t *testing.T) {
		for name, f := range s {
			if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") || strings.HasPrefix(name, "promhttp_") {
				continue
			}
			if !strings.HasPrefix(name, "leviathan_") || f.GetHelp() == "" {
				t.Errorf("%s: want the leviathan_ prefix and HELP text (help %q)", name, f.GetHelp())
			}
		}
	})
}

// TestMetricsNeedAuth: /metrics is behind the same basic auth as the API.
func TestMetricsNeedAuth(t *testing.T) {
	e := newEnv(t, Options{Auth: "admin:s3cret"})
	for _, tc := range []struct {
		name, user, pass string
		want             int
	}{
		{"no credentials", "", "", 401},
		{"wrong password", "admin", "nope", 401},
		{"right credentials", "admin", "s3cret", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := e.in(t).authDo("GET", "/metrics", tc.user, tc.pass); got != tc.want {
				t.Errorf("status %d, want %d", got, tc.want)
			}
		})
	}
	s := e.scrape("admin", "s3cret")
	if _, ok := s.value("leviathan_objects", "kind=cen", "state=configured"); !ok {
		t.Errorf("no leviathan_objects in an authenticated scrape: %d families", len(s))
	}
}
