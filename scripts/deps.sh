#!/usr/bin/env bash
# Installs what running leviathan needs on a Debian machine, and with
# "test" what its tests and benchmarks need too, idempotently: it only
# calls apt-get for packages not yet there.
#
#   scripts/deps.sh        # run: iproute2, ping, nsenter, curl, vpcs
#   scripts/deps.sh test   # and the tests' real peers
set -euo pipefail

# vpcs: the emulated VMs.
pkgs=(iproute2 iputils-ping util-linux curl vpcs)
if [ "${1:-}" = test ]; then
	# docker.io and busybox-static: the Docker tests' engine and their
	# image; tcpdump, graphviz and chromium: the lab tools' tests read
	# captures, render ?format=dot and open /ui in a headless browser;
	# socat: the relay's benchmark baseline; etcd-server: the etcd store's
	# tests run a real etcd.
	pkgs+=(docker.io busybox-static tcpdump graphviz chromium socat etcd-server)
fi
need=()
for p in "${pkgs[@]}"; do
	dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if ((${#need[@]})); then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing ${need[*]}; run as root to install them" >&2
		exit 1
	fi
	echo "deps: installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v go >/dev/null 2>&1; then
	if [ -x /usr/local/go/bin/go ]; then
		echo "deps: go is at /usr/local/go/bin; add it to PATH" >&2
	else
		echo "deps: no Go toolchain found (want go 1.24 or newer)" >&2
	fi
	exit 1
fi
