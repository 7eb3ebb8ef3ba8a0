#!/usr/bin/env bash
# with-dockerd.sh CMD...: runs CMD with a Docker engine answering at
# DOCKER_HOST, and exits with CMD's status.
#
# When no engine answers, it starts one (scripts/dockerd.sh start) and stops
# it when CMD ends, whatever the outcome. Runs may overlap and share the
# engine: each holds a shared lock on $USE while CMD runs, and the run that
# started the engine stops it only once it holds that lock alone. $START
# makes checking (or starting) and stopping exclusive, so no run finds an
# engine that is about to stop.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
START=/run/leviathan-test-docker.start.lock
USE=/run/leviathan-test-docker.use.lock

if (($# == 0)); then
	echo "usage: $0 CMD..." >&2
	exit 2
fi

exec 8>"$START" 9>"$USE"
flock -x 8
flock -s 9
started=
if env=$("$here/dockerd.sh" env 2>/dev/null 8>&- 9>&-); then
	eval "$env"
else
	out=$("$here/dockerd.sh" start 8>&- 9>&-) || exit 1
	export DOCKER_HOST="${out#DOCKER_HOST=}"
	started=1
fi
flock -u 8

finish() {
	if [ -n "$started" ]; then
		# No run may join now; wait for those that use the engine.
		flock -x 8
		flock -x 9
		"$here/dockerd.sh" stop 8>&- 9>&-
	fi
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "with-dockerd.sh: DOCKER_HOST=$DOCKER_HOST" >&2
"$@" 8>&- 9>&-
status=$?
exit "$status"
