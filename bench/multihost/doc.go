// Package multihost is a benchmark of several hosts (issue 12), run with
// go test -bench (make bench runs it): one CEN of 300 members, and one
// CIN over it, made through one host's API with the members spread over
// three hosts of an mhtest lab, next to the same 300 members on a lab of
// one host on the same kind of etcd. For each it reports the make times,
// the etcd round trips of each make (requests etcd's KV service handled,
// from its own metrics), and, over 30 additions of one member on the
// last host through the first host's API, the time from the write to
// its answer, which comes once every host involved has realized it.
//
// Run as root: go test -run '^$' -bench . -benchtime 1x ./bench/multihost
// [-members 300] [-writes 30]. It measures; it does not assert.
// Everything it creates carries its labs' random prefixes and goes when
// it ends.
package multihost
