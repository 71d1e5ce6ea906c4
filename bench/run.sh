#!/usr/bin/env bash
# ngx_loyalty_module benchmark: the module against a plain proxy and a
# Lua (lua-resty-redis) implementation of the same job, on one machine.
#
#   bench/run.sh [--quick] [--verify-only] [--help]
#
# Normally run through `make bench` (3 rounds x 8 s, about 11 minutes) or
# `make bench-quick` (1 round x 3 s, about 2 minutes), which first install
# the packages and build build/ngx_http_loyalty_module.so.
#
# It starts, on 127.0.0.1 and under a private temp dir:
#   redis-server (no persistence) seeded with N customers (unless every
#   selected configuration uses the cluster),
#   when a selected site file says "#@ redis cluster" (module-cluster): a
#   private 6-node Redis Cluster (3 masters + 3 replicas) seeded with the
#   same customers, each key written to the master of its hash slot
#   (bench/cluster-split.pl); only those site files use it,
#   the storefront nginx serving bench/html/index.html,
#   one front nginx per configuration bench/conf/<name>.conf (1 worker);
# checks every front with curl (aborting on any failure), measures them with
# wrk in interleaved rounds, tries Redis hung (SIGSTOP) and killed, and
# prints a Markdown report (also saved as bench/results/latest.md).
# A site file with "#@ measure down" (module-breaker) skips the rounds and
# takes part in the Redis-down runs only; one with "#@ redis cluster"
# (module-cluster) takes part in the rounds only (stopping one node of a
# cluster is another experiment: failover is covered by t/18-cluster.t).
#
# Knobs (environment):
#   ROUNDS=3 DURATION=8 (seconds; --quick: 1 and 3)  WARMUP=2  CONNS=50
#   CONFIGS="plain lua-headers module-headers module-inject lua-inject
#            module-cached module-ab module-cluster module-breaker"
#            (configurations without a bench/conf/<name>.conf file are
#            skipped)
#   TRAFFIC="cookie anon"  REDIS_TIMEOUT_MS=50
#   PIN=1       front on CPU 0; storefront, redis (and the cluster's
#               nodes) and wrk on CPU 1
#               (needs taskset and 2+ CPUs; PIN=0 disables)
#   OUT=<dir>   keep everything (runs.tsv, raw wrk output, logs) in <dir>;
#               default: a temp dir, removed at exit
#   N=100000 customers   IDS=10000 distinct ids in cookie traffic   SEED=42
#   DOWN=1      Redis-down runs (DOWN_DURATION=5, --quick: 2); with Redis
#               hung, plain is measured too (WARMUP s warm-up, then
#               DOWN_DURATION s), as the reference of module-breaker's target,
#               then HUNG_ROUNDS=3 (--quick: 1) more alternating pairs of
#               module-breaker and plain runs, whose medians the target uses
#   QUIET_PCT=10 QUIET_WAIT=20: before each run wait up to QUIET_WAIT s for
#               the machine to use at most QUIET_PCT % of a core
#   NOISE_PCT=25 STEAL_PCT=5: a run during which other processes used more
#               than NOISE_PCT % of a core, or the hypervisor took more than
#               STEAL_PCT % of CPU 0 (steal time), is measured once more (if
#               the time budget allows); if the last try is still disturbed
#               it is flagged "noisy" / "steal" in the report
#   BUDGET=450 (--quick: 90): seconds this script may take; quiet waits and
#               re-measurements shrink to fit
#   MODULE=build/ngx_http_loyalty_module.so  NGINX=nginx
#   NGINX_MODULES=/usr/lib/nginx/modules
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

MODE=full VERIFY_ONLY=0
for arg in "$@"; do
    case $arg in
        --quick) MODE=quick ;;
        --verify-only) VERIFY_ONLY=1 ;;
        -h|--help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
        *) fail "unknown argument: $arg (see --help)" ;;
    esac
done

DEFAULT_CONFIGS="plain lua-headers module-headers module-inject lua-inject module-cached module-ab module-cluster module-breaker"
if [[ $MODE == quick ]]; then
    : "${ROUNDS:=1}" "${DURATION:=3}" "${DOWN_DURATION:=2}" "${BUDGET:=90}"
    : "${HUNG_ROUNDS:=1}"
else
    : "${ROUNDS:=3}" "${DURATION:=8}" "${DOWN_DURATION:=5}" "${BUDGET:=450}"
    : "${HUNG_ROUNDS:=3}"
fi
: "${WARMUP:=2}" "${CONNS:=50}" "${THREADS:=1}" "${TRAFFIC:=cookie anon}"
: "${REDIS_TIMEOUT_MS:=50}" "${PIN:=1}" "${OUT:=}" "${N:=100000}" "${IDS:=10000}"
: "${SEED:=42}" "${DOWN:=1}" "${QUIET_PCT:=10}" "${QUIET_WAIT:=20}" "${NOISE_PCT:=25}"
: "${STEAL_PCT:=5}"
: "${MODULE:=$ROOT/build/ngx_http_loyalty_module.so}" "${NGINX:=nginx}"
: "${NGINX_MODULES:=/usr/lib/nginx/modules}"
CONFIGS_GIVEN=${CONFIGS:+yes}
: "${CONFIGS:=$DEFAULT_CONFIGS}"
DURATION=${DURATION%s} WARMUP=${WARMUP%s} DOWN_DURATION=${DOWN_DURATION%s}
for v in ROUNDS DURATION WARMUP CONNS THREADS REDIS_TIMEOUT_MS N IDS SEED \
         QUIET_PCT QUIET_WAIT NOISE_PCT STEAL_PCT BUDGET DOWN_DURATION \
         HUNG_ROUNDS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || fail "$v must be a whole number (got '${!v}')"
done
[[ $ROUNDS -ge 1 && $DURATION -ge 1 && $N -ge 2 ]] || fail "ROUNDS, DURATION >= 1 and N >= 2"

START=$(now)
COMMAND=${BENCH_COMMAND:-bench/run.sh${*:+ $*}}
HZ=$(getconf CLK_TCK)
PGID=$(awk '{ sub(/^.*\) /, ""); split($0, f, " "); print f[3] }' /proc/$$/stat)

# ---------------------------------------------------------------- configs

RUN_CONFIGS=() SKIPPED=""
for c in $CONFIGS; do
    if [[ -f $BENCH/conf/$c.conf ]]; then
        RUN_CONFIGS+=("$c")
    else
        SKIPPED+=" $c"
    fi
done
# the default list names configurations still to be written: skip those
# quietly; a CONFIGS given by hand gets a warning for each
[[ -n $CONFIGS_GIVEN && -n $SKIPPED ]] && say "WARNING: no bench/conf/<name>.conf for:$SKIPPED (skipped)"
[[ ${#RUN_CONFIGS[@]} -gt 0 ]] || fail "no configuration to run (CONFIGS=\"$CONFIGS\")"
has_meta() { [[ " $(conf_meta "$BENCH/conf/$1.conf" "$2") " == *" $3 "* ]]; }
for t in $TRAFFIC; do
    [[ $t == cookie || $t == anon ]] || fail "TRAFFIC: unknown traffic kind '$t' (cookie, anon)"
done

# what a site file needs: "#@ modules lua|loyalty"; how to check it:
# "#@ verify plain|headers|inject|none" (default: by name); "#@ measure down":
# no rounds, Redis-down runs only; "#@ down warmup fill": in the Redis-down
# runs, a WARMUP-second wrk run after Redis went down, before the measured
# one (warmup), and a WARMUP-second cookie run just before Redis is stopped
# or killed, so the cache holds the traffic's customers (fill); "#@ redis
# cluster": the configuration talks to the private Redis Cluster (its seed
# node is {{CLUSTER_PORT}}), not the single Redis, and is left out of the
# Redis-down runs
verify_kind() {
    local k
    k=$(conf_meta "$BENCH/conf/$1.conf" verify)
    if [[ -z $k ]]; then
        case $1 in
            plain) k=plain ;;
            *-inject) k=inject ;;
            *) k=headers ;;
        esac
    fi
    echo "$k"
}

