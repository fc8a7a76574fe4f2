#!/usr/bin/env bash
# Start raydesk on this machine: creates .venv and ./data on first use, then runs
# `raydesk serve` (Ray, the embedded Valkey store, shards, router, gateway) until Ctrl-C.
# Arguments go to `raydesk serve`, e.g. ./scripts/run.sh --port 9000 --data-dir /srv/raydesk
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
ensure_venv ""
exec .venv/bin/raydesk serve "$@"
