# Sourced by start.sh, stop.sh and validate.sh in a sandbox (the local CodeDeploy agent sets
# VENDING_SANDBOX, which they read into ROOT): how they know, check and stop this sandbox's app.
# On an instance systemd does this.

# Whether pid $1 is this sandbox's app: app.py run by a python3 (whose path varies: python3 may be
# a shim that runs another binary) that start.sh gave this sandbox's pid file. Not its folder:
# a new Install may have replaced that folder under a running app. A pid file can outlive its
# process, and its pid can be another process's by then.
is_app() {
    local command
    command=$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" || true)
    case "${command% }" in *python3*" app.py") ;; *) return 1 ;; esac
    local entry
    while IFS= read -r -d '' entry; do
        [ "$entry" != "PIDFILE=$ROOT/run/acme-shop.pid" ] || return 0
    done 2>/dev/null <"/proc/$1/environ"
    return 1
}

# Whether pid $1 runs (a zombie, which no one has reaped yet, does not).
alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat="${stat##*) }"
    [ "${stat%% *}" != Z ]
}

# Stops this sandbox's app if it runs: the pid its pid file names once it listens, else the one
# start.sh recorded (an app still starting). Removing the pid file stops it too; it is waited for
# so that its port is free for the next one.
stop_app() {
    local pid=""
    pid=$(cat "$ROOT/run/acme-shop.pid" 2>/dev/null || true)
    if [ -z "$pid" ] && [ -f "$ROOT/run/acme-shop.started" ]; then
        read -r _ pid <"$ROOT/run/acme-shop.started" || true
    fi
    rm -f "$ROOT/run/acme-shop.pid"
    if [ -z "$pid" ] || ! is_app "$pid"; then
        return 0
    fi
    kill "$pid" 2>/dev/null || true
    for signal in TERM KILL; do
        [ "$signal" = TERM ] || kill -9 "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            alive "$pid" || return 0
            sleep 0.1
        done
    done
    echo "acme-shop (pid $pid) did not stop" >&2
    return 1
}
