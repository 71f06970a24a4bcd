#!/bin/bash
set -euo pipefail
ROOT="${VENDING_SANDBOX:-}"
# The sandbox helpers (is_app, alive, stop_app), from the same revision as this script.
. "$(dirname "$0")/sandbox.sh"
if [ -n "$ROOT" ]; then
    # Locally the app listens on the loopback port the local agent gave this instance.
    # start.sh's record: the deployment and the pid of the app it started.
    read -r _ started <"$ROOT/run/globex-site.started" 2>/dev/null || { echo "globex-site was not started" >&2; exit 1; }
    url="http://127.0.0.1:$VENDING_LOCAL_PORT/health"
    # Within 30 s (a loaded machine starts Python slowly), the app this deployment started (and
    # no other) has bound its port (it writes its pid file then), is alive, and answers.
    deadline=$((SECONDS + 30))
    while [ "$SECONDS" -lt "$deadline" ]; do
        pid=$(cat "$ROOT/run/globex-site.pid" 2>/dev/null || true)
        if [ "$pid" = "$started" ] && alive "$pid" &&
            python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$url" 2>/dev/null; then
            echo "sandbox: $url answers 200"
            exit 0
        fi
        if ! alive "$started"; then
            echo "globex-site (pid $started) exited; its log:" >&2
            tail -n 5 "$ROOT/var/log/globex-site.log" >&2 || true
            exit 1
        fi
        sleep 0.1
    done
    echo "globex-site did not answer $url within 30 s; its log:" >&2
    tail -n 5 "$ROOT/var/log/globex-site.log" >&2 || true
    exit 1
fi
for _ in $(seq 1 30); do
    curl -fsS http://127.0.0.1/health >/dev/null && exit 0
    sleep 2
done
echo "globex-site did not answer /health within 60 s" >&2
exit 1
