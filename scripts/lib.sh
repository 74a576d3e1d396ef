# shellcheck shell=bash
# What scripts/test and scripts/demo share. Sourced (never run) by them, after `set -euo
# pipefail`:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# It sets ROOT (the repository, also the current directory from then on) and PROG
# ("scripts/<name>", the prefix of every message on stderr), and provides:
#
#   log / warn / die / now / elapsed       messages and timings
#   stdin_or_devnull                       give commands /dev/null when stdin is closed
#   make_tmp PREFIX                        TMP: a temp dir, removed by cleanup
#   install_traps                          cleanup on EXIT, on_signal on INT and TERM
#   on_cleanup FUNCTION                    also run FUNCTION at cleanup (a script's service)
#   setup_venv                             .venv with pip install -e ".[test]"; sets PY
#   ensure_package CMD PACKAGE             apt-get install PACKAGE if CMD is missing
#   ensure_redis_server                    the same for redis-server
#   ensure_prometheus                      the same for prometheus (and promtool)
#   free_ports                             two free TCP ports on 127.0.0.1
#   start_redis / stop_redis               a throwaway redis-server: REDIS_PID, REDIS_PORT
#   start_postgres / stop_postgres         a throwaway PostgreSQL as a non-root OS user:
#                                          PG_PORT, PG_DATA, PG_OS_USER (cleanup stops it)
#   start_child / wait_child / reap_child  the foreground command, in a session of its own
#   start_watchdog / stop_watchdog         a wall-clock limit for that command
#   group_alive / kill_group               the processes left in a process group
#
# Cleanup (on every exit, Ctrl-C or SIGTERM) stops the watchdog and the child, runs the
# functions given to on_cleanup (the script's own services), restores policy-rc.d, stops
# redis-server and removes TMP. It prints nothing on stdout.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PROG="scripts/$(basename "$0")"
cd "$ROOT" || exit 1

VENV="$ROOT/.venv"
STAMP="$VENV/.rest_hooks-install-stamp"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

TMP=""
PY=""
REDIS_PID=""
REDIS_PORT=""
PG_PORT=""
PG_DATA=""
PG_OS_USER=""
POLICY_RC=/usr/sbin/policy-rc.d
POLICY_RC_STATE="" # "" | created | replaced
SUDO=()            # (sudo -n) when installing redis-server as a non-root user
CHILD=""           # the running foreground command: leader of its own session / group
CHILD_RC=0         # its exit status, once wait_child returned
CHILD_SIGNAL=INT   # what on_signal hands on to it
WATCHDOG=""        # the timer of start_watchdog: leader of its own group
INTERRUPTED=""     # INT or TERM once we got one
CLEANED=""
CLEANUP_HOOKS=() # on_cleanup's functions: cleanup runs them after the child, before redis

# ---------------------------------------------------------------------------------------
# Messages and timings
# ---------------------------------------------------------------------------------------
log() { printf '==> %s\n' "$*"; }
warn() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}
now() { date +%s.%N; }
elapsed() { python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.1f}")' "$1" "$2"; }

stdin_or_devnull() {
    # No standard input at all (CI may close it): give every command /dev/null instead.
    { : <&0; } 2>/dev/null || exec </dev/null
}

make_tmp() {
    # Traversable by other OS users, e.g. PostgreSQL's (mktemp makes it 0700).
    TMP="$(mktemp -d "/tmp/$1.XXXXXX")"
    chmod 755 "$TMP"
}

# ---------------------------------------------------------------------------------------
# Cleanup and signals
# ---------------------------------------------------------------------------------------
restore_policy_rc() {
    case "$POLICY_RC_STATE" in
    created) "${SUDO[@]}" rm -f "$POLICY_RC" ;;
    replaced) "${SUDO[@]}" mv -f "$TMP/policy-rc.d.orig" "$POLICY_RC" ;;
    esac
    POLICY_RC_STATE=""
}

group_alive() {
    # How many live (non-zombie) processes process group $1 has.
    ps -e -o pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { n++ } END { print n + 0 }'
}

kill_group() {
    # Stop every process left in process group $1: SIGTERM, then SIGKILL after 2 s.
    # Zombies (orphans waiting for init to reap them) do not count.
    local pgid="$1"
    kill -TERM -- "-$pgid" 2>/dev/null || return 0
    for _ in $(seq 40); do
        [[ "$(group_alive "$pgid")" -gt 0 ]] || return 0
        sleep 0.05
    done
    kill -KILL -- "-$pgid" 2>/dev/null || true
}

