#!/bin/bash
set -euo pipefail
ROOT="${VENDING_SANDBOX:-}"
if [ -n "$ROOT" ]; then
    rm -f "$ROOT/run/globex-site.started"
    exit 0
fi
systemctl stop globex-site.service 2>/dev/null || true
