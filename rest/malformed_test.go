package rest

import (
	"encoding/json"
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
