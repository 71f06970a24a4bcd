#!/bin/bash
set -euo pipefail
ROOT="${VENDING_SANDBOX:-}"
if [ -n "$ROOT" ]; then
    # In a sandbox nothing listens: check the start and that the site's index was installed.
    test -f "$ROOT/run/globex-site.started" || { echo "globex-site was not started" >&2; exit 1; }
    test -s "$ROOT/opt/globex-site/site/index.html" || { echo "site/index.html is missing" >&2; exit 1; }
    echo "sandbox: globex-site started with its index"
    exit 0
fi
for _ in $(seq 1 30); do
    curl -fsS http://127.0.0.1/health >/dev/null && exit 0
    sleep 2
done
echo "globex-site did not answer /health within 60 s" >&2
exit 1
