package dockerrt_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/leviathan-net/leviathan/cpool/dockerrt"
	"github.com/leviathan-net/leviathan/cpool/dockerrt/dtest"
)

func TestLookup(t *testing.T) {
	e := dtest.Engine(t)
	img := dtest.Image(t, e)
	name := dtest.Name(t) + "a"
	c := run(t, e, dockerrt.RunSpec{Name: name, Image: img})

	tests := []struct {
		name, ref string
		err       error
	}{
		{"name", name, nil},
		{"name with slash", "/" + name, nil},
		{"full ID", c.ID, nil},
		{"12-digit prefix", c.ID[:12], nil},
		{"20-digit prefix", c.ID[:20], nil},
		{"11-digit prefix", c.ID[:11], dockerrt.ErrNoContainer},
		{"1-digit prefix", c.ID[:1], dockerrt.ErrNoContainer},
		{"unknown name", name + "-nothing", dockerrt.ErrNoContainer},
		{"unknown ID", "0123456789ab0123456789ab", dockerrt.ErrNoContainer},
		{"empty", "", dockerrt.ErrNoContainer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := e.Lookup(context.Background(), tt.ref)
			if !errors.Is(err, tt.err) || (err != nil) != (tt.err != nil) {
				t.Fatalf("Lookup(%q): %v, want %v", tt.ref, err, tt.err)
			}
			if err != nil {
				t.Logf("Lookup(%q): %v", tt.ref, err)
				return
			}
			if diff := cmp.Diff(c, got); diff != "" {
				t.Errorf("Lookup(%q) (-Run +Lookup):\n%s", tt.ref, diff)
			}
		})
	}
}

// A name made of hex digits names its container even when it is also the
// prefix of another's ID, as with the engine.
func TestLookupNameBeforePrefix(t *testing.T) {
	e := dtest.Engine(t)
	img := dtest.Image(t, e)
	prefix := dtest.Name(t)
	a := run(t, e, dockerrt.RunSpec{Name: prefix + "a", Image: img})
	b := run(t, e, dockerrt.RunSpec{Name: a.ID[:12], Image: img})
	defer e.Remove(context.Background(), b.ID)
	got, err := e.Lookup(context.Background(), a.ID[:12])
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != b.ID {
		t.Errorf("Lookup(%q) = %s (%s), want the container of that name, %s", a.ID[:12], got.ID, got.Name, b.ID)
	}
}

// Two random IDs that share 12 digits cannot be made: with prefixes of one
// digit allowed, containers are made until two share their first.
func TestLookupAmbiguous(t *testing.T) {
	e := dtest.Engine(t)
	img := dtest.Image(t, e)
	prefix := dtest.Name(t)
	defer dockerrt.SetMinPrefix(1)()
	seen := map[byte]string{}
	for i := 0; ; i++ {
		c := run(t, e, dockerrt.RunSpec{Name: prefix + string(rune('a'+i)), Image: img, Cmd: []string{"/bin/true"}})
		if other, ok := seen[c.ID[0]]; ok {
			_, err := e.Lookup(context.Background(), c.ID[:1])
			if !errors.Is(err, dockerrt.ErrAmbiguous) {
				t.Fatalf("Lookup(%q) with %s and %s: %v, want ErrAmbiguous", c.ID[:1], other, c.ID, err)
			}
			t.Logf("Lookup(%q): %v", c.ID[:1], err)
			return
		}
		seen[c.ID[0]] = c.ID
	}
}

func TestList(t *testing.T) {
	e := dtest.Engine(t)
	img := dtest.Image(t, e)
	prefix := dtest.Name(t)
	key := "leviathan.test." + prefix // no other test's containers have it
	for _, s := range []struct{ name, value string }{{"a1", "a"}, {"a2", "a"}, {"b1", "b"}} {
		run(t, e, dockerrt.RunSpec{Name: prefix + s.name, Image: img, Labels: map[string]string{key: s.value}})
	}
	// One that has stopped is listed all the same.
	run(t, e, dockerrt.RunSpec{Name: prefix + "a3", Image: img, Cmd: []string{"/bin/true"}, Labels: map[string]string{key: "a"}})
	waitExited(t, e, prefix+"a3")

	tests := []struct {
		name, value string
		want        []string
	}{
		{"key=value", "a", []string{"a1", "a2", "a3"}},
		{"other value", "b", []string{"b1"}},
		{"any value", "", []string{"a1", "a2", "a3", "b1"}},
		{"no such value", "c", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs, err := e.List(context.Background(), key, tt.value)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range cs {
				got = append(got, c.Name[len(prefix):])
				if c.Labels[key] == "" {
					t.Errorf("%s has no label %s: %v", c.Name, key, c.Labels)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("List(%s, %q) (-want +got):\n%s", key, tt.value, diff)
			}
		})
	}

	t.Run("named", func(t *testing.T) {
		cs, err := e.ListNamed(context.Background(), prefix+"a")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range cs {
			got = append(got, c.Name[len(prefix):])
		}
		if diff := cmp.Diff([]string{"a1", "a2", "a3"}, got); diff != "" {
			t.Errorf("ListNamed(%s) (-want +got):\n%s", prefix+"a", diff)
		}
	})
}
