#!/bin/bash
set -euo pipefail
systemctl stop globex-site.service 2>/dev/null || true
