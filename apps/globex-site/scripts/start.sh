#!/bin/bash
set -euo pipefail
install -m 0644 /opt/globex-site/systemd/globex-site.service /etc/systemd/system/globex-site.service
systemctl daemon-reload
systemctl enable --now globex-site.service
