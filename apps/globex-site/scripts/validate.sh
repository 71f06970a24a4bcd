#!/bin/bash
set -euo pipefail
for _ in $(seq 1 30); do
    curl -fsS http://127.0.0.1/health >/dev/null && exit 0
    sleep 2
done
echo "globex-site did not answer /health within 60 s" >&2
exit 1
