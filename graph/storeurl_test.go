package graph

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseStoreURL(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want StoreSpec
	}{
		{"", StoreSpec{}},
		{"bolt", StoreSpec{}},
		{"bolt:///var/lib/lev", StoreSpec{Dir: "/var/lib/lev"}},
		{"etcd://10.0.0.1:2379/lev", StoreSpec{Endpoints: []string{"10.0.0.1:2379"}, Prefix: "lev"}},
		{"etcd://a:2379,b:2379,[::1]:2379/lab/one/", StoreSpec{Endpoints: []string{"a:2379", "b:2379", "[::1]:2379"}, Prefix: "lab/one"}},
		{"etcd://a:2379", StoreSpec{Endpoints: []string{"a:2379"}, Prefix: DefaultEtcdPrefix}},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseStoreURL(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
	for _, in := range []string{"etcd://", "etcd://a/p", "etcd://a:x/p", "etcd://:2379/p", "etcd://a:2379,,b:2379/p", "bolt://rel", "redis://a:1", "/var/lib"} {
		t.Run("bad "+in, func(t *testing.T) {
			if _, err := ParseStoreURL(in); !errors.Is(err, ErrInvalid) {
				t.Errorf("ParseStoreURL(%q) = %v, want ErrInvalid", in, err)
			}
		})
	}
}
