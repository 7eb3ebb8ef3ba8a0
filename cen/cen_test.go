package cen

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/leviathan-net/leviathan/graph"
)

func TestParseFileReadmeExample(t *testing.T) {
	f, err := os.Open("../examples/cen.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := ParseFile(f)
	if err != nil {
		t.Fatal(err)
	}
	want := []Spec{
		{"cen1", []string{"c1", "c2", "c13", "c14"}},
		{"cen2", []string{"c4", "c5", "c6", "c7"}},
		{"cen3", []string{"c15", "c16", "c9", "c10", "c11"}},
		{"cen4", []string{"c11", "c12"}},
		{"cen5", []string{"c2", "c3"}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("ParseFile (-want +got):\n%s", d)
	}
}

func TestParseFile(t *testing.T) {
	long := strings.Repeat("a", 65)
	tests := []struct {
		name, in string
		want     []Spec
		err      error // nil: must succeed
		msg      string
	}{
		{name: "empty list", in: `{"cenList":[]}`, want: []Spec{}},
		{name: "extra keys ignored", in: `{"x":1,"cenList":[{"cenID":"a","containerIDs":["c"],"y":2}]}`, want: []Spec{{"a", []string{"c"}}}},
		{name: "no containers", in: `{"cenList":[{"cenID":"a","containerIDs":[]}]}`, want: []Spec{{"a", []string{}}}},
		{name: "containerIDs missing", in: `{"cenList":[{"cenID":"a"}]}`, err: graph.ErrInvalid, msg: "no containerIDs"},
		{name: "containerIDs null", in: `{"cenList":[{"cenID":"a","containerIDs":null}]}`, err: graph.ErrInvalid, msg: "no containerIDs"},
		{name: "containerIDs missing after a good one", in: `{"cenList":[{"cenID":"a","containerIDs":["c"]},{"cenID":"b"}]}`, err: graph.ErrInvalid, msg: `"b" has no containerIDs`},
		{name: "cenList null", in: `{"cenList":null}`, err: graph.ErrInvalid, msg: "cenList"},
		{name: "entry null", in: `{"cenList":[null]}`, err: graph.ErrInvalid, msg: "no cenID"},
		{name: "malformed", in: `{"cenList":[`, err: graph.ErrInvalid},
		{name: "not an object", in: `[1]`, err: graph.ErrInvalid},
		{name: "no cenList", in: `{"cens":[]}`, err: graph.ErrInvalid, msg: "cenList"},
		{name: "no cenID", in: `{"cenList":[{"containerIDs":["c"]}]}`, err: graph.ErrInvalid, msg: "no cenID"},
		{name: "bad CEN ID", in: `{"cenList":[{"cenID":"-a","containerIDs":[]}]}`, err: graph.ErrInvalid, msg: `"-a"`},
		{name: "long CEN ID", in: `{"cenList":[{"cenID":"` + long + `","containerIDs":[]}]}`, err: graph.ErrInvalid},
		{name: "bad container ID", in: `{"cenList":[{"cenID":"a","containerIDs":["c 1"]}]}`, err: graph.ErrInvalid, msg: `"c 1"`},
		{name: "bad host of a member", in: `{"cenList":[{"cenID":"a","containerIDs":["h 1/c"]}]}`, err: graph.ErrInvalid, msg: `"h 1/c"`},
		{name: "member with no host", in: `{"cenList":[{"cenID":"a","containerIDs":["/c"]}]}`, err: graph.ErrInvalid, msg: `"/c"`},
		{name: "member with two slashes", in: `{"cenList":[{"cenID":"a","containerIDs":["h/c/d"]}]}`, err: graph.ErrInvalid, msg: `"c/d"`},
		{name: "CEN twice", in: `{"cenList":[{"cenID":"a","containerIDs":[]},{"cenID":"a","containerIDs":[]}]}`, err: graph.ErrInvalid, msg: "twice"},
		{name: "container twice", in: `{"cenList":[{"cenID":"a","containerIDs":["c","c"]}]}`, err: graph.ErrInvalid, msg: "twice"},
		{name: "trailing data", in: `{"cenList":[]} {}`, err: graph.ErrInvalid, msg: "trailing"},
		{name: "containerIDs not strings", in: `{"cenList":[{"cenID":"a","containerIDs":[1]}]}`, err: graph.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFile(strings.NewReader(tt.in))
			if tt.err == nil {
				if err != nil {
					t.Fatal(err)
				}
				if d := cmp.Diff(tt.want, got); d != "" {
					t.Fatalf("(-want +got):\n%s", d)
				}
				return
			}
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err %q does not mention %q", err, tt.msg)
			}
		})
	}
}

