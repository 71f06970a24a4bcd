#!/bin/bash
# ROOT is the instance's file system: empty on an instance, the sandbox folder when the local
# CodeDeploy agent (`cargo xtask appspec run`, `deploy --local`) runs this script.
set -euo pipefail
ROOT="${VENDING_SANDBOX:-}"
mkdir -p "$ROOT/etc/systemd/system"
install -m 0644 "$ROOT/opt/globex-site/systemd/globex-site.service" "$ROOT/etc/systemd/system/globex-site.service"
# The sandbox helpers (is_app, alive, stop_app), from the same revision as this script.
. "$(dirname "$0")/sandbox.sh"
if [ -n "$ROOT" ]; then
    # No systemd in a sandbox: run the app as the unit would (its environment file, its folder),
    # on the loopback port the local agent gave this instance, in the background with its output
    # in a log so that this hook's output closes. It stops when its pid file goes (stop.sh, or
    # the sandbox removed).
    mkdir -p "$ROOT/run" "$ROOT/var/log"
    # An app that a failed stop left running goes first (its port is this one's).
    stop_app
    (
        # The environment file as systemd reads it: KEY=VALUE lines, values as data.
        if [ -f "$ROOT/opt/globex-site/site.env" ]; then
            while IFS= read -r line || [ -n "$line" ]; do
                line="${line#"${line%%[![:space:]]*}"}"
                case "$line" in '' | '#'* | ';'*) continue ;; esac
                key="${line%%=*}"
                value="${line#*=}"
                case "$value" in \"*\") value="${value#\"}" value="${value%\"}" ;; esac
                export "$key=$value"
            done <"$ROOT/opt/globex-site/site.env"
        fi
        cd "$ROOT/opt/globex-site"
        export PORT="$VENDING_LOCAL_PORT" BIND=127.0.0.1 PIDFILE="$ROOT/run/globex-site.pid"
        # It writes its pid file itself once its port is bound (ValidateService waits for that).
        nohup python3 server.py >>"$ROOT/var/log/globex-site.log" 2>&1 </dev/null &
        echo "$DEPLOYMENT_ID $!" >"$ROOT/run/globex-site.started"
        echo "sandbox: globex-site starting on 127.0.0.1:$VENDING_LOCAL_PORT (pid $!)"
    )
    exit 0
fi
systemctl daemon-reload
systemctl enable --now globex-site.service