# uses_cluster CFG: the site file says "#@ redis cluster"
uses_cluster() { [[ $(conf_meta "$BENCH/conf/$1.conf" redis) == cluster ]]; }

# ---------------------------------------------------------------- preflight

need_lua=0 need_module=0 need_redis=0 need_cluster=0
MEASURE_CONFIGS=() DOWN_ONLY=""
for c in "${RUN_CONFIGS[@]}"; do
    case $(conf_meta "$BENCH/conf/$c.conf" redis) in
        ''|single) need_redis=1 ;;
        cluster) need_cluster=1 ;;
        *) fail "bench/conf/$c.conf: unknown '#@ redis $(conf_meta "$BENCH/conf/$c.conf" redis)' (single, cluster)" ;;
    esac
    for m in $(conf_meta "$BENCH/conf/$c.conf" modules); do
        case $m in
            lua) need_lua=1 ;;
            loyalty) need_module=1 ;;
            *) fail "bench/conf/$c.conf: unknown '#@ modules $m' (lua, loyalty)" ;;
        esac
    done
    case $(conf_meta "$BENCH/conf/$c.conf" measure) in
        ''|all) MEASURE_CONFIGS+=("$c") ;;
        down) DOWN_ONLY+=" $c" ;;
        *) fail "bench/conf/$c.conf: unknown '#@ measure $(conf_meta "$BENCH/conf/$c.conf" measure)' (all, down)" ;;
    esac
    [[ " $DOWN_ONLY " == *" $c "* ]] && uses_cluster "$c" &&
        fail "bench/conf/$c.conf: '#@ measure down' and '#@ redis cluster' (the Redis-down runs stop the single Redis only)"
    for m in $(conf_meta "$BENCH/conf/$c.conf" down); do
        [[ $m == warmup || $m == fill ]] || fail "bench/conf/$c.conf: unknown '#@ down $m' (warmup, fill)"
    done
done
[[ -n $DOWN_ONLY && $DOWN != 1 && $VERIFY_ONLY == 0 ]] &&
    say "WARNING: DOWN=0: not measuring$DOWN_ONLY (Redis-down runs only)"
for cmd in "$NGINX" redis-server redis-cli wrk curl awk sed cmp; do
    command -v "$cmd" >/dev/null || fail "missing command $cmd (run: make bench, or sh tools/install-deps.sh wrk)"
done
[[ $need_cluster == 1 ]] && { command -v perl >/dev/null || fail "missing command perl (splits the cluster's seed by hash slot)"; }
for c in "${RUN_CONFIGS[@]}"; do
    if [[ $(verify_kind "$c") == inject ]]; then
        command -v python3 >/dev/null || fail "missing command python3 (checks the injected pages of $c)"
        break
    fi
done
if [[ $need_lua == 1 ]]; then
    for f in ndk_http_module.so ngx_http_lua_module.so; do
        [[ -f $NGINX_MODULES/$f ]] || fail "missing $NGINX_MODULES/$f (sh tools/install-deps.sh libnginx-mod-http-lua)"
    done
    [[ -f /usr/share/lua/5.1/nginx/redis.lua ]] || fail "missing lua-resty-redis (sh tools/install-deps.sh lua-nginx-redis)"
fi
if [[ $need_module == 1 ]]; then
    [[ -f $MODULE ]] || fail "missing $MODULE (make module)"
fi

FRONT_CPU="" LOAD_CPU=""
if [[ $PIN == 1 ]]; then
    if [[ $(nproc) -ge 2 ]] && command -v taskset >/dev/null; then
        FRONT_CPU=0 LOAD_CPU=1
    else
        say "PIN=1 but no taskset or fewer than 2 CPUs: not pinning"
    fi
fi

# ---------------------------------------------------------------- work dir, cleanup

WORK=$(mktemp -d /tmp/loyalty-bench.XXXXXX)
chmod 755 "$WORK"                  # nginx workers run as nobody under root
if [[ -n $OUT ]]; then
    mkdir -p "$OUT"
    RES=$(cd "$OUT" && pwd)
else
    RES=$WORK/results
fi
mkdir -p "$RES/raw" "$WORK/html" "$WORK/lua" "$WORK/modules" "$WORK/redis"
cp "$BENCH/html/index.html" "$WORK/html/"
cp "$BENCH/lua/"*.lua "$WORK/lua/"
# a private copy: `make module` elsewhere rewrites build/*.so in place,
# which would crash a running nginx that has it mapped
[[ $need_module == 1 ]] && cp "$MODULE" "$WORK/modules/ngx_http_loyalty_module.so"
chmod -R a+rX "$WORK"

REDIS_PID="" REDIS_PORT="" WRK_PID=""
CLUSTER_PIDS=() CLUSTER_PORTS=() CLUSTER_PORT="" CLUSTER_SIZE=6
declare -A PORT=() MASTER=() WORKER=()

cleanup() {
    local rc=$? p left
    set +e
    trap - EXIT INT TERM
    [[ -n $WRK_PID ]] && kill -TERM "$WRK_PID" 2>/dev/null
    [[ -n $REDIS_PID ]] && kill -CONT "$REDIS_PID" 2>/dev/null
    for p in "${MASTER[@]}" $REDIS_PID "${CLUSTER_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for _ in $(seq 1 50); do
        left=""
        for p in "${MASTER[@]}" "${WORKER[@]}" $REDIS_PID "${CLUSTER_PIDS[@]}" $WRK_PID; do
            alive "$p" && left+=" $p"
        done
        [[ -z $left ]] && break
        sleep 0.1
    done
    for p in $left; do kill -KILL "$p" 2>/dev/null; done
    wait 2>/dev/null
    if [[ -n $OUT ]]; then
        for p in "$WORK"/nginx-*/error.log "$WORK/redis/redis.log"; do
            [[ -f $p ]] && cp "$p" "$RES/raw/$(basename "$(dirname "$p")")-$(basename "$p")"
        done
        for p in "$WORK"/cluster/*/redis.log; do     # cluster-<port>-redis.log
            [[ -f $p ]] && cp "$p" "$RES/raw/cluster-$(basename "$(dirname "$p")")-redis.log"
        done
        for p in "$WORK"/cluster/*.log; do           # cluster-create.log, ...
            [[ -f $p ]] && cp "$p" "$RES/raw/cluster-$(basename "$p")"
        done
        say "results kept in $RES"
    fi
    rm -rf "$WORK"
    [[ $rc == 0 ]] || say "stopped (exit $rc); all benchmark processes ended"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- machine

lua_version() { dpkg-query -W -f='${Version}' libnginx-mod-http-lua 2>/dev/null || echo '?'; }
resty_redis_version() {
    sed -n "s/.*_VERSION *= *['\"]\([^'\"]*\).*/\1/p" /usr/share/lua/5.1/nginx/redis.lua 2>/dev/null | head -1
}
module_rev() {
    git -C "$ROOT" describe --always --dirty 2>/dev/null || echo 'not a git checkout'
}
{
    echo "- date: $(date -u +'%Y-%m-%d %H:%M UTC')"
    echo "- command: \`$COMMAND\`"
    echo "- settings: ROUNDS=$ROUNDS DURATION=${DURATION}s WARMUP=${WARMUP}s CONNS=$CONNS THREADS=$THREADS" \
         "TRAFFIC=\"$TRAFFIC\" CONFIGS=\"${RUN_CONFIGS[*]}\" REDIS_TIMEOUT_MS=$REDIS_TIMEOUT_MS" \
         "N=$N IDS=$IDS SEED=$SEED PIN=$PIN"
    echo "- CPU: $(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(nproc) cores" \
         "(front nginx on CPU ${FRONT_CPU:-any}; storefront, redis$([[ $need_cluster == 1 ]] && echo ", the redis cluster's nodes"), wrk on CPU ${LOAD_CPU:-any})"
    echo "- kernel: $(uname -srm)"
    echo "- nginx: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //')" \
         "(lua-nginx-module $(lua_version), lua-resty-redis $(resty_redis_version || true))"
    if [[ $need_module == 1 ]]; then
        echo "- module: $(module_rev), $(basename "$MODULE") sha256 $(sha256sum "$WORK/modules/ngx_http_loyalty_module.so" | cut -c1-12)"
    fi
    echo "- redis: $(redis-server --version | awk '{ print $3 }' | sed 's/^v=//')"
    if [[ $need_cluster == 1 ]]; then
        echo "- redis cluster (for $(for c in "${RUN_CONFIGS[@]}"; do uses_cluster "$c" && printf '%s ' "$c"; done | sed 's/ $//')):" \
             "$CLUSTER_SIZE nodes, 3 masters + 3 replicas, cluster-node-timeout 2000 ms, same customers as the single redis"
    fi
    echo "- wrk: $(wrk -v 2>&1 | head -1 | awk '{ print $2 }')"
} >"$RES/env.md"
cat "$RES/env.md" >&2

