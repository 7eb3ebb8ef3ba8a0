#!/usr/bin/env bash
# with-dockerd.sh CMD...: runs CMD with a Docker engine answering at
# DOCKER_HOST, and exits with CMD's status.
#
# When no engine answers, it starts one (scripts/dockerd.sh start) and stops
# it when CMD ends, whatever the outcome. Several runs may overlap: each
# holds a shared lock on $LOCK while CMD runs, and the run that started the
# engine stops it only once it holds the lock alone, so no run loses its
# engine in the middle.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
LOCK=/run/leviathan-test-docker.lock

if (($# == 0)); then
	echo "usage: $0 CMD..." >&2
	exit 2
fi

exec 9>"$LOCK"
flock -x 9
started=
if env=$("$here/dockerd.sh" env 2>/dev/null 9>&-); then
	eval "$env"
else
	out=$("$here/dockerd.sh" start 9>&-) || exit 1
	export DOCKER_HOST="${out#DOCKER_HOST=}"
	started=1
fi

finish() {
	if [ -n "$started" ]; then
		# Wait for the other runs that use this engine, then stop it.
		flock -x 9
		"$here/dockerd.sh" stop 9>&-
	fi
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

flock -s 9
echo "with-dockerd.sh: DOCKER_HOST=$DOCKER_HOST" >&2
"$@" 9>&-
status=$?
exit "$status"
