#!/bin/bash
# ValidateService: the instance counts as deployed only when the app answers its health check.
set -euo pipefail
ROOT="${VENDING_SANDBOX:-}"
if [ -n "$ROOT" ]; then
    # In a sandbox nothing listens: ask the installed app's own router for /health.
    test -f "$ROOT/run/acme-shop.started" || { echo "acme-shop was not started" >&2; exit 1; }
    cd "$ROOT/opt/acme-shop"
    status=$(python3 -c 'import app; print(app.route("/health")[0])')
    [ "$status" = 200 ] || { echo "acme-shop answers /health with $status" >&2; exit 1; }
    echo "sandbox: /health answers 200"
    exit 0
fi
for _ in $(seq 1 30); do
    if curl -fsS http://127.0.0.1/health >/dev/null; then
        exit 0
    fi
    sleep 2
done
echo "acme-shop did not answer /health within 60 s" >&2
exit 1
