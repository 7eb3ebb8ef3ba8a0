#!/usr/bin/env bash
# A Docker engine for the tests, on machines with no systemd.
#
#   scripts/dockerd.sh start   use the engine that answers, or start one
#   scripts/dockerd.sh stop    stop the engine that start started (only that one)
#   scripts/dockerd.sh env     print "export DOCKER_HOST=..." for the engine to use
#
# When an engine already answers (DOCKER_HOST, or the default socket), start
# does nothing. Otherwise it starts dockerd in a network namespace of its
# own (lvdockerd), with no iptables, masquerading, forwarding or bridge, so
# it changes nothing of the host's network, and with data, exec root and
# socket of its own. dockerd runs fully detached: stdin from /dev/null,
# output to $LOG, never the caller's stdout/stderr (CI waits on those).
# start and env print the DOCKER_HOST to use on stdout; messages go to
# stderr.
#
# stop ends dockerd by the PID in its pidfile (TERM, then KILL), then any
# process still running from its exec root (containerd, shims), and removes
# the lvdockerd namespace if start created it. Run as root.
set -euo pipefail

NETNS=lvdockerd
NAME=leviathan-test-docker
SOCK=/run/$NAME.sock
HOST=unix://$SOCK
PIDFILE=/run/$NAME.pid
EXECROOT=/run/$NAME
DATAROOT=/var/lib/$NAME
LOG=/tmp/$NAME.log
NSMARK=/run/$NAME.netns # present when start created $NETNS
DEFAULT_HOST=unix:///var/run/docker.sock

say() { echo "dockerd.sh: $*" >&2; }

docker_cli() {
	local c
	for c in /usr/bin/docker /usr/local/bin/docker; do
		if [ -x "$c" ]; then
			echo "$c"
			return
		fi
	done
	say "no docker client (install docker.io: make deps)"
	exit 1
}

# answers HOST: does an engine answer at HOST?
answers() {
	DOCKER_HOST=$1 timeout 10 "$(docker_cli)" info >/dev/null 2>&1
}

# running: the PID of the dockerd we started, if it still runs.
running() {
	local pid args
	[ -s "$PIDFILE" ] || return 1
	pid=$(<"$PIDFILE")
	args=$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null) || return 1
	# Only a dockerd with our exec root is ours (the PID may be reused).
	case $args in
	*dockerd*"--exec-root $EXECROOT "*) echo "$pid" ;;
	*) return 1 ;;
	esac
}

# current: the DOCKER_HOST of an engine that answers, if any.
current() {
	if [ -n "${DOCKER_HOST:-}" ] && answers "$DOCKER_HOST"; then
		echo "$DOCKER_HOST"
	elif answers "$DEFAULT_HOST"; then
		echo "$DEFAULT_HOST"
	elif answers "$HOST"; then
		echo "$HOST"
	else
		return 1
	fi
}

start() {
	local h pid i
	if h=$(current); then
		say "an engine answers at $h; using it"
		echo "DOCKER_HOST=$h"
		return
	fi
	if [ "$(id -u)" -ne 0 ]; then
		say "no engine answers, and starting one needs root"
		exit 1
	fi
	command -v dockerd >/dev/null || {
		say "no dockerd (install docker.io: make deps)"
		exit 1
	}
	if pid=$(running); then
		say "dockerd $pid runs but does not answer; stop it first: $0 stop"
		exit 1
	fi
	if [ ! -e "/run/netns/$NETNS" ]; then
		ip netns add "$NETNS"
		touch "$NSMARK"
		ip -n "$NETNS" link set lo up
	fi
	mkdir -p "$DATAROOT" "$EXECROOT"
	: >"$LOG"
	# dockerd keeps no descriptor of ours: stdio is /dev/null and the log,
	# and every other inherited descriptor is closed. A background job of
	# a non-interactive shell is no group leader, so setsid execs in place,
	# and nsenter execs dockerd: $! is dockerd itself.
	(
		for fd in /proc/self/fd/*; do
			fd=${fd##*/}
			((fd > 2)) && eval "exec $fd>&-" 2>/dev/null
		done
		exec setsid nsenter --net="/run/netns/$NETNS" \
			dockerd --iptables=false --ip-masq=false --ip-forward=false --bridge=none \
			--data-root "$DATAROOT" --exec-root "$EXECROOT" \
			-H "$HOST" --pidfile "$PIDFILE"
	) </dev/null >>"$LOG" 2>&1 &
	pid=$!
	disown "$pid" 2>/dev/null || true
	for ((i = 0; i < 60; i++)); do
		if answers "$HOST"; then
			say "dockerd $pid answers at $HOST (log $LOG)"
			echo "DOCKER_HOST=$HOST"
			return
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			break
		fi
		sleep 0.5
	done
	say "dockerd did not answer at $HOST within 30s; the end of $LOG:"
	tail -n 30 "$LOG" >&2
	stop
	exit 1
}

# leftovers: PIDs of processes running from our exec root (containerd and
# its shims), which only the dockerd started here can have started.
leftovers() {
	local p args
	for p in /proc/[0-9]*; do
		args=$({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
		case $args in
		*"$EXECROOT"/* | *"$EXECROOT "*) echo "${p#/proc/}" ;;
		esac
	done
}

waitgone() { # waitgone SECONDS PID...: wait until none of the PIDs runs
	local n=$(($1 * 10)) p alive
	shift
	while ((n-- > 0)); do
		alive=
		for p in "$@"; do
			kill -0 "$p" 2>/dev/null && alive=1
		done
		[ -z "$alive" ] && return 0
		sleep 0.1
	done
	return 1
}

stop() {
	local pid left
	if pid=$(running); then
		say "stopping dockerd $pid"
		kill -TERM "$pid" 2>/dev/null || true
		if ! waitgone 40 "$pid"; then
			say "dockerd $pid still runs after 40s; killing it"
			kill -KILL "$pid" 2>/dev/null || true
			waitgone 5 "$pid" || say "dockerd $pid survives KILL"
		fi
	fi
	left=$(leftovers | grep -vx "$$" || true)
	if [ -n "$left" ]; then
		say "ending what dockerd left running: $(echo $left)"
		kill -TERM $left 2>/dev/null || true
		# shellcheck disable=SC2086
		if ! waitgone 10 $left; then
			kill -KILL $left 2>/dev/null || true
		fi
	fi
	rm -f "$PIDFILE"
	if [ -e "$NSMARK" ]; then
		ip netns del "$NETNS" 2>/dev/null || true
		rm -f "$NSMARK"
	fi
}

env_() {
	local h
	if h=$(current); then
		echo "export DOCKER_HOST=$h"
	else
		say "no engine answers; start one: $0 start"
		exit 1
	fi
}

case "${1:-}" in
start) start ;;
stop) stop ;;
env) env_ ;;
*)
	echo "usage: $0 start|stop|env" >&2
	exit 2
	;;
esac
