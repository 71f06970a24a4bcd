#!/bin/bash
set -euo pipefail
ROOT="${VENDING_SANDBOX:-}"
mkdir -p "$ROOT/etc/systemd/system"
install -m 0644 "$ROOT/opt/acme-shop/systemd/acme-shop.service" "$ROOT/etc/systemd/system/acme-shop.service"
if [ -n "$ROOT" ]; then
    echo "sandbox: unit installed; no acme user or systemd to hand it to"
    exit 0
fi
chown -R acme:acme /opt/acme-shop
systemctl daemon-reload
