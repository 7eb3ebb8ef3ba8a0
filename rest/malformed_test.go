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
