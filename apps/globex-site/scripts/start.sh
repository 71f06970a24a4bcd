#!/bin/bash
# ROOT is the instance's file system: empty on an instance, the sandbox folder when the local
# CodeDeploy agent (`cargo xtask appspec run`, `deploy --local`) runs this script.
set -euo pipefail
ROOT="${VENDING_SANDBOX:-}"
mkdir -p "$ROOT/etc/systemd/system"
install -m 0644 "$ROOT/opt/globex-site/systemd/globex-site.service" "$ROOT/etc/systemd/system/globex-site.service"
if [ -n "$ROOT" ]; then
    # No systemd in a sandbox: record the start for stop.sh and validate.sh.
    mkdir -p "$ROOT/run"
    echo "$DEPLOYMENT_ID" > "$ROOT/run/globex-site.started"
    echo "sandbox: globex-site marked started by $DEPLOYMENT_ID"
    exit 0
fi
systemctl daemon-reload
systemctl enable --now globex-site.service
