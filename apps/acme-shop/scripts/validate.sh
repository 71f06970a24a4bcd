#!/bin/bash
# ValidateService: the instance counts as deployed only when the app answers its health check.
set -euo pipefail
for _ in $(seq 1 30); do
    if curl -fsS http://127.0.0.1/health >/dev/null; then
        exit 0
    fi
    sleep 2
done
echo "acme-shop did not answer /health within 60 s" >&2
exit 1