stop_watchdog() {
    [[ -n "$WATCHDOG" ]] || return 0
    kill -KILL -- "-$WATCHDOG" 2>/dev/null || true
    wait "$WATCHDOG" 2>/dev/null || true
    WATCHDOG=""
}

cleanup() {
    [[ -z "$CLEANED" ]] || return 0
    CLEANED=1
    set +e
    stop_watchdog
    if [[ -n "$CHILD" ]]; then
        kill -KILL -- "-$CHILD" 2>/dev/null
        wait "$CHILD" 2>/dev/null
        CHILD=""
    fi
    local hook
    for hook in "${CLEANUP_HOOKS[@]}"; do
        "$hook"
    done
    restore_policy_rc
    stop_postgres
    stop_redis
    [[ -z "$TMP" ]] || rm -rf "$TMP"
}

signal_status() { if [[ "$1" == INT ]]; then echo 130; else echo 143; fi; }

# shellcheck disable=SC2317,SC2329 # invoked by the traps of install_traps
on_signal() {
    # While the child runs, hand the signal on to it ($CHILD_SIGNAL, so that it can clean
    # up) and let wait_child return once it has finished; otherwise exit now. While
    # cleanup runs (bounded), let it finish: exiting would leave the rest running.
    if [[ -n "$CLEANED" ]]; then
        warn "SIG$1 received while cleaning up: finishing that first"
        return
    fi
    INTERRUPTED="$1"
    warn "SIG$1 received, stopping"
    if [[ -n "$CHILD" ]]; then
        kill "-$CHILD_SIGNAL" -- "-$CHILD" 2>/dev/null || true
    else
        exit "$(signal_status "$1")"
    fi
}

on_cleanup() { CLEANUP_HOOKS+=("$@"); }

install_traps() {
    trap cleanup EXIT
    trap 'on_signal INT' INT
    trap 'on_signal TERM' TERM
}

# ---------------------------------------------------------------------------------------
# The foreground command (pytest, the demo): a session of its own, so that a Ctrl-C
# reaches it once (through on_signal) and so that any process it leaves behind can be
# found and stopped. As a background job it starts with SIGINT ignored: a Python command
# that should get CHILD_SIGNAL=INT has to restore its handler itself.
# ---------------------------------------------------------------------------------------
start_child() {
    setsid -w "$@" <&0 &
    CHILD=$!
}

wait_child() {
    # Wait for CHILD; its exit status ends in CHILD_RC.
    CHILD_RC=0
    while :; do
        # shellcheck disable=SC2034 # read by the scripts
        if wait "$CHILD"; then CHILD_RC=0; else CHILD_RC=$?; fi
        # wait also returns when a trapped signal arrives: go on waiting for the child.
        if [[ -n "$INTERRUPTED" ]] && kill -0 "$CHILD" 2>/dev/null; then continue; fi
        break
    done
}

reap_child() {
    # After wait_child: stop what the child ($1: its description) left in its group, and
    # exit if we were interrupted meanwhile.
    local leftovers
    leftovers="$(group_alive "$CHILD")"
    if [[ "$leftovers" -gt 0 ]]; then
        warn "stopping $leftovers process(es) $1 left behind"
        kill_group "$CHILD"
    fi
    CHILD=""
    [[ -z "$INTERRUPTED" ]] || exit "$(signal_status "$INTERRUPTED")"
}

start_watchdog() {
    # start_watchdog SECONDS MARKER NAME: SECONDS after now, create MARKER and interrupt
    # CHILD (SIGINT), then kill it 30 s later if still there. 0 SECONDS: no limit.
    [[ "$1" != 0 ]] || return 0
    # shellcheck disable=SC2016 # expanded by the inner bash
    setsid bash -c 'sleep "$1" && : >"$3" &&
        echo "$4: $5 still running after $1 s: interrupting it" >&2 &&
        kill -INT -- "-$2" && sleep 30 && kill -KILL -- "-$2"' \
        _ "$1" "$CHILD" "$2" "$PROG" "$3" </dev/null &
    WATCHDOG=$!
}

