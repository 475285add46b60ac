#!/usr/bin/env bash
# shellcheck shell=bash
#
# scripts/lib/services.sh — helpers shared by scripts/run and scripts/test.
#
# Installs the Debian packages TMS needs and starts/stops a private Postgres
# cluster and a private Redis instance, both bound to 127.0.0.1 only.
#
# Source it:   source scripts/lib/services.sh
# or call one function directly (handy by hand):
#   scripts/lib/services.sh tms_start_postgres /tmp/tms-data 5599
#
# Conventions: progress and errors go to stderr, one line per action, prefixed
# "[tms]"; a function's result (a URL, a path, a port) goes to stdout, so
# `url=$(tms_start_postgres DIR PORT)` works. Fatal errors exit 1.
#
# Layout under DATA_DIR:
#   DATA_DIR/postgres/        the Postgres cluster (PGDATA) with server.log and
#                             tms.conf (settings rewritten at each start); when
#                             running as root and user `postgres` cannot reach
#                             DATA_DIR, the cluster lives in /tmp/tms-pg-<sha>
#   DATA_DIR/redis/           Redis data (AOF), redis.pid and redis.log
#
# Variables read: TMS_SETUP_LOG (apt log, default ${TMPDIR:-/tmp}/tms-setup.log).

set -euo pipefail
# Keep `set -e` inside command substitutions such as url=$(tms_start_postgres ...).
shopt -s inherit_errexit

# ---------------------------------------------------------------------------
# messages
# ---------------------------------------------------------------------------

tms_say() {
    printf '[tms] %s\n' "$*" >&2
}

tms_die() {
    printf '[tms] error: %s\n' "$*" >&2
    exit 1
}

# _tms_tail_log FILE [LINES]: show the end of a log file on stderr.
_tms_tail_log() {
    local file=$1 lines=${2:-30}
    if [[ -r $file ]]; then
        printf '[tms] ---- last %s lines of %s ----\n' "$lines" "$file" >&2
        tail -n "$lines" -- "$file" >&2 || true
        printf '[tms] ----\n' >&2
    fi
}

_tms_abspath() {
    realpath -m -- "$1"
}

_tms_check_port_arg() {
    local port=$1
    if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
        tms_die "invalid port '$port' (expected 1-65535)"
    fi
}

# _tms_pid_alive PID: true when the process exists and is not a zombie.
_tms_pid_alive() {
    local pid=$1 state
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/stat ]] || return 1
    state=$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ $state != Z && $state != X ]]
}

# ---------------------------------------------------------------------------
# packages
# ---------------------------------------------------------------------------

