#!/bin/bash
set -euo pipefail
ROOT="${VENDING_SANDBOX:-}"
if [ -n "$ROOT" ]; then
    # No systemd in a sandbox: record the start for stop.sh and validate.sh.
    mkdir -p "$ROOT/run"
    echo "$DEPLOYMENT_ID" > "$ROOT/run/acme-shop.started"
    echo "sandbox: acme-shop marked started by $DEPLOYMENT_ID"
    exit 0
fi
systemctl enable --now acme-shop.service
