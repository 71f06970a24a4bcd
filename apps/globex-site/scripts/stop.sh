#!/bin/bash
set -euo pipefail
ROOT="${VENDING_SANDBOX:-}"
# Whether pid $1 is this sandbox's app: server.py run by a python3 (whose path varies: python3
# may be a shim that runs another binary) in the app's folder. A pid file can outlive its process.
is_app() {
    local command
    command=$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" || true)
    case "${command% }" in *python3*" server.py") ;; *) return 1 ;; esac
    [ "$(readlink "/proc/$1/cwd" 2>/dev/null || true)" = "$ROOT/opt/globex-site" ]
}
if [ -n "$ROOT" ]; then
    # The app started by start.sh: removing its pid file stops it too; wait until it is gone so
    # that its port is free for the next one.
    if [ -f "$ROOT/run/globex-site.pid" ]; then
        pid=$(cat "$ROOT/run/globex-site.pid")
        rm -f "$ROOT/run/globex-site.pid"
        # Only while the pid is still this app's (a pid file can outlive its process).
        if is_app "$pid"; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$ROOT/run/globex-site.started"
    exit 0
fi
systemctl stop globex-site.service 2>/dev/null || true
