package rest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestMissingListIsMalformed checks that a file entry without its list is
// refused (400) rather than taken for an empty one, and that nothing of
// the file is imported.
func TestMissingListIsMalformed(t *testing.T) {
	e := newEnv(t, Options{})
	e.must(201, "PUT", "/cen/q", "", nil)
	cases := []struct {
		name, method, path, body string
		check                    string // a GET that must answer 404 afterwards
	}{
		{"CEN without containerIDs", "POST", "/cen/import", `{"cenList":[{"cenID":"m1","containerIDs":["c1"]},{"cenID":"m2"}]}`, "/cen/m1"},
		{"CEN with containerIDs null", "POST", "/cen/import", `{"cenList":[{"cenID":"m1","containerIDs":null}]}`, "/cen/m1"},
		{"CIN entry null", "POST", "/cin/import", `{"n1":["q"],"n2":null}`, "/cin/n1"},
		{"CIN object without cens", "POST", "/cin/import", `{"n1":{"prefix":"192.168.0.0/16"}}`, "/cin/n1"},
		{"CIN object with cens null", "POST", "/cin/import", `{"n1":{"cens":null}}`, "/cin/n1"},
		{"PUT CIN without cens", "PUT", "/cin/n1", `{"default_route":true}`, "/cin/n1"},
		{"PUT CIN null", "PUT", "/cin/n1", `null`, "/cin/n1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := e.in(t)
			got, body := e.do(c.method, c.path, c.body)
			var eb errorBody
			if got != 400 || json.Unmarshal([]byte(body), &eb) != nil || eb.Status != 400 {
				t.Fatalf("%s %s %s: %d %s, want a JSON 400", c.method, c.path, c.body, got, body)
			}
			e.must(404, "GET", c.check, "", nil)
		})
	}
	// The empty lists they should have said are fine.
	e.must(200, "POST", "/cen/import", `{"cenList":[{"cenID":"m1","containerIDs":[]}]}`, nil)
	e.must(200, "POST", "/cin/import", `{"n1":{"cens":[]}}`, nil)
}

// TestCINPrefixRefused checks that a prefix that cannot work is refused
// (400) when a CIN is defined, by import and by PUT, instead of failing
// at make or yielding addresses that do not work.
func TestCINPrefixRefused(t *testing.T) {
	e := newEnv(t, Options{})
	e.must(201, "PUT", "/cen/q", "", nil)
	for _, p := range []string{
		"0.0.0.0/0", "0.0.0.0/16", "127.0.0.0/16", "169.254.0.0/16", "224.0.0.0/16",
		"239.0.0.0/8", "240.0.0.0/16", "255.255.0.0/16", "10.1.2.3/16", "fd00::/48", "10.0.0.0",
	} {
		t.Run(p, func(t *testing.T) {
			e := e.in(t)
			entry := `{"cens":["q"],"prefix":"` + p + `"}`
			for _, req := range [][2]string{{"POST", "/cin/import"}, {"PUT", "/cin/n1"}} {
				body := entry
				if req[0] == "POST" {
					body = `{"n1":` + entry + `}`
				}
				got, b := e.do(req[0], req[1], body)
				var eb errorBody
				if got != 400 || json.Unmarshal([]byte(b), &eb) != nil || eb.Status != 400 {
					t.Errorf("%s %s %s: %d %s, want a JSON 400", req[0], req[1], body, got, b)
				}
			}
			e.must(404, "GET", "/cin/n1", "", nil)
		})
	}
	e.must(201, "PUT", "/cin/n1", `{"cens":["q"],"prefix":"172.16.0.0/16"}`, nil)
}

// TestMessagesQuoteInputCapped checks that an error quoting what the
// client sent quotes only the start of it: a list of 500,000 unknown IDs
// names ten, a huge ID or value shows its first bytes.
func TestMessagesQuoteInputCapped(t *testing.T) {
	e := newEnv(t, Options{})
	e.must(201, "PUT", "/cen/cen1", "", nil)
	var ids strings.Builder
	ids.WriteString(`["cen1"`)
	for i := range 500000 {
		fmt.Fprintf(&ids, `,"x%d"`, i)
	}
	ids.WriteString("]")
	huge := strings.Repeat("y", 1<<20)
	long := strings.Repeat("y", 16<<10) // in a URL, under the header limit
	cases := []struct {
		name, method, path, body string
		status                   int
		says                     string
	}{
		{"unknown IDs to make", "POST", "/cen/make", ids.String(), 404, `"x9" and 499990 more`},
		{"unknown IDs to destroy", "POST", "/cin/destroy", ids.String(), 404, "and 499991 more"},
		{"a huge invalid ID", "POST", "/cen/make", `["` + huge + `!"]`, 400, "(1048577 bytes)"},
		{"a huge CIN entry", "POST", "/cin/import", `{"a":"` + huge + `"}`, 400, "(1048578 bytes)"},
		{"a huge prefix", "PUT", "/cin/a", `{"cens":[],"prefix":"` + huge + `"}`, 400, "(1048576 bytes)"},
		{"a huge start_with", "POST", "/cpool", `{"cpoolList":[{"cpoolID":"p","type":"busybox","start_with":"` + huge + `","cins":[]}]}`, 400, "(1048578 bytes)"},
		{"a long unknown route", "GET", "/" + long, "", 404, "(16385 bytes)"},
		{"a long capture count", "GET", "/host/host1/c1/cen1/pcap?count=" + long, "", 400, "(16384 bytes)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := e.in(t)
			got, body := e.do(c.method, c.path, c.body)
			var eb errorBody
			if err := json.Unmarshal([]byte(body), &eb); err != nil || got != c.status || eb.Status != c.status {
				t.Fatalf("%d %.200s, want a JSON %d", got, body, c.status)
			}
			if len(eb.Message) > 1024 || !strings.Contains(eb.Message, c.says) {
				t.Errorf("message of %d bytes: %.300s, want at most 1 KiB saying %q", len(eb.Message), eb.Message, c.says)
			}
		})
	}
}