# ---------------------------------------------------------------------------------------
# The virtualenv: pip install -e ".[test]", redone only when pyproject.toml (or python3)
# changes. scripts/test and scripts/demo share it and its stamp.
# ---------------------------------------------------------------------------------------
setup_venv() {
    local want_stamp
    want_stamp="$(sha256sum pyproject.toml | cut -d' ' -f1) $(python3 -c 'import sys; print(sys.version.split()[0])') $ROOT"
    if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c '' 2>/dev/null &&
        [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want_stamp" ]]; then
        log "reusing .venv (pyproject.toml unchanged)"
    else
        if ! { [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c '' 2>/dev/null &&
            [[ "$("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0])')" == \
            "$(python3 -c 'import sys; print(sys.version.split()[0])')" ]]; }; then
            log "creating .venv"
            python3 -m venv --clear "$VENV"
        fi
        log "installing the package: pip install -e \".[test]\""
        rm -f "$STAMP"
        if ! "$VENV/bin/python" -m pip install -q -e ".[test]" </dev/null >"$TMP/pip.log" 2>&1; then
            cat "$TMP/pip.log" >&2
            die "pip install -e \".[test]\" failed"
        fi
        printf '%s\n' "$want_stamp" >"$STAMP"
    fi
    PY="$VENV/bin/python"
}

# ---------------------------------------------------------------------------------------
# System packages: installed with apt if their command is missing (as root, or sudo -n)
# ---------------------------------------------------------------------------------------
ensure_package() {
    # ensure_package COMMAND PACKAGE: apt-get install PACKAGE unless COMMAND is on PATH
    # (or in /usr/sbin, where Debian puts daemons that a non-root PATH may lack).
    local cmd="$1" package="$2"
    command -v "$cmd" >/dev/null 2>&1 && return 0
    [[ ! -x "/usr/sbin/$cmd" ]] || return 0
    log "$cmd not found: installing $package with apt-get"
    if [[ "$(id -u)" -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "$cmd is missing and we are not root (no sudo either)"
        SUDO=(sudo -n)
    fi
    # Keep the package from starting a system-wide service while it installs.
    if [[ -e "$POLICY_RC" ]]; then
        "${SUDO[@]}" cp -p "$POLICY_RC" "$TMP/policy-rc.d.orig"
        POLICY_RC_STATE=replaced
    else
        POLICY_RC_STATE=created
    fi
    printf '#!/bin/sh\n# written by rest_hooks %s while it installs %s\nexit 101\n' "$PROG" "$package" |
        "${SUDO[@]}" tee "$POLICY_RC" >/dev/null
    "${SUDO[@]}" chmod 755 "$POLICY_RC"
    local apt_rc=0 attempt
    for attempt in 1 2 3; do
        apt_rc=0
        {
            "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
                "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
                    --no-install-recommends -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300 \
                    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
                    "$package"
        } </dev/null >>"$TMP/apt.log" 2>&1 || apt_rc=$?
        [[ $apt_rc -ne 0 ]] || break
        warn "apt-get failed (exit $apt_rc, attempt $attempt)"
        [[ $attempt -eq 3 ]] || sleep 5
    done
    restore_policy_rc
    if [[ $apt_rc -ne 0 ]]; then
        tail -n 40 "$TMP/apt.log" >&2
        die "apt-get install $package failed (exit $apt_rc)"
    fi
    hash -r
    command -v "$cmd" >/dev/null 2>&1 || [[ -x "/usr/sbin/$cmd" ]] ||
        die "$cmd still not found after apt-get install $package"
}

ensure_redis_server() { ensure_package redis-server redis-server; }

# The Prometheus server and promtool, for the metrics tests (deploy/prometheus/).
ensure_prometheus() {
    ensure_package prometheus prometheus
    ensure_package promtool prometheus
}

free_ports() {
    # Two free loopback ports (bound at the same time, so they differ).
    python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()'
}

redis_ping() {
    # Wait up to 5 s for the redis-server on port $1 to answer.
    if command -v redis-cli >/dev/null 2>&1; then
        for _ in $(seq 100); do
            [[ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" == PONG ]] && return 0
            sleep 0.05
        done
        return 1
    fi
    "$PY" - "$1" <<'EOF'
import sys, time
import redis
r = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]), socket_timeout=1)
deadline = time.monotonic() + 5
while True:
    try:
        if r.ping():
            sys.exit(0)
    except redis.exceptions.ConnectionError:
        pass
    if time.monotonic() > deadline:
        sys.exit(1)
    time.sleep(0.05)
EOF
}

start_redis() {
    # A throwaway redis-server on a free loopback port (no persistence), data in
    # $TMP/redis: sets REDIS_PID and REDIS_PORT. Needs PY (setup_venv) and TMP.
    local redis_dir="$TMP/redis" port attempt
    mkdir -p "$redis_dir"
    REDIS_PORT=""
    for attempt in 1 2 3; do
        read -r port _ < <(free_ports)
        # Its own session: a Ctrl-C in the terminal must not stop it before the teardown.
        setsid redis-server --bind 127.0.0.1 --port "$port" --dir "$redis_dir" \
            --save "" --appendonly no --daemonize no \
            --logfile "$redis_dir/redis.log" </dev/null >/dev/null 2>&1 &
        REDIS_PID=$!
        if redis_ping "$port"; then
            REDIS_PORT="$port"
            break
        fi
        stop_redis
        warn "redis-server did not answer on port $port (attempt $attempt)"
    done
    if [[ -z "$REDIS_PORT" ]]; then
        tail -n 20 "$redis_dir/redis.log" >&2 || true
        die "could not start redis-server"
    fi
}

stop_redis() {
    # redis-server is our own background child: kill it and reap it with wait (a
    # daemonized one would linger as a zombie until init reaps it).
    [[ -n "$REDIS_PID" ]] || return 0
    local pid="$REDIS_PID"
    REDIS_PID=""
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------
# PostgreSQL (initdb/pg_ctl on PATH), as a non-root OS user: postgres if it exists, else a
# system user of our own; the current user when not root.
# ---------------------------------------------------------------------------------------
as_pg_user() {
    # Run a command as the PostgreSQL OS user, from a directory that user can enter.
    if [[ "$(id -u)" -ne 0 ]]; then
        (cd "$TMP" && "$@")
    elif command -v runuser >/dev/null 2>&1; then
        (cd "$TMP" && runuser -u "$PG_OS_USER" -- "$@")
    else
        (cd "$TMP" && su -s /bin/sh "$PG_OS_USER" -c "$(printf '%q ' "$@")")
    fi
}

start_postgres() {
    # A throwaway PostgreSQL on a free loopback port, data in $TMP/pg, no durability
    # (fsync off): sets PG_PORT, PG_DATA and PG_OS_USER; superuser "postgres", trust auth.
    # Arguments: more server options, e.g. -c shared_preload_libraries=pg_stat_statements.
    command -v initdb >/dev/null 2>&1 || die "initdb (PostgreSQL server) not on PATH"
    command -v pg_ctl >/dev/null 2>&1 || die "pg_ctl (PostgreSQL server) not on PATH"
    if [[ "$(id -u)" -eq 0 ]]; then
        if id -u postgres >/dev/null 2>&1; then
            PG_OS_USER=postgres
        else
            PG_OS_USER=rest_hooks_pg
            if ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
                useradd --system --user-group --no-create-home --home-dir /nonexistent \
                    --shell /usr/sbin/nologin "$PG_OS_USER"
            fi
        fi
    else
        PG_OS_USER="$(id -un)"
    fi
    local pg_dir="$TMP/pg" attempt port
    mkdir -p "$pg_dir"
    chown "$PG_OS_USER": "$pg_dir" 2>/dev/null || true
    chmod 700 "$pg_dir"
    as_pg_user initdb -D "$pg_dir/data" -A trust -U postgres -E UTF8 --locale=C --no-sync \
        >"$TMP/initdb.log" 2>&1 || {
        cat "$TMP/initdb.log" >&2
        die "initdb failed"
    }
    PG_PORT=""
    for attempt in 1 2 3; do
        read -r port _ < <(free_ports)
        PG_DATA="$pg_dir/data"
        if as_pg_user pg_ctl -D "$PG_DATA" -l "$pg_dir/postgres.log" -w -t 60 \
            -o "-k $pg_dir -h 127.0.0.1 -p $port -F -c fsync=off -c synchronous_commit=off -c full_page_writes=off $*" \
            start >/dev/null 2>&1; then
            PG_PORT="$port"
            break
        fi
        stop_postgres
        warn "PostgreSQL did not start on port $port (attempt $attempt)"
    done
    if [[ -z "$PG_PORT" ]]; then
        tail -n 20 "$pg_dir/postgres.log" >&2 || true
        die "could not start PostgreSQL"
    fi
}

stop_postgres() {
    [[ -n "$PG_DATA" && -f "$PG_DATA/postmaster.pid" ]] || return 0
    as_pg_user pg_ctl -D "$PG_DATA" -m fast -w -t 30 stop >/dev/null 2>&1 ||
        as_pg_user pg_ctl -D "$PG_DATA" -m immediate -w -t 10 stop >/dev/null 2>&1 || true
    PG_DATA=""
}
