package metrics

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/leviathan-net/leviathan/core"
	"github.com/leviathan-net/leviathan/monitor"
)

// scrape serves m over HTTP and parses what a Prometheus server would
// read. The objects and the kernel operations need a real server and
// kernel: rest tests them.
func scrape(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// values are a family's samples by their labels ("k=v,k=v"); a
// histogram's is its count.
func values(f *dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, m := range f.GetMetric() {
		key := ""
		for i, l := range m.GetLabel() {
			if i > 0 {
				key += ","
			}
			key += l.GetName() + "=" + l.GetValue()
		}
		switch {
		case m.Gauge != nil:
			out[key] = m.GetGauge().GetValue()
		case m.Counter != nil:
			out[key] = m.GetCounter().GetValue()
		case m.Histogram != nil:
			out[key] = float64(m.GetHistogram().GetSampleCount())
		}
	}
	return out
}

type fixedVMs map[string]int

func (v fixedVMs) VMsByStatus() map[string]int { return v }

func TestScrape(t *testing.T) {
	m := New(nil)
	m.ObserveBatch("cen", core.OpMake, true, 3*time.Millisecond)
	m.ObserveBatch("cen", core.OpMake, true, time.Second)
	m.ObserveBatch("cin", core.OpDestroy, false, time.Millisecond)
	bus := monitor.NewBus()
	if err := m.CollectMonitor(monitor.NewServer(bus, nil, nil)); err != nil {
		t.Fatal(err)
	}
	if err := m.CollectMonitor(monitor.NewServer(bus, nil, nil)); err == nil {
		t.Error("a second monitor server was registered on one Metrics")
	}
	slow, _ := bus.Subscribe(1)
	bus.Publish(monitor.Event{Action: monitor.ActionLogInfo}, monitor.Event{Action: monitor.ActionLogInfo})
	<-slow.Done
	if err := m.CollectVMs(fixedVMs{"started": 2, "stopped": 1}); err != nil {
		t.Fatal(err)
	}
	fams := scrape(t, m)
	for _, tc := range []struct {
		name string
		want map[string]float64
	}{
		{"leviathan_operation_duration_seconds", map[string]float64{
			"kind=cen,op=make,outcome=ok":        2,
			"kind=cin,op=destroy,outcome=failed": 1,
		}},
		{"leviathan_monitor_connections", map[string]float64{
			"stream=monitor": 0, "stream=notifications": 0, "stream=notifications_ws": 0,
		}},
		{"leviathan_monitor_events_published_total", map[string]float64{"": 2}},
		{"leviathan_monitor_clients_dropped_total", map[string]float64{"": 1}},
		{"leviathan_vms", map[string]float64{"status=started": 2, "status=stopped": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := fams[tc.name]
			if f == nil {
				t.Fatal("missing")
			}
			if f.GetHelp() == "" {
				t.Error("no HELP")
			}
			if d := cmp.Diff(tc.want, values(f)); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
	if fams["go_goroutines"] == nil || fams["process_start_time_seconds"] == nil {
		t.Error("the Go runtime's and the process's metrics are missing")
	}
}