# ---------------------------------------------------------------- redis

# start_redis PORT: redis-server in the background (our process group).
start_redis() {
    spawn "$LOAD_CPU" redis-server --bind 127.0.0.1 --port "$1" \
        --save '' --appendonly no --dir "$WORK/redis" \
        --logfile "$WORK/redis/redis.log" --daemonize no
    REDIS_PID=$SPAWNED
    await_port "$1" 10 || fail "redis-server did not start (see its log)"
}

seed_redis() {
    local t0 keys
    t0=$(now)
    awk -v n="$N" -f "$BENCH/seed.awk" |
        redis-cli -p "$REDIS_PORT" --pipe >"$WORK/redis/seed.log" 2>&1 ||
        { cat "$WORK/redis/seed.log" >&2; fail "loading customers into redis failed"; }
    keys=$(redis-cli -p "$REDIS_PORT" dbsize)
    [[ $keys -ge $N ]] || fail "redis holds $keys keys, expected $N"
    say "redis on 127.0.0.1:$REDIS_PORT: $keys customers loaded in $(elapsed "$t0") s"
}

# only when a selected configuration uses the single Redis (one without
# "#@ redis cluster")
if [[ $need_redis == 1 ]]; then
    pick_port REDIS_PORT
    start_redis "$REDIS_PORT"
    seed_redis
fi

# ---------------------------------------------------------------- redis cluster

