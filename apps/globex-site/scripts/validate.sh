#!/bin/bash
set -euo pipefail
ROOT="${VENDING_SANDBOX:-}"
if [ -n "$ROOT" ]; then
    # Locally the app listens on the loopback port the local agent gave this instance.
    test -f "$ROOT/run/globex-site.started" || { echo "globex-site was not started" >&2; exit 1; }
    url="http://127.0.0.1:$VENDING_LOCAL_PORT/health"
    for _ in $(seq 1 50); do
        # The app this deployment started is alive, and its port answers.
        pid=$(cat "$ROOT/run/globex-site.pid" 2>/dev/null || true)
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
            python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$url" 2>/dev/null; then
            echo "sandbox: $url answers 200"
            exit 0
        fi
        sleep 0.1
    done
    echo "globex-site did not answer $url within 5 s; its log:" >&2
    tail -n 5 "$ROOT/var/log/globex-site.log" >&2 || true
    exit 1
fi
for _ in $(seq 1 30); do
    curl -fsS http://127.0.0.1/health >/dev/null && exit 0
    sleep 2
done
echo "globex-site did not answer /health within 60 s" >&2
exit 1
