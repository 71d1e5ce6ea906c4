# shellcheck shell=bash
# Helpers for bench/run.sh (sourced, not run).

say() { printf '%s bench: %s\n' "$(date +%T)" "$*" >&2; }
fail() { say "ERROR: $*"; exit 1; }

# Seconds since the epoch with fractions.
now() { date +%s.%N; }

# fmt_secs START: seconds elapsed since START, one decimal.
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------- ports

# pick_port VAR: a loopback TCP port, below the usual ephemeral range
# (32768+) so no outgoing connection holds it, that no socket on the
# machine uses (any state, per /proc/net/tcp) and this run has not handed
# out yet. The starting point differs per run, so benchmarks started
# together rarely race for one port.
declare -A TAKEN_PORTS=()
pick_port() {
    local p tries used
    used=" $(awk 'FNR > 1 { n = split($2, a, ":"); h = toupper(a[n]); v = 0
                              for (i = 1; i <= length(h); i++) v = v * 16 + index("0123456789ABCDEF", substr(h, i, 1)) - 1
                              printf "%d ", v }' /proc/net/tcp /proc/net/tcp6 2>/dev/null) "
    p=$((21000 + ($$ * 37 + RANDOM) % 8000))
    for tries in $(seq 1 400); do
        p=$((21000 + (p - 21000 + 13) % 8000))
        [[ -n ${TAKEN_PORTS[$p]:-} || $used == *" $p "* ]] && continue
        if ! port_open "$p"; then
            TAKEN_PORTS[$p]=1
            printf -v "$1" '%s' "$p"
            return 0
        fi
    done
    fail "no free loopback port in 21000-28999"
}

# port_open PORT: something accepts connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# await_port PORT [SECONDS]: wait until 127.0.0.1:PORT accepts.
await_port() {
    local deadline
    deadline=$(( $(date +%s) + ${2:-10} ))
    until port_open "$1"; do
        [[ $(date +%s) -lt $deadline ]] || return 1
        sleep 0.05
    done
}

# await_port_closed PORT [SECONDS]
await_port_closed() {
    local deadline
    deadline=$(( $(date +%s) + ${2:-10} ))
    while port_open "$1"; do
        [[ $(date +%s) -lt $deadline ]] || return 1
        sleep 0.05
    done
}

# ---------------------------------------------------------------- templates

# fill SRC DST NAME=VALUE...: copy SRC to DST with every {{NAME}} replaced.
# Fails when a {{...}} placeholder is left over.
fill() {
    local src=$1 dst=$2 pair expr=()
    shift 2
    for pair in "$@"; do
        expr+=(-e "s#{{${pair%%=*}}}#${pair#*=}#g")
    done
    sed "${expr[@]}" "$src" >"$dst"
    if grep -q '{{[A-Z_]*}}' "$dst"; then
        fail "$src: unknown placeholder(s): $(grep -o '{{[A-Z_]*}}' "$dst" | sort -u | tr '\n' ' ')"
    fi
}

# conf_meta FILE KEY: the words after "#@ KEY" in a site file (all such lines).
conf_meta() { sed -n "s/^#@ $2 //p" "$1" | tr '\n' ' ' | sed 's/ *$//'; }

# ---------------------------------------------------------------- pinning

# spawn CPU CMD...: start CMD in the background, pinned to CPU unless CPU is
# empty; its pid (taskset execs CMD, so it is CMD's) goes to SPAWNED.
spawn() {
    local cpu=$1
    shift
    if [[ -n $cpu ]]; then
        taskset -c "$cpu" "$@" &
    else
        "$@" &
    fi
    SPAWNED=$!
}

# child_of PID: the pid of a (live) child process of PID, if any.
child_of() {
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } |
        awk -v p="$1" '{ pid = $1; sub(/^.*\) /, ""); split($0, f, " ")
                         if (f[2] == p && f[1] != "Z") { print pid; exit } }'
}

# alive PID: the process exists and is not a zombie.
alive() {
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    s=${s##*) }
    [[ ${s:0:1} != Z ]]
}

# ---------------------------------------------------------------- CPU accounting

# proc_ticks PID: utime+stime of PID in clock ticks (empty if it is gone).
proc_ticks() {
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    s=${s##*) }                 # drop "pid (comm) ": comm may hold spaces
    # shellcheck disable=SC2086
    set -- $s                   # now $1 = state, $12 = utime, $13 = stime
    echo $(( ${12} + ${13} ))
}

# cpu_line: "busy cpu0_busy cpu0_all cpu1_busy cpu1_all cpu0_steal" in
# ticks from /proc/stat; busy = all but idle, iowait and steal (time the
# hypervisor gave to other guests).
cpu_line() {
    awk '$1 == "cpu" || $1 == "cpu0" || $1 == "cpu1" {
             all = 0; for (i = 2; i <= 9; i++) all += $i   # user .. steal
             b[$1] = all - $5 - $6 - $9; a[$1] = all; st[$1] = $9 }
         END { printf "%d %d %d %d %d %d\n", b["cpu"], b["cpu0"], a["cpu0"], b["cpu1"], a["cpu1"], st["cpu0"] }' /proc/stat
}

# machine_busy SECONDS: CPU used by the whole machine over SECONDS, in % of
# one core.
machine_busy() {
    local a b
    read -r -a a <<<"$(cpu_line)"
    sleep "$1"
    read -r -a b <<<"$(cpu_line)"
    awk -v d=$(( b[0] - a[0] )) -v s="$1" -v hz="$HZ" 'BEGIN { printf "%.0f", 100 * d / hz / s }'
}

# foreign_ticks OUTFILE: "pid:starttime ticks" of every user-space process
# outside this benchmark's process group (other people's compiles and
# tests), ticks including reaped children, so short-lived compilers count
# through their make; the first line is "@ <uptime in ticks>".
foreign_ticks() {
    awk -v hz="$HZ" '{ printf "@ %d\n", $1 * hz; exit }' /proc/uptime >"$1"
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v me="$PGID" '
        { pid = $1; rest = $0; sub(/^.*\) /, "", rest); split(rest, f, " ")
          # f[2] ppid, f[3] pgrp, f[12..15] utime stime cutime cstime, f[20] starttime
          if (pid == 2 || f[2] == 2 || f[3] == me) next
          print pid ":" f[20], f[12] + f[13] + f[14] + f[15] }' >>"$1"
}

# foreign_delta BEFORE AFTER: ticks foreign processes used in between
# (processes that started in between count whole; ones that were not seen
# before for another reason do not count at all).
foreign_delta() {
    awk 'NR == FNR { if ($1 == "@") up = $2; else t[$1] = $2; next }
         $1 == "@" { next }
         { split($1, k, ":")
           if ($1 in t) d = $2 - t[$1]; else if (k[2] + 0 >= up) d = $2; else d = 0
           if (d > 0) s += d }
         END { print s + 0 }' "$1" "$2"
}

# ---------------------------------------------------------------- HTTP checks

# header FILE NAME: value of the first NAME header in a curl -D dump.
header() {
    awk -v n="$(tr 'A-Z' 'a-z' <<<"$2")" '
        { sub(/\r$/, "") }
        index(tolower($0), n ":") == 1 { v = substr($0, length(n) + 2); sub(/^[ \t]*/, "", v); print v; exit }' "$1"
}

# status_of FILE: HTTP status code of a curl -D dump.
status_of() { awk 'NR == 1 { print $2; exit }' "$1"; }

# echo_field FILE NAME: a "name=value" line of the storefront's /echo-headers.
echo_field() { sed -n "s/^$2=//p" "$1"; }