# cluster_ranges: "START-END:PORT" for every slot range of every master, from
# CLUSTER NODES as the seed node sees it (slots being migrated, "[...]", are
# left out: there are none in this cluster)
cluster_ranges() {
    redis-cli -p "$CLUSTER_PORT" cluster nodes |
        awk '{ sub(/\r$/, "") }
             $3 ~ /master/ && $3 !~ /fail/ {
                 split($2, a, "@"); n = split(a[1], b, ":")
                 for (i = 9; i <= NF; i++) if ($i !~ /^\[/) { r = $i; if (r !~ /-/) r = r "-" r; print r ":" b[n] } }'
}

# cluster_roles: "master" and "slave" counts as the seed node sees them
# (healthy nodes only; a master counts only with slots)
cluster_roles() {
    redis-cli -p "$CLUSTER_PORT" cluster nodes 2>/dev/null |
        awk '{ sub(/\r$/, "") } $3 ~ /fail|handshake|noaddr/ { next }
             $3 ~ /master/ && NF >= 9 { m++ } $3 ~ /slave/ && $8 == "connected" { s++ }
             END { printf "%d %d\n", m, s }'
}

# node_keys PORT: DBSIZE of node PORT; 0 while it cannot tell (a replica
# answers LOADING during a full resync)
node_keys() {
    local n
    n=$(redis-cli -p "$1" dbsize 2>/dev/null)
    [[ $n =~ ^[0-9]+$ ]] && echo "$n" || echo 0
}

# hmget_calls PORT: HMGET commands node PORT has executed
hmget_calls() {
    local n
    n=$(redis-cli -p "$1" info commandstats 2>/dev/null | sed -n 's/^cmdstat_hmget:calls=\([0-9]*\).*/\1/p')
    echo "${n:-0}"
}

# start_cluster: CLUSTER_SIZE cluster-enabled redis-servers (no persistence,
# our process group, on the load CPU like the single Redis), made into 3
# masters with one replica each by redis-cli --cluster create; waits until
# every node says cluster_state:ok and the seed node sees 3 masters with
# slots and 3 connected replicas. The first node is the seed of the site
# files ({{CLUSTER_PORT}}).
CLUSTER_MASTERS=() CLUSTER_REPLICAS=()
start_cluster() {
    local t0 i port bus dir ok roles busarg=()
    t0=$(now)
    mkdir -p "$WORK/cluster"
    for i in $(seq 1 "$CLUSTER_SIZE"); do
        pick_port port
        busarg=()
        # the bus port would be port + 10000 (31000-38999), partly in the
        # ephemeral range; redis 7 takes it as an option
        if [[ $REDIS_MAJOR -ge 7 ]]; then
            pick_port bus
            busarg=(--cluster-port "$bus")
        fi
        dir=$WORK/cluster/$port
        mkdir -p "$dir"
        spawn "$LOAD_CPU" redis-server --bind 127.0.0.1 --port "$port" ${busarg[@]+"${busarg[@]}"} \
            --cluster-enabled yes --cluster-config-file "$dir/nodes.conf" \
            --cluster-node-timeout 2000 --save '' --appendonly no --repl-diskless-sync-delay 0 --dir "$dir" \
            --logfile "$dir/redis.log" --daemonize no
        CLUSTER_PIDS+=("$SPAWNED")
        CLUSTER_PORTS+=("$port")
    done
    for port in "${CLUSTER_PORTS[@]}"; do
        await_port "$port" 10 || fail "redis cluster node on port $port did not start (see its log)"
    done
    CLUSTER_PORT=${CLUSTER_PORTS[0]}
    # shellcheck disable=SC2046
    redis-cli --cluster create $(printf '127.0.0.1:%s ' "${CLUSTER_PORTS[@]}") \
        --cluster-replicas 1 --cluster-yes >"$WORK/cluster/create.log" 2>&1 ||
        { tail -20 "$WORK/cluster/create.log" >&2; fail "redis-cli --cluster create failed"; }
    for i in $(seq 1 200); do                           # up to 20 s
        ok=1
        for port in "${CLUSTER_PORTS[@]}"; do
            redis-cli -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || { ok=0; break; }
        done
        roles=$(cluster_roles)
        [[ $ok == 1 && $roles == "3 3" ]] && break
        ok=0
        sleep 0.1
    done
    [[ $ok == 1 ]] || fail "the redis cluster is not ready after 20 s (cluster_state not ok everywhere, or masters/replicas '$roles', expected '3 3')"
    read -r -a CLUSTER_MASTERS <<<"$(cluster_ranges | sed 's/.*://' | sort -un | tr '\n' ' ')"
    [[ ${#CLUSTER_MASTERS[@]} == 3 ]] || fail "expected 3 redis cluster masters, found: ${CLUSTER_MASTERS[*]}"
    CLUSTER_REPLICAS=()
    for port in "${CLUSTER_PORTS[@]}"; do
        [[ " ${CLUSTER_MASTERS[*]} " == *" $port "* ]] || CLUSTER_REPLICAS+=("$port")
    done
    say "redis cluster on 127.0.0.1: masters ${CLUSTER_MASTERS[*]}, replicas ${CLUSTER_REPLICAS[*]}, seed $CLUSTER_PORT; ready in $(elapsed "$t0") s"
}

# seed_cluster: bench/seed.awk's commands (the same N customers and catalog
# as the single Redis), split by hash slot into one file per master
# (bench/cluster-split.pl) and fed to each master with redis-cli --pipe;
# checks every master's key count, then waits (up to 10 s) for the replicas.
seed_cluster() {
    local t0 t1 t2 port count keys total=0 counts=""
    t0=$(now)
    # shellcheck disable=SC2046
    awk -v n="$N" -f "$BENCH/seed.awk" |
        perl "$BENCH/cluster-split.pl" "$WORK/cluster" $(cluster_ranges) \
            >"$WORK/cluster/split.txt" 2>"$WORK/cluster/split.log" ||
        { cat "$WORK/cluster/split.log" >&2; fail "splitting the seed by hash slot failed"; }
    t1=$(now)
    declare -A feed=()
    while read -r port count; do                    # the three masters at once
        redis-cli -p "$port" --pipe <"$WORK/cluster/$port.resp" >"$WORK/cluster/seed-$port.log" 2>&1 &
        feed[$port]=$!
    done <"$WORK/cluster/split.txt"
    while read -r port count; do
        wait "${feed[$port]}" ||
            { cat "$WORK/cluster/seed-$port.log" >&2; fail "loading customers into redis cluster master $port failed"; }
        keys=$(redis-cli -p "$port" dbsize)
        [[ $keys == "$count" ]] || fail "redis cluster master $port holds $keys keys, expected $count"
        total=$((total + keys)) counts+=" $port:$keys"
    done <"$WORK/cluster/split.txt"
    [[ $total == $((N + 1)) ]] || fail "the redis cluster's masters hold $total keys, expected $((N + 1))"
    t2=$(now)
    for _ in $(seq 1 100); do
        total=0
        for port in "${CLUSTER_REPLICAS[@]}"; do total=$((total + $(node_keys "$port"))); done
        [[ $total == $((N + 1)) ]] && break
        sleep 0.1
    done
    [[ $total == $((N + 1)) ]] || say "WARNING: the redis cluster's replicas hold $total keys after 10 s, expected $((N + 1))"
    say "redis cluster: $N customers and the catalog loaded in $(elapsed "$t0") s (keys per master:$counts;" \
        "split $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s, loaded $(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.1f", b - a }') s, replicas in sync after $(elapsed "$t2") s)"
}

REDIS_MAJOR=$(redis-server --version | sed -n 's/.* v=\([0-9]*\)\..*/\1/p')
: "${REDIS_MAJOR:=0}"
if [[ $need_cluster == 1 ]]; then
    start_cluster
    seed_cluster
fi

# ---------------------------------------------------------------- nginx

# start_nginx NAME SITE CPU: render SITE for instance NAME and start it.
start_nginx() {
    local name=$1 site=$2 cpu=$3 dir=$WORK/nginx-$1 port mods="" m i
    pick_port port
    mkdir -p "$dir"
    for m in $(conf_meta "$site" modules); do
        case $m in
            lua) mods+="load_module $NGINX_MODULES/ndk_http_module.so; load_module $NGINX_MODULES/ngx_http_lua_module.so; " ;;
            loyalty) mods+="load_module $WORK/modules/ngx_http_loyalty_module.so; " ;;
        esac
    done
    fill "$BENCH/conf/nginx.conf.tmpl" "$dir/nginx.conf" "DIR=$dir" "LOAD_MODULES=$mods"
    fill "$site" "$dir/site.conf" "PORT=$port" "STORE_PORT=${PORT[storefront]:-0}" \
        "REDIS_PORT=${REDIS_PORT:-0}" "CLUSTER_PORT=${CLUSTER_PORT:-0}" "REDIS_TIMEOUT_MS=$REDIS_TIMEOUT_MS" \
        "HTML_DIR=$WORK/html" "LUA_DIR=$WORK/lua"
    "$NGINX" -t -q -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/test.log" 2>&1 ||
        { cat "$dir/test.log" >&2; fail "nginx -t failed for $name ($site)"; }
    spawn "$cpu" "$NGINX" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/stdout.log" 2>&1
    MASTER[$name]=$SPAWNED
    for i in $(seq 1 200); do
        port_open "$port" && break
        alive "${MASTER[$name]}" || break
        sleep 0.05
    done
    port_open "$port" || { tail -5 "$dir/error.log" >&2; fail "nginx $name did not start"; }
    for i in $(seq 1 100); do
        WORKER[$name]=$(child_of "${MASTER[$name]}")
        [[ -n ${WORKER[$name]} ]] && break
        sleep 0.05
    done
    [[ -n ${WORKER[$name]} ]] || fail "nginx $name has no worker process"
    PORT[$name]=$port
    say "nginx $name on 127.0.0.1:$port ($(tr -d '\0' <"/proc/${WORKER[$name]}/cmdline" 2>/dev/null) pid ${WORKER[$name]})"
}

start_nginx storefront "$BENCH/conf/storefront.conf.tmpl" "$LOAD_CPU"
for c in "${RUN_CONFIGS[@]}"; do
    start_nginx "$c" "$BENCH/conf/$c.conf" "$FRONT_CPU"
done

# ---------------------------------------------------------------- verify

KNOWN=$(( N >= 42 ? 42 : 1 )) UNKNOWN=$((N + 1))
# rhget KEY FIELD: from the single Redis or, when no configuration uses it,
# from the cluster (the same data)
rhget() {
    if [[ -n $REDIS_PORT ]]; then
        redis-cli -p "$REDIS_PORT" hget "$1" "$2"
    else
        redis-cli -c -p "$CLUSTER_PORT" hget "$1" "$2"
    fi
}
TIER=$(rhget "loyalty:customer:$KNOWN" tier)
POINTS=$(rhget "loyalty:customer:$KNOWN" points)
OFFERS=$(rhget "loyalty:customer:$KNOWN" offers)
CATALOG_OFFER=free-returns       # bench/seed.awk's catalog offer without conditions
# two customers the cookie traffic never asks for (bench/wrk/customers.lua's
# ids, drawn the same way: MINSTD from SEED, exact in doubles), one for each
# "personalizes again" check: no cache can hold a record for them, so only
# Redis can personalize them (the known customer may be served stale)
read -r PROBE1 PROBE2 <<<"$(awk -v n="$N" -v k="$IDS" -v seed="$SEED" -v known="$KNOWN" 'BEGIN {
    if (k > n) k = n
    s = seed % 2147483647; if (s == 0) s = 1
    while (c < k) { s = (s * 48271) % 2147483647; id = s % n + 1; if (!(id in seen)) { seen[id] = 1; c++ } }
    for (id = n; id >= 1 && got < 2; id--) if (!(id in seen) && id != known) { printf "%d ", id; got++ } }')"
: "${PROBE1:=$KNOWN}" "${PROBE2:=$KNOWN}"
PROBE1_TIER=$(rhget "loyalty:customer:$PROBE1" tier)
PROBE2_TIER=$(rhget "loyalty:customer:$PROBE2" tier)
PAGE=$WORK/html/index.html
V=$WORK/verify
mkdir -p "$V"

FAILED=0
ok() { # ok DESCRIPTION TEST...: on failure, TEST's stderr is shown
    local d=$1 why
    shift
    if why=$("$@" 2>&1 >/dev/null); then
        printf '  ok    %s\n' "$d"
    else
        printf '  FAIL  %s\n' "$d"
        [[ -n $why ]] && printf '        %s\n' "${why:0:600}"
        FAILED=$((FAILED + 1))
    fi
}
eq() { [[ $1 == "$2" ]]; }

# get TAG CFG PATH [curl args]: headers to $V/TAG.h, body to $V/TAG.b
get() {
    local tag=$1 cfg=$2 path=$3
    shift 3
    curl -s --max-time 5 -D "$V/$tag.h" -o "$V/$tag.b" "$@" "http://127.0.0.1:${PORT[$cfg]}$path" || true
    touch "$V/$tag.h" "$V/$tag.b"
}

# injected BODY CHECK...: BODY is the page with one
# <script type="application/json" id="loyalty-data"> element right before
# </head>, the rest byte for byte; its JSON parses and passes every CHECK
# (see bench/inject_check.py).
injected() {
    local body=$1
    shift
    python3 "$BENCH/inject_check.py" "$PAGE" "$body" "$@"
}

