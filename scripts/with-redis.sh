#!/usr/bin/env bash
# Run a command with a Redis answering at $REDIS_URL: the one already there, or one started for
# the command (scripts/ensure-redis.sh) and stopped when the command ends, however it ends, so
# `make demo` leaves nothing running that it started. The command's exit status is kept.
set -uo pipefail
mkdir -p .run
mark="$(mktemp "$PWD/.run/redis-started.XXXXXX")"
stop_started() {
  local pidfile pid
  pidfile="$(cat "$mark" 2>/dev/null || true)"
  rm -f "$mark"
  [ -n "$pidfile" ] && [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  echo "stopped the redis-server started for this run (pid $pid)" >&2
}
trap stop_started EXIT
trap 'exit 130' INT TERM
REDIS_STARTED_MARK="$mark" "$(dirname "$0")/ensure-redis.sh" || exit $?
"$@"