func TestShortNamesNeverEqualIDs(t *testing.T) {
	// Two long IDs sharing their first 8 bytes get different short names,
	// and a short name is never a valid ID, so it cannot equal the name of
	// a CEN whose ID fits.
	a, b := "averylongcenname-one", "averylongcenname-two"
	if IfName(a) == IfName(b) {
		t.Fatalf("IfName(%q) == IfName(%q) == %q", a, b, IfName(a))
	}
	if graph.ValidateID("CEN", IfName(a)) == nil {
		t.Fatalf("short name %q is a valid ID, so it could collide with a CEN named so", IfName(a))
	}
}

func TestParseIDList(t *testing.T) {
	got, err := ParseIDList("CEN", strings.NewReader(`["a","b","a"]`))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"a", "b"}, got); d != "" {
		t.Fatal(d)
	}
	for _, in := range []string{``, `{}`, `["a",1]`, `["../x"]`, `["a"] x`, `"a"`} {
		if _, err := ParseIDList("CEN", strings.NewReader(in)); !errors.Is(err, graph.ErrInvalid) {
			t.Errorf("ParseIDList(%q) err = %v, want ErrInvalid", in, err)
		}
	}
}

func TestPlan(t *testing.T) {
	for n, want := range map[int]graph.Wiring{0: graph.WiringNone, 1: graph.WiringNone, 2: graph.WiringWire, 3: graph.WiringBridge, 1000: graph.WiringBridge} {
		if got := Plan(n); got != want {
			t.Errorf("Plan(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestNames(t *testing.T) {
	tests := []struct{ id, want string }{
		{"cen1", "cen1"},
		{"exactly15bytes_", "exactly15bytes_"},
		{"sixteen-bytes-id", "sixteen-~"},
		{strings.Repeat("x", 64), "xxxxxxxx~"},
	}
	for _, tt := range tests {
		got := IfName(tt.id)
		if len(got) > MaxIfName || !strings.HasPrefix(got, tt.want) {
			t.Errorf("IfName(%q) = %q, want %q...", tt.id, got, tt.want)
		}
		if got != IfName(tt.id) {
			t.Errorf("IfName(%q) is not deterministic", tt.id)
		}
	}
	m1 := graph.Member{Host: "host1", Container: "c1"}
	m2 := graph.Member{Host: "host1", Container: "c2"}
	h := HostIfName("cen1", m1)
	if len(h) > MaxIfName || !strings.HasPrefix(h, "lv~") || h == HostIfName("cen1", m2) || h == HostIfName("cen2", m1) {
		t.Errorf("HostIfName: %q not a distinct ≤15-byte lv~ name", h)
	}
	mac := MAC("cen1", m1)
	if mac[0]&1 != 0 || mac[0]&2 == 0 {
		t.Errorf("MAC %s is not a locally administered unicast address", mac)
	}
	if mac.String() != MAC("cen1", m1).String() || mac.String() == MAC("cen1", m2).String() {
		t.Errorf("MAC is not deterministic and distinct: %s", mac)
	}
}

func TestFreeGroup(t *testing.T) {
	used := map[uint32]bool{GroupBase: true, GroupBase + 1: true, GroupBase + 3: true}
	g, err := FreeGroup(used)
	if err != nil || g != GroupBase+2 {
		t.Fatalf("FreeGroup = %#x, %v; want %#x", g, err, GroupBase+2)
	}
	if !IsOwnGroup(g) || IsOwnGroup(0) || IsOwnGroup(GroupBase+MaxGroups) {
		t.Error("IsOwnGroup range is wrong")
	}
	full := map[uint32]bool{}
	for i := uint32(0); i < MaxGroups-1; i++ {
		full[GroupBase+i] = true
	}
	if _, err := FreeGroup(full); !errors.Is(err, graph.ErrConflict) {
		t.Errorf("FreeGroup on a full range: %v, want ErrConflict", err)
	}
}

func TestValidateCENIDReserved(t *testing.T) {
	for _, id := range []string{"lo", "all", "default", "bonding_masters"} {
		if err := ValidateCENID(id); !errors.Is(err, graph.ErrInvalid) {
			t.Errorf("ValidateCENID(%q) = %v, want ErrInvalid", id, err)
		}
	}
	if err := ValidateCENID("cen1"); err != nil {
		t.Error(err)
	}
}

func TestParseFileMembersOfHosts(t *testing.T) {
	specs, err := ParseFile(strings.NewReader(`{"cenList":[{"cenID":"a","containerIDs":["c1","h2/c2"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if h, c := SplitMember(specs[0].Containers[1]); h != "h2" || c != "c2" {
		t.Errorf("SplitMember(%q) = %q, %q", specs[0].Containers[1], h, c)
	}
	if h, c := SplitMember(specs[0].Containers[0]); h != "" || c != "c1" {
		t.Errorf("SplitMember(%q) = %q, %q", specs[0].Containers[0], h, c)
	}
}
