#!/bin/bash
# ROOT is the instance's file system: empty on an instance, the sandbox folder when the local
# CodeDeploy agent (`cargo xtask appspec run`, `deploy --local`) runs this script.
set -euo pipefail
ROOT="${VENDING_SANDBOX:-}"
mkdir -p "$ROOT/opt/acme-shop"
