#!/usr/bin/env bash
# Run every check raydesk has: lint (ruff), types (mypy), unit tests, then integration
# tests against a real local Ray, a real Valkey and real WebSockets on loopback.
# Creates .venv on first use. Extra arguments go to pytest, e.g. ./scripts/test.sh -k sync
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
ensure_venv test
ensure_chromium
ensure_prometheus
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