# with_module CFG: the configuration loads ngx_http_loyalty_module.
with_module() { [[ " $(conf_meta "$BENCH/conf/$1.conf" modules) " == *" loyalty "* ]]; }

# await_catalog CFG: wait (up to 5 s) until the module's fragment lists the
# catalog offer: each worker fetches the catalog once it has started.
await_catalog() {
    local _
    for _ in $(seq 1 50); do
        curl -s --max-time 2 -H "Cookie: loyalty_id=$KNOWN" "http://127.0.0.1:${PORT[$1]}/" 2>/dev/null |
            grep -q "\"id\":\"$CATALOG_OFFER\"" && return 0
        sleep 0.1
    done
    return 1
}

# await_slot_map CFG: wait (up to 5 s) until CFG personalizes the known
# customer: a cluster configuration's worker loads the slot map once it has
# started, and fails lookups open until then.
await_slot_map() {
    local _
    for _ in $(seq 1 50); do
        curl -s --max-time 2 -o /dev/null -D "$V/$1-map.h" -H "Cookie: loyalty_id=$KNOWN" \
            "http://127.0.0.1:${PORT[$1]}/" 2>/dev/null || true
        touch "$V/$1-map.h"
        [[ $(header "$V/$1-map.h" X-Loyalty-Tier) == "$TIER" ]] && return 0
        sleep 0.1
    done
    return 1
}

# routed CFG: one request of the known customer makes the master of the
# key's hash slot execute an HMGET, and no other cluster node
routed() {
    local slot owner p d moved=""
    declare -A before=()
    slot=$(redis-cli -p "$CLUSTER_PORT" cluster keyslot "loyalty:customer:$KNOWN")
    owner=$(cluster_ranges | awk -F'[-:]' -v s="$slot" '$1 <= s && s <= $2 { print $3; exit }')
    for p in "${CLUSTER_PORTS[@]}"; do before[$p]=$(hmget_calls "$p"); done
    curl -s --max-time 2 -o /dev/null -H "Cookie: loyalty_id=$KNOWN" "http://127.0.0.1:${PORT[$1]}/" || true
    for p in "${CLUSTER_PORTS[@]}"; do
        d=$(( $(hmget_calls "$p") - before[$p] ))
        if [[ $p == "$owner" ]]; then
            [[ $d -ge 1 ]] || moved+=" no HMGET on the owner $p (slot $slot);"
        else
            [[ $d == 0 ]] || moved+=" $d HMGET(s) on $p, not the owner $owner (slot $slot);"
        fi
    done
    [[ -z $moved ]] || { echo "$moved" >&2; return 1; }
}

verify() {
    local c kind u="loyalty_id=$KNOWN"
    echo "customer $KNOWN: tier=$TIER points=$POINTS (redis$([[ -n $REDIS_PORT ]] || echo " cluster")); unknown id: $UNKNOWN"
    for c in "${RUN_CONFIGS[@]}"; do
        kind=$(verify_kind "$c")
        echo "[$c] ($kind checks)"
        if uses_cluster "$c"; then
            ok "the redis cluster holds customer $KNOWN's tier and points (redis-cli -c)" \
                eq "$(redis-cli -c -p "$CLUSTER_PORT" hget "loyalty:customer:$KNOWN" tier)/$(redis-cli -c -p "$CLUSTER_PORT" hget "loyalty:customer:$KNOWN" points)" "$TIER/$POINTS"
            ok "the worker has loaded the cluster's slot map (personalizes within 5 s)" await_slot_map "$c"
            ok "customer: the HMGET went to the master of the key's slot, no other node" routed "$c"
        fi
        if [[ $kind == inject ]] && with_module "$c"; then
            ok "the worker has fetched the offer catalog (within 5 s)" await_catalog "$c"
        fi
        get "$c-anon" "$c" / -H "Cookie: cart=3"
        get "$c-known" "$c" / -H "Cookie: cart=3; $u"
        ok "anonymous: 200" eq "$(status_of "$V/$c-anon.h")" 200
        ok "customer: 200" eq "$(status_of "$V/$c-known.h")" 200
        [[ $kind == none ]] && continue
        if [[ $kind == inject ]]; then
            ok "anonymous: the page with {\"status\":\"anonymous\"} in one loyalty-data element before </head>" \
                injected "$V/$c-anon.b" 'exact={"status":"anonymous"}'
            ok "anonymous: Cache-Control: private" eq "$(header "$V/$c-anon.h" Cache-Control)" private
        else
            ok "anonymous: body is the page" cmp -s "$V/$c-anon.b" "$PAGE"
        fi
        ok "anonymous: no X-Loyalty-Tier response header" eq "$(header "$V/$c-anon.h" X-Loyalty-Tier)" ""
        if [[ $kind == plain ]]; then
            ok "customer: body is the page" cmp -s "$V/$c-known.b" "$PAGE"
            ok "customer: no X-Loyalty-Tier response header" eq "$(header "$V/$c-known.h" X-Loyalty-Tier)" ""
            continue
        fi
        ok "customer: response X-Loyalty-Tier = $TIER" eq "$(header "$V/$c-known.h" X-Loyalty-Tier)" "$TIER"
        ok "customer: response X-Loyalty-Points = $POINTS" eq "$(header "$V/$c-known.h" X-Loyalty-Points)" "$POINTS"
        if [[ $kind == inject ]]; then
            ok "customer: the page with one loyalty-data element before </head>, JSON status ok, tier $TIER, points $POINTS, the record's offers first" \
                injected "$V/$c-known.b" status=ok "tier=$TIER" "points=$POINTS" "offers-start=$OFFERS"
            injected "$V/$c-known.b" >"$RES/raw/$c-fragment.json" 2>/dev/null || true
            if with_module "$c"; then
                ok "customer: the fragment has the ladder (label, progress) and the catalog offer $CATALOG_OFFER" \
                    injected "$V/$c-known.b" has=label has=progress "offer=$CATALOG_OFFER"
            fi
            ok "customer: Cache-Control: private" eq "$(header "$V/$c-known.h" Cache-Control)" private
            ok "customer: no Content-Length" eq "$(header "$V/$c-known.h" Content-Length)" ""
        else
            ok "customer: body is the page" cmp -s "$V/$c-known.b" "$PAGE"
        fi
        get "$c-echo" "$c" /echo-headers -H "Cookie: $u"
        ok "customer: storefront got X-Loyalty-Tier = $TIER" eq "$(echo_field "$V/$c-echo.b" tier)" "$TIER"
        ok "customer: storefront got X-Loyalty-Points = $POINTS" eq "$(echo_field "$V/$c-echo.b" points)" "$POINTS"
        ok "customer: storefront got X-Loyalty-Status = ok" eq "$(echo_field "$V/$c-echo.b" status)" ok
        get "$c-spoof" "$c" /echo-headers -H "X-Loyalty-Tier: diamond" -H "X-Loyalty-Points: 999999" -H "X-Loyalty-Status: ok"
        ok "spoofed X-Loyalty-* without cookie: stripped before the storefront" \
            eq "$(echo_field "$V/$c-spoof.b" tier)/$(echo_field "$V/$c-spoof.b" points)" "/"
        get "$c-spoof2" "$c" /echo-headers -H "Cookie: $u" -H "X-Loyalty-Tier: diamond"
        ok "spoofed X-Loyalty-Tier with cookie: storefront got $TIER" eq "$(echo_field "$V/$c-spoof2.b" tier)" "$TIER"
        get "$c-unknown" "$c" / -H "Cookie: loyalty_id=$UNKNOWN"
        get "$c-unknown-echo" "$c" /echo-headers -H "Cookie: loyalty_id=$UNKNOWN"
        ok "unknown id: 200" eq "$(status_of "$V/$c-unknown.h")" 200
        ok "unknown id: no X-Loyalty-Tier response header" eq "$(header "$V/$c-unknown.h" X-Loyalty-Tier)" ""
        if [[ $kind == inject ]]; then
            ok "unknown id: the page with {\"status\":\"unknown\"} before </head>" \
                injected "$V/$c-unknown.b" 'exact={"status":"unknown"}'
        else
            ok "unknown id: body is the page" cmp -s "$V/$c-unknown.b" "$PAGE"
        fi
        ok "unknown id: storefront got no tier, status unknown" \
            eq "$(echo_field "$V/$c-unknown-echo.b" tier)/$(echo_field "$V/$c-unknown-echo.b" status)" "/unknown"
        get "$c-invalid" "$c" / -H "Cookie: loyalty_id=12.5"
        ok "invalid id: 200 without X-Loyalty-Tier" \
            eq "$(status_of "$V/$c-invalid.h")/$(header "$V/$c-invalid.h" X-Loyalty-Tier)" "200/"
        if [[ $kind == inject ]]; then
            ok "invalid id: the page with {\"status\":\"invalid\"} before </head>" \
                injected "$V/$c-invalid.b" 'exact={"status":"invalid"}'
        fi
    done
    for c in "${RUN_CONFIGS[@]}"; do
        ok "[$c] worker still running, no crash in error.log" \
            bash -c "kill -0 ${WORKER[$c]} && ! grep -q 'exited on signal' '$WORK/nginx-$c/error.log'"
    done
}

