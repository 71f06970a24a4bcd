#!/bin/bash
# ApplicationStop runs from the previously installed revision; it must not fail on a fresh host.
set -euo pipefail
ROOT="${VENDING_SANDBOX:-}"
if [ -n "$ROOT" ]; then
    rm -f "$ROOT/run/acme-shop.started"
    exit 0
fi
systemctl stop acme-shop.service 2>/dev/null || true
