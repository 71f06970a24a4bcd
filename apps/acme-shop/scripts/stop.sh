#!/bin/bash
# ApplicationStop runs from the previously installed revision; it must not fail on a fresh host.
set -euo pipefail
ROOT="${VENDING_SANDBOX:-}"
# The sandbox helpers (is_app, alive, stop_app), from the same revision as this script.
. "$(dirname "$0")/sandbox.sh"
if [ -n "$ROOT" ]; then
    stop_app
    rm -f "$ROOT/run/acme-shop.started"
    exit 0
fi
systemctl stop acme-shop.service 2>/dev/null || true
