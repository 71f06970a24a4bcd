#!/bin/bash
set -euo pipefail
install -m 0644 /opt/acme-shop/systemd/acme-shop.service /etc/systemd/system/acme-shop.service
chown -R acme:acme /opt/acme-shop
systemctl daemon-reload
