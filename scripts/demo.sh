#!/usr/bin/env bash
# The 30-second demo: start leviathan on the embedded default (the netns
# runtime: no Docker needed), import and make the README's example CENs,
# show what the kernel now holds, prove it carries traffic, then clean up
# everything it made. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

addr=${DEMO_ADDR:-127.0.0.1:8080}
url=http://$addr
fabric=lvdemo-fabric
prefix=lvdemo-
state=$(mktemp -d /tmp/leviathan-demo.XXXXXX)
bin=./bin/leviathan
pid=

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

cleanup() {
	set +e
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill "$pid"
		wait "$pid" 2>/dev/null
	fi
	for ns in $(ip netns list | awk '{print $1}' | grep "^$prefix"); do
		ip netns del "$ns"
	done
	rm -rf "$state"
}
trap cleanup EXIT

if curl -s -o /dev/null "$url/v2/version"; then
	echo "demo: something already answers on $addr; set DEMO_ADDR=127.0.0.1:PORT" >&2
	exit 1
fi

say "Start the daemon (state in $state, fabric namespace $fabric)"
"$bin" serve --listen "$addr" --socket "$state/api.sock" --state-dir "$state" --fabric-netns "$fabric" --netns-prefix "$prefix" 2>"$state/daemon.log" &
pid=$!
for _ in $(seq 100); do
	curl -s -o /dev/null "$url/v2/version" && break
	kill -0 "$pid" 2>/dev/null || { cat "$state/daemon.log"; exit 1; }
	sleep 0.05
done
run curl -s "$url/v2/version"; echo

say "Import the example CEN file (cen1..cen5, containers c1..c16)"
run curl -s -d @examples/cen.json "$url/cen/import"; echo

say "Make every CEN: namespaces, bridges and veth pairs through netlink"
start=$(date +%s%N)
run curl -s -d '["cen1","cen2","cen3","cen4","cen5"]' "$url/cen/make"; echo
echo "(took $(( ($(date +%s%N) - start) / 1000000 )) ms)"

say "What the API says"
for c in cen1 cen4; do run curl -s "$url/cen/$c"; echo; done
run curl -s "$url/host/host1/c2"; echo

say "What the kernel holds"
echo "-- fabric namespace $fabric: a bridge per CEN of 3+ members, one port per member"
run ip -n "$fabric" -br link
echo "-- container c2: one interface per CEN it is in (cen1, a bridge; cen5, a wire to c3)"
run ip -n "${prefix}c2" -br link
echo "-- host namespace: nothing of leviathan's"
ip -br link | grep -E 'lv~|cen[0-9]' || echo "(none)"

say "Lay IP over it: cin1 over cen1, cin2 over cen2 (the example CIN file)"
run curl -s -d @examples/cin.json "$url/cin/import"; echo
run curl -s -d '["cin1","cin2"]' "$url/cin/make"; echo
run curl -s "$url/cin/cin1"; echo
run ip -n "${prefix}c2" -4 -br addr
run ip -n "${prefix}c2" route

say "It carries traffic: c1 reaches c14 in cin1, and nothing of cin2 (c4 is 10.11.0.10)"
run ip netns exec "${prefix}c1" ping -c 2 -W 1 10.10.0.13
if ip netns exec "${prefix}c1" ping -c 1 -W 1 10.11.0.10 >/dev/null 2>&1; then
	echo "c1 reached cin2: isolation broken" >&2
	exit 1
fi
echo "c1 -> 10.11.0.10 (cin2): unreachable, as it should be"
run curl -s -d '["cin1","cin2"]' "$url/cin/destroy"; echo

say "Destroy every CEN: all their links in one kernel request"
run curl -s -d '["cen1","cen2","cen3","cen4","cen5"]' "$url/cen/destroy"; echo
run ip -n "$fabric" -br link

say "Clean up: remove the containers (and the namespaces leviathan made), stop"
for c in $(grep -o '"c[0-9]*"' examples/cen.json | tr -d '"' | sort -u); do
	curl -s -f -X DELETE "$url/host/host1/$c"
done
echo "namespaces left: $(ip netns list | awk '{print $1}' | grep "^$prefix" | tr '\n' ' ')(the fabric, removed on exit)"
echo "demo done"
