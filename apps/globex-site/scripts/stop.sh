#!/bin/bash
set -euo pipefail
ROOT="${VENDING_SANDBOX:-}"
# The sandbox helpers (is_app, alive, stop_app), from the same revision as this script.
. "$(dirname "$0")/sandbox.sh"
if [ -n "$ROOT" ]; then
    stop_app
    rm -f "$ROOT/run/globex-site.started"
    exit 0
fi
systemctl stop globex-site.service 2>/dev/null || true
