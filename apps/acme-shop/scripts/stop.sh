#!/bin/bash
# ApplicationStop runs from the previously installed revision; it must not fail on a fresh host.
set -euo pipefail
systemctl stop acme-shop.service 2>/dev/null || true