# tms_pg_bindir: print the bin directory of the highest installed PostgreSQL
# server version (Debian layout /usr/lib/postgresql/<v>/bin, else PATH).
tms_pg_bindir() {
    local d best=""
    best=$(
        for d in /usr/lib/postgresql/*/bin; do
            [[ -x $d/initdb && -x $d/pg_ctl && -x $d/postgres ]] && printf '%s\n' "$d"
        done | sort -t/ -k5,5V | tail -n 1
    )
    if [[ -z $best ]] && command -v pg_ctl >/dev/null 2>&1; then
        d=$(dirname -- "$(command -v pg_ctl)")
        [[ -x $d/initdb ]] && best=$d
    fi
    [[ -n $best ]] || return 1
    printf '%s\n' "$best"
}

_tms_dpkg_installed() {
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" == installed ]]
}

# tms_missing_packages: print the Debian packages that are missing, one a line.
tms_missing_packages() {
    local bindir=""
    bindir=$(tms_pg_bindir 2>/dev/null) || true
    if [[ -z $bindir || ! -x $bindir/psql || ! -x $bindir/pg_isready ]]; then
        echo postgresql
    fi
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        echo redis-server
    fi
    # promtool checks the alert rules; the Prometheus server scrapes api and worker in tests.
    { command -v promtool && command -v prometheus; } >/dev/null 2>&1 || echo prometheus
    if ! command -v cc >/dev/null 2>&1 || ! command -v c++ >/dev/null 2>&1 ||
        ! command -v make >/dev/null 2>&1; then
        echo build-essential
    fi
    command -v pkg-config >/dev/null 2>&1 || echo pkg-config
    if ! _tms_dpkg_installed libssl-dev &&
        ! { command -v pkg-config >/dev/null 2>&1 && pkg-config --exists openssl; }; then
        echo libssl-dev
    fi
    command -v node >/dev/null 2>&1 || echo nodejs
    command -v npm >/dev/null 2>&1 || echo npm
    command -v curl >/dev/null 2>&1 || echo curl
    return 0
}

# _tms_apt_install CHECK PACKAGE...: apt-get install PACKAGEs (once `apt-get update`d per
# shell), then fail unless the function CHECK prints nothing (nothing still missing).
_tms_apt_install() {
    local check=$1
    shift
    local log=${TMS_SETUP_LOG:-${TMPDIR:-/tmp}/tms-setup.log}
    local -a missing=("$@")
    mkdir -p -- "$(dirname -- "$log")"
    local -a apt=(apt-get -q -y -o DPkg::Lock::Timeout=300)
    if [[ -z ${_TMS_APT_UPDATED:-} ]]; then
        tms_say "apt-get update (log: $log)"
        if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" update >>"$log" 2>&1; then
            _tms_tail_log "$log"
            tms_die "apt-get update failed (full log: $log)"
        fi
        _TMS_APT_UPDATED=1
    fi
    tms_say "apt-get install ${missing[*]} (log: $log)"
    if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" install --no-install-recommends \
        "${missing[@]}" >>"$log" 2>&1; then
        _tms_tail_log "$log"
        tms_die "apt-get install failed (full log: $log)"
    fi
    mapfile -t missing < <("$check")
    if ((${#missing[@]} > 0)); then
        tms_die "still missing after apt-get install: ${missing[*]} (log: $log)"
    fi
}

# tms_ensure_packages: install (as root, with apt-get) whatever is missing.
tms_ensure_packages() {
    local -a missing=()
    mapfile -t missing < <(tms_missing_packages)

    if ((${#missing[@]} == 0)); then
        tms_say "system packages: all present"
    elif [[ $EUID -ne 0 ]]; then
        tms_die "missing system packages: ${missing[*]}. Install them as root, e.g.: sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}"
    elif ! command -v apt-get >/dev/null 2>&1; then
        tms_die "missing system packages: ${missing[*]}, and apt-get is not available (TMS's scripts install packages on Debian only)"
    else
        _tms_apt_install tms_missing_packages "${missing[@]}"
    fi

    if [[ $EUID -eq 0 ]] && ! id -u postgres >/dev/null 2>&1; then
        tms_die "running as root but there is no 'postgres' system user to run the private cluster (Debian's postgresql package creates it)"
    fi
}

# tms_ensure_idp_packages REPO_ROOT: install the test identity provider's npm packages
# (tests/idp, pinned by its package-lock.json) when they are missing or older than the lock.
tms_ensure_idp_packages() {
    local dir=$1/tests/idp
    local log=${TMS_SETUP_LOG:-${TMPDIR:-/tmp}/tms-setup.log}
    [[ -f $dir/package-lock.json ]] || tms_die "missing $dir/package-lock.json"
    if [[ -f $dir/node_modules/.package-lock.json &&
        ! $dir/package-lock.json -nt $dir/node_modules/.package-lock.json ]]; then
        tms_say "test IdP packages: present"
        return 0
    fi
    tms_say "npm ci in tests/idp (log: $log)"
    if ! (cd -- "$dir" && npm ci --no-audit --no-fund) >>"$log" 2>&1; then
        _tms_tail_log "$log"
        tms_die "npm ci in $dir failed (full log: $log)"
    fi
}

# The axe-core release the browser test checks accessibility with (fetched per test run).
TMS_AXE_CORE_VERSION=4.10.3

# tms_missing_browser_packages: the Debian packages the browser test needs that are missing.
tms_missing_browser_packages() {
    command -v chromium >/dev/null 2>&1 || echo chromium
    command -v chromedriver >/dev/null 2>&1 || echo chromium-driver
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        echo python3-venv
    fi
    return 0
}

# tms_ensure_browser_test REPO_ROOT DATA_DIR: what tests/browser needs — Debian's chromium
# and chromium-driver, a virtualenv with tests/browser/requirements.txt (kept in
# tests/browser/.venv, rebuilt when the requirements change) and axe-core fetched from the npm
# registry into DATA_DIR. Exports TMS_TEST_BROWSER_PYTHON, TMS_TEST_AXE_JS,
# TMS_TEST_CHROMIUM and TMS_TEST_CHROMEDRIVER.
tms_ensure_browser_test() {
    local root=$1 data=$2
    local log=${TMS_SETUP_LOG:-${TMPDIR:-/tmp}/tms-setup.log}
    local -a missing=()
    mapfile -t missing < <(tms_missing_browser_packages)
    if ((${#missing[@]} > 0)); then
        [[ $EUID -eq 0 ]] || tms_die "missing packages for the browser test: ${missing[*]} (install them as root)"
        _tms_apt_install tms_missing_browser_packages "${missing[@]}"
    fi
    local venv=$root/tests/browser/.venv req=$root/tests/browser/requirements.txt
    if [[ ! -x $venv/bin/python || ! -f $venv/.installed || $req -nt $venv/.installed ]]; then
        tms_say "browser test virtualenv: pip install -r tests/browser/requirements.txt (log: $log)"
        rm -rf -- "$venv"
        if ! { python3 -m venv "$venv" && "$venv/bin/pip" install -q -r "$req"; } >>"$log" 2>&1; then
            _tms_tail_log "$log"
            tms_die "could not set up $venv (full log: $log)"
        fi
        touch -- "$venv/.installed"
    fi
    local axe_dir=$data/axe-core
    if [[ ! -f $axe_dir/package/axe.min.js ]]; then
        mkdir -p -- "$axe_dir"
        if ! (cd -- "$axe_dir" && npm pack --silent "axe-core@$TMS_AXE_CORE_VERSION" &&
            tar -xzf "axe-core-$TMS_AXE_CORE_VERSION.tgz") >>"$log" 2>&1; then
            _tms_tail_log "$log"
            tms_die "could not fetch axe-core@$TMS_AXE_CORE_VERSION (full log: $log)"
        fi
    fi
    export TMS_TEST_BROWSER_PYTHON=$venv/bin/python
    export TMS_TEST_AXE_JS=$axe_dir/package/axe.min.js
    TMS_TEST_CHROMIUM=$(command -v chromium)
    TMS_TEST_CHROMEDRIVER=$(command -v chromedriver)
    export TMS_TEST_CHROMIUM TMS_TEST_CHROMEDRIVER
    tms_say "browser test: $("$TMS_TEST_CHROMIUM" --version 2>/dev/null || echo chromium), axe-core $TMS_AXE_CORE_VERSION"
}

# tms_ensure_cargo: make sure cargo is on PATH (adds ${CARGO_HOME:-~/.cargo}/bin).
tms_ensure_cargo() {
    if ! command -v cargo >/dev/null 2>&1; then
        local cargo_bin=${CARGO_HOME:-${HOME:-/root}/.cargo}/bin
        if [[ -x $cargo_bin/cargo ]]; then
            export PATH="$cargo_bin:$PATH"
        else
            tms_die "cargo not found (not on PATH, not in $cargo_bin); install a Rust toolchain (rustup, Rust >= 1.85)"
        fi
    fi
}

# ---------------------------------------------------------------------------
# ports
# ---------------------------------------------------------------------------

# tms_port_in_use PORT [HOST]: true when something listens on PORT.
tms_port_in_use() {
    local port=$1 host=${2:-127.0.0.1}
    [[ $host == 0.0.0.0 || $host == '*' || -z $host ]] && host=127.0.0.1
    if command -v ss >/dev/null 2>&1 &&
        [[ -n "$(ss -Hltn "sport = :$port" 2>/dev/null || true)" ]]; then
        return 0
    fi
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null
}

# _tms_port_owner PORT: best-effort description of who listens on PORT.
_tms_port_owner() {
    local port=$1 out=""
    if command -v ss >/dev/null 2>&1; then
        out=$(ss -Hltnp "sport = :$port" 2>/dev/null | grep -o 'users:(([^)]*))' | head -n 1 || true)
    fi
    printf '%s\n' "${out:-an unknown process}"
}

# tms_require_free_port PORT WHAT [VARIABLE] [HOST]: exit with a clear message
# when PORT is taken (VARIABLE names the setting that chooses another port).
tms_require_free_port() {
    local port=$1 what=$2 var=${3:-} host=${4:-127.0.0.1}
    if tms_port_in_use "$port" "$host"; then
        local hint=""
        [[ -n $var ]] && hint=" or choose another port with $var=..."
        tms_die "port $port (wanted for $what) is already in use by $(_tms_port_owner "$port"), which is not a server started from this data dir; stop it$hint"
    fi
}

# tms_find_free_port START [TRIES]: print the first free port from START on.
tms_find_free_port() {
    local port=$1 tries=${2:-50} i
    _tms_check_port_arg "$port"
    for ((i = 0; i < tries; i++)); do
        if ! tms_port_in_use "$((port + i))"; then
            printf '%s\n' "$((port + i))"
            return 0
        fi
    done
    tms_die "no free port in $port-$((port + tries - 1))"
}

# ---------------------------------------------------------------------------
# Postgres
# ---------------------------------------------------------------------------

# _tms_pg_owner_run CMD...: run CMD as the owner of the cluster (user postgres
# when we are root, since Postgres refuses to run as root), from /.
_tms_pg_owner_run() {
    if [[ $EUID -eq 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# tms_pg_cluster_dir DATA_DIR: print where the cluster (PGDATA) for DATA_DIR
# lives: DATA_DIR/postgres, or /tmp/tms-pg-<sha of DATA_DIR> when running as
# root and user postgres cannot traverse to DATA_DIR.
tms_pg_cluster_dir() {
    local data_dir probe
    data_dir=$(_tms_abspath "$1")
    if [[ $EUID -eq 0 ]]; then
        probe=$data_dir
        while [[ ! -e $probe && $probe != / ]]; do probe=$(dirname -- "$probe"); done
        if ! _tms_pg_owner_run test -x "$probe"; then
            printf '/tmp/tms-pg-%s\n' "$(printf '%s' "$data_dir" | sha256sum | cut -c1-16)"
            return 0
        fi
    fi
    printf '%s/postgres\n' "$data_dir"
}

# _tms_pg_prepare_dir PGDATA: create it (mode 700) owned by the cluster owner.
_tms_pg_prepare_dir() {
    local pgdata=$1
    if [[ $EUID -eq 0 ]]; then
        if [[ -e $pgdata ]]; then
            [[ -d $pgdata && ! -L $pgdata ]] || tms_die "$pgdata exists and is not a directory"
            local owner
            owner=$(stat -c %U -- "$pgdata")
            if [[ $owner != postgres ]]; then
                if [[ $pgdata == /tmp/tms-pg-* && $owner != root ]]; then
                    tms_die "$pgdata is owned by '$owner', not postgres or root; refusing to use it"
                fi
                chown -R postgres:postgres -- "$pgdata"
            fi
        else
            mkdir -m 700 -- "$pgdata"
            chown postgres:postgres -- "$pgdata"
        fi
    else
        mkdir -p -- "$pgdata"
    fi
    chmod 700 -- "$pgdata"
}

# tms_postgres_running DATA_DIR: true when the cluster of DATA_DIR runs.
tms_postgres_running() {
    local bindir pgdata
    pgdata=$(tms_pg_cluster_dir "$1")
    [[ -f $pgdata/PG_VERSION && -f $pgdata/postmaster.pid ]] || return 1
    bindir=$(tms_pg_bindir) || return 1
    _tms_pg_owner_run "$bindir/pg_ctl" status -D "$pgdata" >/dev/null 2>&1
}

# tms_postgres_pid DATA_DIR: print the postmaster's pid (when running).
tms_postgres_pid() {
    local pgdata
    pgdata=$(tms_pg_cluster_dir "$1")
    tms_postgres_running "$1" || return 1
    head -n 1 -- "$pgdata/postmaster.pid"
}

_tms_sql_quote() {
    local s=$1
    printf "'%s'" "${s//\'/\'\'}"
}

# tms_start_postgres DATA_DIR PORT [fast]: start (initialising it the first
# time) the private cluster of DATA_DIR on 127.0.0.1:PORT, or reuse it when it
# already runs; create database tms; print postgres://postgres@127.0.0.1:PORT/tms.
# `fast` (for tests) turns off fsync, synchronous_commit and full_page_writes.
tms_start_postgres() {
    (($# >= 2)) || tms_die "usage: tms_start_postgres DATA_DIR PORT [fast]"
    local data_dir port=$2 mode=${3:-} bindir pgdata
    _tms_check_port_arg "$port"
    [[ -z $mode || $mode == fast ]] || tms_die "tms_start_postgres: unknown mode '$mode' (expected 'fast' or nothing)"
    data_dir=$(_tms_abspath "$1")
    mkdir -p -- "$data_dir"
    bindir=$(tms_pg_bindir) || tms_die "PostgreSQL server binaries (initdb, pg_ctl) not found; run tms_ensure_packages"
    pgdata=$(tms_pg_cluster_dir "$data_dir")
    if [[ $pgdata != "$data_dir/postgres" ]]; then
        tms_say "note: user postgres cannot reach $data_dir; the Postgres cluster lives in $pgdata"
    fi
    _tms_pg_prepare_dir "$pgdata"

    if tms_postgres_running "$data_dir"; then
        local running_port pid
        running_port=$(sed -n 4p -- "$pgdata/postmaster.pid")
        pid=$(head -n 1 -- "$pgdata/postmaster.pid")
        if [[ $running_port != "$port" ]]; then
            tms_die "the Postgres cluster in $pgdata already runs (pid $pid) on port $running_port, not $port; stop it first (tms_stop_postgres $data_dir)"
        fi
        tms_say "reusing running Postgres (pid $pid) on 127.0.0.1:$port"
    else
        tms_require_free_port "$port" "Postgres" TMS_PG_PORT
        if [[ ! -f $pgdata/PG_VERSION ]]; then
            if [[ -n "$(ls -A -- "$pgdata")" ]]; then
                tms_die "$pgdata is not empty but holds no Postgres cluster (no PG_VERSION); remove it or choose another data dir"
            fi
            tms_say "initialising Postgres cluster in $pgdata ($("$bindir/postgres" --version))"
            local out
            if ! out=$(_tms_pg_owner_run "$bindir/initdb" -D "$pgdata" --username=postgres \
                --auth=trust --encoding=UTF8 --locale=C 2>&1); then
                printf '%s\n' "$out" >&2
                tms_die "initdb failed for $pgdata"
            fi
            printf "\n# Added by TMS: per-start settings (port, listen address, durability).\ninclude_if_exists = 'tms.conf'\n" \
                >>"$pgdata/postgresql.conf"
        fi
        local sockdir=$pgdata
        if ((${#pgdata} + 20 > 107)); then
            tms_say "note: $pgdata is too long for a Unix socket path; Postgres listens on TCP only"
            sockdir=""
        fi
        {
            echo "# Written by scripts/lib/services.sh at every start; do not edit."
            echo "listen_addresses = '127.0.0.1'"
            echo "port = $port"
            echo "unix_socket_directories = $(_tms_sql_quote "$sockdir")"
            echo "max_connections = 200"
            if [[ $mode == fast ]]; then
                echo "# test mode: durability off (throwaway data)"
                echo "fsync = off"
                echo "synchronous_commit = off"
                echo "full_page_writes = off"
            fi
        } | _tms_pg_owner_run tee "$pgdata/tms.conf" >/dev/null
        tms_say "starting Postgres on 127.0.0.1:$port${mode:+ ($mode mode)} (log: $pgdata/server.log)"
        if ! _tms_pg_owner_run "$bindir/pg_ctl" start -D "$pgdata" -l "$pgdata/server.log" \
            -w -t 30 -s >/dev/null 2>&1; then
            _tms_tail_log "$pgdata/server.log"
            tms_die "Postgres did not start (data: $pgdata)"
        fi
    fi

    local deadline=$((SECONDS + 30))
    until "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -t 2; do
        if ((SECONDS >= deadline)); then
            _tms_tail_log "$pgdata/server.log"
            tms_die "Postgres on 127.0.0.1:$port not ready after 30 s"
        fi
        sleep 0.2
    done

    local -a psql=("$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres)
    if [[ "$(PGCONNECT_TIMEOUT=5 "${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = 'tms'")" != 1 ]]; then
        tms_say "creating database tms"
        PGCONNECT_TIMEOUT=5 "${psql[@]}" -c 'CREATE DATABASE tms' >/dev/null ||
            tms_die "could not create database tms on 127.0.0.1:$port"
    fi
    printf 'postgres://postgres@127.0.0.1:%s/tms\n' "$port"
}

# tms_stop_postgres DATA_DIR: stop the private cluster (fast shutdown).
tms_stop_postgres() {
    (($# >= 1)) || tms_die "usage: tms_stop_postgres DATA_DIR"
    local pgdata bindir
    pgdata=$(tms_pg_cluster_dir "$1")
    if ! tms_postgres_running "$1"; then
        return 0
    fi
    bindir=$(tms_pg_bindir) || tms_die "pg_ctl not found"
    tms_say "stopping Postgres ($pgdata)"
    if ! _tms_pg_owner_run "$bindir/pg_ctl" stop -D "$pgdata" -m fast -w -t 60 -s >/dev/null 2>&1; then
        tms_say "warning: pg_ctl stop failed for $pgdata"
        return 1
    fi
}

# ---------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------

# tms_redis_pid DATA_DIR: print the pid of the Redis started from DATA_DIR
# (from its pid file, checked to be a live redis-server), else fail.
tms_redis_pid() {
    local pidfile pid comm
    pidfile=$(_tms_abspath "$1")/redis/redis.pid
    [[ -r $pidfile ]] || return 1
    pid=$(head -n 1 -- "$pidfile" 2>/dev/null || true)
    _tms_pid_alive "$pid" || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
    [[ $comm == redis-server* || $comm == redis-check-* ]] || return 1
    printf '%s\n' "$pid"
}

_tms_redis_ping() {
    [[ "$(timeout 3 redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null || true)" == PONG ]]
}

# tms_start_redis DATA_DIR PORT: start a daemonized redis-server on
# 127.0.0.1:PORT with its data in DATA_DIR/redis (AOF on, RDB snapshots off),
# or reuse the one already started from DATA_DIR; print redis://127.0.0.1:PORT/.
tms_start_redis() {
    (($# >= 2)) || tms_die "usage: tms_start_redis DATA_DIR PORT"
    local data_dir port=$2 dir pid
    _tms_check_port_arg "$port"
    data_dir=$(_tms_abspath "$1")
    dir=$data_dir/redis
    mkdir -p -- "$dir"
    chmod 700 -- "$dir"
    command -v redis-server >/dev/null 2>&1 || tms_die "redis-server not found; run tms_ensure_packages"

    if pid=$(tms_redis_pid "$data_dir"); then
        if _tms_redis_ping "$port"; then
            tms_say "reusing running Redis (pid $pid) on 127.0.0.1:$port"
            printf 'redis://127.0.0.1:%s/\n' "$port"
            return 0
        fi
        tms_die "Redis from $dir already runs (pid $pid) but does not answer on port $port; stop it first (tms_stop_redis $data_dir)"
    fi
    rm -f -- "$dir/redis.pid"
    tms_require_free_port "$port" "Redis" TMS_REDIS_PORT

    tms_say "starting Redis on 127.0.0.1:$port (log: $dir/redis.log)"
    if ! redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --protected-mode yes \
        --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
        --appendonly yes --save "" >/dev/null 2>&1; then
        _tms_tail_log "$dir/redis.log"
        tms_die "redis-server failed to start"
    fi

    local deadline=$((SECONDS + 15))
    until _tms_redis_ping "$port"; do
        if ((SECONDS >= deadline)); then
            _tms_tail_log "$dir/redis.log"
            tms_die "Redis on 127.0.0.1:$port did not answer PONG within 15 s"
        fi
        sleep 0.2
    done
    printf 'redis://127.0.0.1:%s/\n' "$port"
}

# tms_stop_redis DATA_DIR: stop the Redis started from DATA_DIR (pid file
# only): TERM, then KILL after 10 s.
tms_stop_redis() {
    (($# >= 1)) || tms_die "usage: tms_stop_redis DATA_DIR"
    local pid i
    pid=$(tms_redis_pid "$1") || return 0
    tms_say "stopping Redis (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        _tms_pid_alive "$pid" || return 0
        sleep 0.1
    done
    tms_say "warning: Redis (pid $pid) still running after 10 s; sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
}

# ---------------------------------------------------------------------------
# direct invocation: scripts/lib/services.sh FUNCTION ARGS...
# ---------------------------------------------------------------------------

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    if (($# == 0)) || [[ $1 != tms_* ]] || ! declare -F -- "$1" >/dev/null; then
        echo "usage: $0 FUNCTION [ARGS...]   (functions: $(declare -F | awk '$3 ~ /^tms_/ {printf "%s ", $3}'))" >&2
        exit 2
    fi
    "$@"
fi