say "verifying ${RUN_CONFIGS[*]} with curl"
verify | tee "$RES/verify.txt" >&2
FAILED=$(grep -c '^  FAIL' "$RES/verify.txt" || true)
if [[ $FAILED -gt 0 ]]; then
    for c in "${RUN_CONFIGS[@]}"; do
        [[ -s $WORK/nginx-$c/error.log ]] && { echo "--- $c error.log (last lines)"; tail -5 "$WORK/nginx-$c/error.log"; } >&2
    done
    fail "$FAILED verification check(s) failed: not measuring"
fi
say "all verification checks passed"
[[ $VERIFY_ONLY == 1 ]] && exit 0

# ---------------------------------------------------------------- measuring

# wrk_run CFG TRAFFIC SECONDS RAW [count]: one wrk run on the load CPU, in the
# background so that Ctrl-C and TERM are handled at once.
wrk_run() {
    local cfg=$1 tr=$2 secs=$3 raw=$4 count=${5:-} script args
    if [[ $tr == cookie ]]; then
        script=$BENCH/wrk/customers.lua args=("$N" "$IDS" "$SEED")
    else
        script=$BENCH/wrk/anon.lua args=()
    fi
    [[ -n $count ]] && args+=(count)
    spawn "$LOAD_CPU" wrk -t"$THREADS" -c"$CONNS" -d"${secs}s" --timeout 5s --latency \
        -s "$script" "http://127.0.0.1:${PORT[$cfg]}/" -- "${args[@]}" >"$raw" 2>&1
    WRK_PID=$SPAWNED
    wait "$WRK_PID" || true
    WRK_PID=""
}

# bench_field RAW KEY: a field of wrk's BENCH line.
bench_field() { sed -n "s/^BENCH.* $2=\([^ ]*\).*/\1/p" "$1"; }

TOTAL_RUNS=$(( ROUNDS * $(wc -w <<<"$TRAFFIC") * ${#MEASURE_CONFIGS[@]} ))
RUNS_DONE=0
RUN_COST=$(( WARMUP + DURATION + 2 ))

# cache_ttl CFG: the ttl= of the site file's loyalty_cache_zone, in whole
# seconds rounded up (default 5 s)
cache_ttl() {
    sed -n 's/^[[:space:]]*loyalty_cache_zone[^;]*[[:space:]]ttl=\([0-9]*\)\(m\{0,1\}s\{0,1\}\).*/\1 \2/p' \
        "$BENCH/conf/$1.conf" | awk '{ t = $1; if ($2 == "ms") t = int((t + 999) / 1000); else if ($2 == "m") t *= 60
                                       print t; f = 1 } END { if (!f) print 5 }' | head -1
}

# Redis-down runs: every configuration with headers or inject checks, those
# with a cache to fill ("#@ down fill") last: their runs start once the
# filled entries are past their ttl, so what they show is stale serving;
# with Redis hung, plain (when it runs) is measured just before them as the
# reference of module-breaker's target (like the "#@ down warmup" ones)
# A cluster configuration ("#@ redis cluster") is left out: these runs stop
# the single Redis, which it does not use, and stopping one node of the
# cluster would be another experiment (failover; t/18-cluster.t covers it).
DOWN_CONFIGS=() DOWN_ORDER=() FILL_CONFIGS=() NO_DOWN=""
for c in "${RUN_CONFIGS[@]}"; do
    if uses_cluster "$c"; then
        [[ $(conf_meta "$BENCH/conf/$c.conf" measure) == down ]] ||
            case $(verify_kind "$c") in headers|inject) NO_DOWN+=" $c" ;; esac
        continue
    fi
    case $(verify_kind "$c") in headers|inject) DOWN_CONFIGS+=("$c") ;; esac
done
for c in ${DOWN_CONFIGS[@]+"${DOWN_CONFIGS[@]}"}; do
    if has_meta "$c" down fill; then FILL_CONFIGS+=("$c"); else DOWN_ORDER+=("$c"); fi
done
HUNG_PLAIN=""
[[ ${#DOWN_CONFIGS[@]} -gt 0 && -n ${PORT[plain]:-} && $(verify_kind plain) == plain ]] && HUNG_PLAIN=plain
DOWN_COST=0
if [[ $DOWN == 1 && ${#DOWN_CONFIGS[@]} -gt 0 ]]; then
    for c in "${DOWN_CONFIGS[@]}"; do
        DOWN_COST=$(( DOWN_COST + 2 * DOWN_DURATION + 3 ))
        has_meta "$c" down warmup && DOWN_COST=$(( DOWN_COST + 2 * WARMUP ))
    done
    for c in ${FILL_CONFIGS[@]+"${FILL_CONFIGS[@]}"}; do      # fill, and at most a ttl's wait
        DOWN_COST=$(( DOWN_COST + 2 * (WARMUP + 1 + $(cache_ttl "$c") + 1) ))
    done
    [[ -n $HUNG_PLAIN ]] && DOWN_COST=$(( DOWN_COST + WARMUP + DOWN_DURATION + 2 ))
    [[ -n $HUNG_PLAIN && -n ${PORT[module-breaker]:-} ]] \
        && DOWN_COST=$(( DOWN_COST + HUNG_ROUNDS * 2 * (DOWN_DURATION + 1) ))
fi

# spare: seconds of the budget not needed by the runs still to do.
spare() {
    awk -v s="$START" -v t="$(now)" -v b="$BUDGET" \
        -v need=$(( (TOTAL_RUNS - RUNS_DONE) * RUN_COST + DOWN_COST + 5 )) \
        'BEGIN { x = b - (t - s) - need; if (x < 0) x = 0; printf "%d", x }'
}

# quiet: wait, within QUIET_WAIT and the budget, for the machine to calm down.
QUIET_SKIPS=0
quiet() {
    local limit busy waited=0
    limit=$(spare)
    [[ $limit -gt $QUIET_WAIT ]] && limit=$QUIET_WAIT
    while :; do
        busy=$(machine_busy 0.5)
        [[ $busy -le $QUIET_PCT ]] && return 0
        if [[ $waited -ge $limit ]]; then
            QUIET_SKIPS=$((QUIET_SKIPS + 1))
            say "  machine still busy (${busy}% of a core) after ${waited}s: measuring anyway"
            return 0
        fi
        [[ $waited == 0 ]] && say "  machine busy (${busy}% of a core): waiting up to ${limit}s"
        sleep 1.5
        waited=$((waited + 2))
    done
}

printf 'round\tseq\tconfig\ttraffic\trps\tp50_us\tp99_us\trequests\terrors\tfront_cpu_pct\tfront_us_per_req\tcpu0_pct\tcpu1_pct\tforeign_pct\tattempts\tnote\tcpu0_steal_pct\n' >"$RES/runs.tsv"

# measure ROUND SEQ CFG TRAFFIC: warm-up plus one measured run -> runs.tsv
measure() {
    local r=$1 seq=$2 cfg=$3 tr=$4 raw=$RES/raw/r$1-$3-$4.txt attempt row foreign note
    local w0 w1 c0 c1 t0 t1 steal why
    for attempt in 1 2; do
        quiet
        wrk_run "$cfg" "$tr" "$WARMUP" "$WORK/warmup.txt"
        foreign_ticks "$WORK/f0"
        read -r -a c0 <<<"$(cpu_line)"
        w0=$(proc_ticks "${WORKER[$cfg]}")
        t0=$(now)
        wrk_run "$cfg" "$tr" "$DURATION" "$raw"
        t1=$(now)
        w1=$(proc_ticks "${WORKER[$cfg]}")
        read -r -a c1 <<<"$(cpu_line)"
        foreign_ticks "$WORK/f1"
        grep -q '^BENCH ' "$raw" || { cat "$raw" >&2; fail "wrk gave no result for $cfg/$tr"; }
        note=""
        if [[ -z $w1 || -z $w0 ]]; then
            note="worker-died"
            w1=${w0:-0} w0=${w0:-0}
            say "  WARNING: the $cfg worker died during the run (see error.log)"
            WORKER[$cfg]=$(child_of "${MASTER[$cfg]}")
        fi
        foreign=$(awk -v d="$(foreign_delta "$WORK/f0" "$WORK/f1")" -v hz="$HZ" -v t0="$t0" -v t1="$t1" \
            -v cpus="$(nproc)" 'BEGIN { p = 100 * d / hz / (t1 - t0); if (p > 100 * cpus) p = 100 * cpus
                                   printf "%.1f", p }')
        steal=$(awk -v s=$(( c1[5] - c0[5] )) -v a=$(( c1[2] - c0[2] )) 'BEGIN { printf "%.1f", a ? 100 * s / a : 0 }')
        why=""
        awk -v f="$foreign" -v m="$NOISE_PCT" 'BEGIN { exit !(f > m) }' &&
            why="other processes used ${foreign}% of a core" note=${note:+$note,}noisy
        awk -v s="$steal" -v m="$STEAL_PCT" 'BEGIN { exit !(s > m) }' &&
            why="${why:+$why, }the hypervisor took ${steal}% of CPU 0" note=${note:+$note,}steal
        if [[ -n $why && $attempt == 1 && $(spare) -ge $RUN_COST ]]; then
            say "  $cfg/$tr: $why during the run: measuring again"
            continue
        fi
        break
    done
    row=$(awk -v r="$r" -v q="$seq" -v c="$cfg" -v t="$tr" -v hz="$HZ" -v t0="$t0" -v t1="$t1" \
        -v w=$(( w1 - w0 )) -v b0="$(( c1[1] - c0[1] ))" -v a0="$(( c1[2] - c0[2] ))" \
        -v b1="$(( c1[3] - c0[3] ))" -v a1="$(( c1[4] - c0[4] ))" -v fo="$foreign" \
        -v rps="$(bench_field "$raw" rps)" -v p50="$(bench_field "$raw" p50_us)" \
        -v p99="$(bench_field "$raw" p99_us)" -v n="$(bench_field "$raw" requests)" \
        -v e="$(( $(bench_field "$raw" err_connect) + $(bench_field "$raw" err_read) + $(bench_field "$raw" err_write) + $(bench_field "$raw" err_timeout) + $(bench_field "$raw" err_status) ))" \
        -v att="$attempt" -v note="${note:--}" -v s0="$(( c1[5] - c0[5] ))" \
        'BEGIN { secs = t1 - t0; cpu = w / hz
                 printf "%s\t%s\t%s\t%s\t%.1f\t%d\t%d\t%d\t%d\t%.1f\t%.2f\t%.1f\t%.1f\t%s\t%s\t%s\t%.1f\n",
                        r, q, c, t, rps, p50, p99, n, e, 100 * cpu / secs, n ? cpu * 1e6 / n : 0,
                        a0 ? 100 * b0 / a0 : 0, a1 ? 100 * b1 / a1 : 0, fo, att, note, a0 ? 100 * s0 / a0 : 0 }')
    printf '%s\n' "$row" >>"$RES/runs.tsv"
    RUNS_DONE=$((RUNS_DONE + 1))
    awk -F'\t' -v k="$RUNS_DONE/$TOTAL_RUNS" '{ printf "  [%s] round %s %-15s %-6s %7.0f req/s  p50 %5.2f ms  p99 %5.2f ms  err %d  front %5.1f%% %6.2f us/req  cpu0 %3.0f%% cpu1 %3.0f%%  steal %s%%  others %s%%%s\n",
        k, $1, $3, $4, $5, $6 / 1000, $7 / 1000, $9, $10, $11, $12, $13, $17, $14, ($16 == "-" ? "" : "  (" $16 ")") }' <<<"$row" >&2
}

say "measuring: $ROUNDS round(s) x ${DURATION}s per configuration and traffic kind (+${WARMUP}s warm-up each)"
[[ -n $DOWN_ONLY ]] && say "not in the rounds (Redis-down runs only):$DOWN_ONLY"
n_cfg=${#MEASURE_CONFIGS[@]}
seq_no=0
for r in $(seq 1 "$ROUNDS"); do
    for tr in $TRAFFIC; do
        for k in $(seq 0 $((n_cfg - 1))); do           # order rotates every round
            seq_no=$((seq_no + 1))
            measure "$r" "$seq_no" "${MEASURE_CONFIGS[$(( (k + r - 1) % n_cfg ))]}" "$tr"
        done
    done
done

# ---------------------------------------------------------------- redis down

# personalized CFG ID TIER: one request of customer ID gets X-Loyalty-Tier TIER.
personalized() {
    curl -s --max-time 2 -o /dev/null -D "$WORK/p.h" -H "Cookie: loyalty_id=$2" \
        "http://127.0.0.1:${PORT[$1]}/" || true
    [[ $(header "$WORK/p.h" X-Loyalty-Tier) == "$3" ]]
}

# resumes CFG ID TIER: how long until CFG personalizes customer ID again (up
# to 10 s); ID is one the traffic never asks for (PROBE1, PROBE2), so a
# cached record cannot answer for Redis.
resumes() {
    local t0
    t0=$(now)
    while ! personalized "$1" "$2" "$3"; do
        if awk -v a="$t0" -v b="$(now)" 'BEGIN { exit !(b - a > 10) }'; then
            echo "NO (not within 10 s)"
            return
        fi
        sleep 0.1
    done
    echo "yes, after $(elapsed "$t0") s"
}

# fill_caches WHEN: a WARMUP-second cookie run against each "#@ down fill"
# configuration while Redis still answers, so that its cache holds the
# traffic's customers when Redis goes down (stale entries are served for
# loyalty_cache_stale after their ttl).
declare -A FILLED_AT=()
fill_caches() {
    local c
    for c in ${FILL_CONFIGS[@]+"${FILL_CONFIGS[@]}"}; do
        say "  filling the cache of $c ($WARMUP s of cookie traffic) before Redis is $1"
        wrk_run "$c" cookie "$WARMUP" "$WORK/fill.txt"
        FILLED_AT[$c]=$(now)
    done
}

# down_run STATE CFG [warmup]: one curl, then (with warmup, or when the site
# file says "#@ down warmup") a WARMUP-second wrk run, then one measured wrk
# run (cookie traffic, DOWN_DURATION s) -> down.tsv
# hung_rounds: with Redis hung, HUNG_ROUNDS more pairs of module-breaker and
# plain runs in alternating order (-> hung-rounds.tsv), so that the breaker
# target compares medians of paired runs, not two single runs
hung_rounds() {
    local r cfg order raw
    [[ -n $HUNG_PLAIN && -n ${PORT[module-breaker]:-} ]] || return 0
    printf 'round\tconfig\trps\tp99_us\n' >"$RES/hung-rounds.tsv"
    for (( r = 1; r <= HUNG_ROUNDS; r++ )); do
        if (( r % 2 )); then order="module-breaker plain"; else order="plain module-breaker"; fi
        for cfg in $order; do
            raw=$RES/raw/hung-round-$r-$cfg.txt
            wrk_run "$cfg" cookie "$DOWN_DURATION" "$raw"
            printf '%s\t%s\t%s\t%s\n' "$r" "$cfg" "$(bench_field "$raw" rps)" \
                "$(bench_field "$raw" p99_us)" >>"$RES/hung-rounds.tsv"
            awk -F'\t' 'END { printf "  redis hung, round %s %-15s %7.0f req/s  p99 %6.2f ms\n", $1, $2, $3, $4 / 1000 }' \
                "$RES/hung-rounds.tsv" >&2
        done
    done
}


down_run() {
    local state=$1 cfg=$2 raw=$RES/raw/down-$1-$2.txt log=$WORK/nginx-$2/error.log curl_out l0 l1 statuses
    local prep=- wait_s
    if [[ -n ${FILLED_AT[$cfg]:-} ]]; then
        # entries past their ttl: stale serving, not fresh hits
        wait_s=$(awk -v a="${FILLED_AT[$cfg]}" -v b="$(now)" -v t="$(cache_ttl "$cfg")" \
            'BEGIN { w = a + t + 1 - b; printf "%.1f", (w > 0 ? w : 0) }')
        [[ $wait_s != 0.0 ]] && sleep "$wait_s"
        prep="cache filled $(awk -v a="${FILLED_AT[$cfg]}" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }') s before (ttl $(cache_ttl "$cfg") s)"
    fi
    curl_out=$(curl -s --max-time 5 -o /dev/null -D "$WORK/d.h" -w '%{http_code} %{time_total}' \
        -H "Cookie: loyalty_id=$KNOWN" "http://127.0.0.1:${PORT[$cfg]}/") || true
    [[ $curl_out == *" "* ]] || curl_out="000 0"
    if [[ ${3:-} == warmup ]] || has_meta "$cfg" down warmup; then
        wrk_run "$cfg" cookie "$WARMUP" "$WORK/warmup.txt"
        prep="${WARMUP} s warm-up"
    fi
    l0=$(wc -l <"$log")
    wrk_run "$cfg" cookie "$DOWN_DURATION" "$raw" count
    l1=$(wc -l <"$log")
    grep -q '^BENCH ' "$raw" || { cat "$raw" >&2; fail "wrk gave no result for $cfg with redis $state"; }
    statuses=$(bench_field "$raw" statuses)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$state" "$cfg" \
        "$(bench_field "$raw" rps)" "$(bench_field "$raw" p50_us)" "$(bench_field "$raw" p99_us)" \
        "$statuses" \
        "$(tr ',' '\n' <<<"$statuses" | awk -F: '$1 >= 500 { s += $2 } END { print s + 0 }')" \
        "$(bench_field "$raw" personalized)" "$(bench_field "$raw" requests)" \
        "$(( $(bench_field "$raw" err_connect) + $(bench_field "$raw" err_read) + $(bench_field "$raw" err_write) + $(bench_field "$raw" err_timeout) ))" \
        "${curl_out% *} in $(awk -v t="${curl_out#* }" 'BEGIN { printf "%.0f ms", t * 1000 }'), $([[ -n $(header "$WORK/d.h" X-Loyalty-Tier) ]] && echo personalized || echo not personalized)" \
        "$((l1 - l0))" "$prep" >>"$RES/down.tsv"
    awk -F'\t' '{ printf "  redis %-7s %-15s %7.0f req/s  p50 %6.2f ms  p99 %6.2f ms  statuses %s  personalized %s\n", $1, $2, $3, $4 / 1000, $5 / 1000, $6, $8 }' \
        <(tail -1 "$RES/down.tsv") >&2
}

[[ $DOWN == 1 && -n $NO_DOWN ]] && say "not in the Redis-down runs (they use the redis cluster):$NO_DOWN"
if [[ $DOWN == 1 && ${#DOWN_CONFIGS[@]} -gt 0 ]]; then
    printf 'state\tconfig\trps\tp50_us\tp99_us\tstatuses\tstatus_5xx\tpersonalized\trequests\tsocket_errors\tcurl\terror_log_lines\tprep\n' >"$RES/down.tsv"
    : >"$RES/down-resume.txt"
    fill_caches hung
    say "redis hung (SIGSTOP): lookups should time out after ${REDIS_TIMEOUT_MS} ms"
    kill -STOP "$REDIS_PID"
    for c in ${DOWN_ORDER[@]+"${DOWN_ORDER[@]}"}; do down_run hung "$c"; done
    [[ -n $HUNG_PLAIN ]] && down_run hung plain warmup
    hung_rounds
    for c in ${FILL_CONFIGS[@]+"${FILL_CONFIGS[@]}"}; do down_run hung "$c"; done
    kill -CONT "$REDIS_PID"
    for c in "${DOWN_CONFIGS[@]}"; do
        echo "after SIGCONT, $c personalizes again: $(resumes "$c" "$PROBE1" "$PROBE1_TIER")" >>"$RES/down-resume.txt"
    done
    fill_caches killed
    say "redis killed (SIGKILL): connections refused"
    kill -KILL "$REDIS_PID"
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=""
    await_port_closed "$REDIS_PORT" 5 || fail "redis port still open after SIGKILL"
    for c in ${DOWN_ORDER[@]+"${DOWN_ORDER[@]}"} ${FILL_CONFIGS[@]+"${FILL_CONFIGS[@]}"}; do down_run refused "$c"; done
    start_redis "$REDIS_PORT"
    seed_redis
    for c in "${DOWN_CONFIGS[@]}"; do
        echo "after a redis restart, $c personalizes again: $(resumes "$c" "$PROBE2" "$PROBE2_TIER")" >>"$RES/down-resume.txt"
    done
    for c in "${DOWN_CONFIGS[@]}"; do
        if grep -q 'exited on signal' "$WORK/nginx-$c/error.log"; then
            echo "WARNING: a $c worker crashed (error.log: $(grep -m1 'exited on signal' "$WORK/nginx-$c/error.log"))" >>"$RES/down-resume.txt"
        fi
    done
    cat "$RES/down-resume.txt" >&2
fi

# ---------------------------------------------------------------- report

crashes=""
for c in "${RUN_CONFIGS[@]}"; do
    grep -q 'exited on signal' "$WORK/nginx-$c/error.log" && crashes+=" $c"
done
{
    echo "- wall time: $(elapsed "$START") s for bench/run.sh; quiet-wait gave up ${QUIET_SKIPS} time(s)"
    if [[ $need_cluster == 1 ]]; then
        echo "- redis cluster, HMGETs executed per node over the whole run: masters$(for p in "${CLUSTER_MASTERS[@]}"; do printf ' %s: %s,' "$p" "$(hmget_calls "$p")"; done | sed 's/,$//');" \
             "replicas$(for p in "${CLUSTER_REPLICAS[@]}"; do printf ' %s: %s,' "$p" "$(hmget_calls "$p")"; done | sed 's/,$//')"
    fi
    [[ -n $crashes ]] && echo "- WARNING: worker crash(es) in:$crashes (see error.log)"
} >>"$RES/env.md"
MODE=$MODE "$BENCH/report.sh" "$RES" >"$RES/summary.md"
mkdir -p "$BENCH/results"
cp "$RES/summary.md" "$BENCH/results/latest.md"
echo
cat "$RES/summary.md"
echo
say "done in $(elapsed "$START") s; report saved as bench/results/latest.md"
