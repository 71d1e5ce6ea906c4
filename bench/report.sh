#!/usr/bin/env bash
# Markdown report of one benchmark run, from the files bench/run.sh writes
# into its results directory (runs.tsv, env.md, and down.tsv /
# down-resume.txt when the Redis-down runs were made).
#
#   bench/report.sh RESULTS_DIR        (e.g. the OUT=<dir> of a kept run)
set -euo pipefail

dir=${1:?usage: bench/report.sh RESULTS_DIR}
[[ -f $dir/runs.tsv ]] || { echo "no runs.tsv in $dir" >&2; exit 1; }

echo "# ngx_loyalty_module benchmark (${MODE:-full})"
echo
[[ -f $dir/env.md ]] && cat "$dir/env.md"
echo

down=""
[[ -f $dir/down.tsv ]] && down=$dir/down.tsv
hung=""
[[ -f $dir/hung-rounds.tsv ]] && hung=$dir/hung-rounds.tsv

awk -F'\t' -v down="$down" -v hung="$hung" '
function median(list, n,    a, i, j, k, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) {                       # insertion sort
        t = a[i] + 0
        for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]
        a[j + 1] = t
    }
    if (n == 0) return ""
    k = int((n + 1) / 2)
    return (n % 2) ? a[k] + 0 : (a[k] + a[k + 1]) / 2
}
# "lo to hi" of a list, each printed with fmt
function span(list, fmt) {
    minmax(list)
    return sprintf(fmt " to " fmt, MIN, MAX)
}
function minmax(list,    a, n, i, lo, hi) {
    n = split(list, a, " ")
    lo = hi = a[1] + 0
    for (i = 2; i <= n; i++) { if (a[i] + 0 < lo) lo = a[i] + 0; if (a[i] + 0 > hi) hi = a[i] + 0 }
    MIN = lo; MAX = hi
    return n
}
# paired ratios: config vs ref, same traffic, same round; median, min-max
function paired(c, ref, t, col,    r, list, n) {
    list = ""
    for (r = 1; r <= maxround; r++)
        if ((c, t, r) in val && (ref, t, r) in val && val[ref, t, r, col] > 0)
            list = list " " val[c, t, r, col] / val[ref, t, r, col]
    n = minmax(list)
    if (list == "") { PAIRS = 0; return "" }
    PAIRS = split(list, tmp, " ")
    return median(list)
}
function ratio_cell(c, ref, t, col,    m) {
    m = paired(c, ref, t, col)
    if (m == "") return "n/a"
    if (PAIRS == 1) return sprintf("%.2f", m)
    return sprintf("%.2f (%.2f-%.2f)", m, MIN, MAX)
}
function target(desc, c, ref, t, col, op, limit,    m, ok) {
    m = paired(c, ref, t, col)
    if (m == "") { printf "| %s | not measured | n/a |\n", desc; return }
    ok = (op == "<=") ? (m <= limit) : (m >= limit)
    printf "| %s | %.2fx%s | **%s** |\n", desc, m, (PAIRS > 1 ? sprintf(" (rounds %.2f-%.2f)", MIN, MAX) : ""), ok ? "PASS" : "MISS"
}
# down_target DESC CFG STATE: CFG vs plain, both measured with Redis in STATE
# (down.tsv: rps $3, p99_us $5): req/s >= RPS_MIN x plain and p99 <= plain
# p99 + P99_MS ms
# hung_target DESC RPS_MIN P99_MS: module-breaker vs plain over the paired
# rounds of hung-rounds.tsv: median ratio and median p99 difference
function hung_target(desc, rps_min, p99_ms,    line, f, n, r, br, bp, pr, pp, ratios, diffs, k, ok) {
    while ((getline line < hung) > 0) {
        split(line, f, "\t")
        if (f[1] == "round") continue
        if (f[2] == "module-breaker") { br[f[1]] = f[3]; bp[f[1]] = f[4] }
        if (f[2] == "plain") { pr[f[1]] = f[3]; pp[f[1]] = f[4] }
    }
    close(hung)
    n = 0
    for (r in br) if ((r in pr) && pr[r] > 0) {
        n++; ratios = ratios " " br[r] / pr[r]; diffs = diffs " " (bp[r] - pp[r]) / 1000
    }
    if (n == 0) return 0
    ok = (median(ratios) >= rps_min) && (median(diffs) <= p99_ms)
    printf "| %s | %.3fx plain req/s (median of %d paired rounds, %s); p99 %+.2f ms (median, %s) | **%s** |\n",
        desc, median(ratios), n, span(ratios, "%.3f"), median(diffs), span(diffs, "%+.2f"), ok ? "PASS" : "MISS"
    return 1
}
function down_target(desc, c, state, rps_min, p99_ms,    line, f, have, cr, cp, pr, pp, ok) {
    if (hung != "" && state == "hung" && c == "module-breaker" && hung_target(desc, rps_min, p99_ms)) return
    if (down != "")
        while ((getline line < down) > 0) {
            split(line, f, "\t")
            if (f[1] != state) continue
            if (f[2] == c) { cr = f[3]; cp = f[5]; have = have "c" }
            if (f[2] == "plain") { pr = f[3]; pp = f[5]; have = have "p" }
        }
    if (down != "") close(down)
    if (have !~ /c/ || have !~ /p/ || pr <= 0) { printf "| %s | not measured | n/a |\n", desc; return }
    ok = (cr / pr >= rps_min) && (cp <= pp + 1000 * p99_ms)
    printf "| %s | %.3fx plain req/s (%.0f / %.0f); p99 %.2f ms, plain %.2f ms (%+.2f ms) | **%s** |\n",
        desc, cr / pr, cr, pr, cp / 1000, pp / 1000, (cp - pp) / 1000, ok ? "PASS" : "MISS"
}
NR == 1 { next }
{
    r = $1; c = $3; t = $4
    if (!((c, t) in seen)) { seen[c, t] = 1; nkeys++; keyc[nkeys] = c; keyt[nkeys] = t }
    if (!(c in cseen)) { cseen[c] = 1; ncfg++; cfgs[ncfg] = c }
    if (!(t in tseen)) { tseen[t] = 1; ntr++; trs[ntr] = t }
    if (r > maxround) maxround = r
    val[c, t, r] = 1
    val[c, t, r, "rps"] = $5; val[c, t, r, "us"] = $11
    rps[c, t] = rps[c, t] " " $5; p50[c, t] = p50[c, t] " " $6; p99[c, t] = p99[c, t] " " $7
    us[c, t] = us[c, t] " " $11; fcpu[c, t] = fcpu[c, t] " " $10; cpu1[c, t] = cpu1[c, t] " " $13
    err[c, t] += $9
    runs[++nruns] = $0
}
END {
    print "## Throughput and front worker CPU"
    print ""
    printf "Median over %d round(s); ratios: config / plain in the same round and traffic, median (min-max) over rounds.\n\n", maxround
    print "| config | traffic | req/s | req/s min-max (spread) | p50 ms | p99 ms | front us/req | front CPU % | load CPU % | errors | req/s / plain | us/req / plain |"
    print "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|"
    for (i = 1; i <= ntr; i++) for (j = 1; j <= ncfg; j++) {
        c = cfgs[j]; t = trs[i]
        if (!((c, t) in seen)) continue
        m = median(rps[c, t]); minmax(rps[c, t])
        printf "| %s | %s | %.0f | %.0f-%.0f (%.0f%%) | %.2f | %.2f | %.1f | %.0f | %.0f | %d | %s | %s |\n",
            c, t, m, MIN, MAX, (m > 0 ? 100 * (MAX - MIN) / m : 0),
            median(p50[c, t]) / 1000, median(p99[c, t]) / 1000, median(us[c, t]),
            median(fcpu[c, t]), median(cpu1[c, t]), err[c, t],
            (c == "plain") ? "1" : ratio_cell(c, "plain", t, "rps"),
            (c == "plain") ? "1" : ratio_cell(c, "plain", t, "us")
    }
    print ""
    print "## Targets"
    print ""
    print "Each measured value is the median over rounds of the ratio of two configurations in the same round; the Redis-hung target takes the medians of HUNG_ROUNDS paired runs of module-breaker and plain in alternating order with Redis hung (after the warm-up runs of the Redis down section), or, without them, the two single runs of that section."
    print ""
    print "| target | measured | result |"
    print "|---|---|---|"
    target("module-headers, cookie: front worker us/req <= 1.10x plain", "module-headers", "plain", "cookie", "us", "<=", 1.10)
    target("module-headers, cookie: req/s >= 1.5x lua-headers", "module-headers", "lua-headers", "cookie", "rps", ">=", 1.5)
    target("module-headers, cookie: req/s >= 0.80x plain", "module-headers", "plain", "cookie", "rps", ">=", 0.80)
    target("module-headers, anon: req/s >= 0.98x plain", "module-headers", "plain", "anon", "rps", ">=", 0.98)
    target("module-inject, cookie: req/s >= 1.5x lua-inject", "module-inject", "lua-inject", "cookie", "rps", ">=", 1.5)
    target("module-cached, cookie: req/s >= 0.95x plain", "module-cached", "plain", "cookie", "rps", ">=", 0.95)
    down_target("module-breaker, Redis hung: req/s >= 0.9x plain, p99 <= plain p99 + 1 ms", "module-breaker", "hung", 0.9, 1)
    print ""
    # informational, no target: the cost of routing by hash slot
    cl = 0
    for (i = 1; i <= ntr; i++) if (("module-cluster", trs[i]) in seen && ("module-headers", trs[i]) in seen) cl = 1
    if (cl) {
        print "module-cluster / module-headers (the same lookups through a 3-master Redis Cluster on the same CPU instead of one Redis; informational, no target), paired per round, median (min-max):"
        print ""
        print "| traffic | req/s | front us/req | p99 ms (medians) |"
        print "|---|---|---|---|"
        for (i = 1; i <= ntr; i++) {
            t = trs[i]
            if (!(("module-cluster", t) in seen && ("module-headers", t) in seen)) continue
            printf "| %s | %s | %s | %.2f / %.2f |\n", t, ratio_cell("module-cluster", "module-headers", t, "rps"),
                ratio_cell("module-cluster", "module-headers", t, "us"),
                median(p99["module-cluster", t]) / 1000, median(p99["module-headers", t]) / 1000
        }
        print ""
    }
    print "## Every run"
    print ""
    print "In run order. load CPU = CPU 1 (storefront, redis, wrk) busy %; steal = CPU 0 time the hypervisor gave to other guests, %; others = CPU used by processes outside the benchmark, % of one core."
    print ""
    print "| round | # | config | traffic | req/s | p50 ms | p99 ms | front us/req | front CPU % | load CPU % | steal % | others % | errors | note |"
    print "|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    for (i = 1; i <= nruns; i++) {
        split(runs[i], f, "\t")
        note = f[16]; if (note == "-") note = ""
        if (f[15] > 1) note = note (note == "" ? "" : ", ") "measured " f[15] " times"
        printf "| %s | %s | %s | %s | %.0f | %.2f | %.2f | %.1f | %.0f | %.0f | %.1f | %.0f | %d | %s |\n",
            f[1], f[2], f[3], f[4], f[5], f[6] / 1000, f[7] / 1000, f[11], f[10], f[13], f[17], f[14], f[9], note
    }
}' "$dir/runs.tsv"

if [[ -f $dir/down.tsv ]]; then
    echo
    echo "## Redis down"
    echo
    echo "Cookie traffic with Redis frozen (SIGSTOP: every lookup waits for the timeout) and then killed (connections refused). No warm-up unless the before column says so: module-breaker gets one after Redis went down (its first 5 lookups wait for the timeout and open the breaker), and so does plain, measured with Redis hung as the breaker target's reference; a configuration with a cache has it filled by cookie traffic just before Redis is stopped or killed and is measured once those entries are past their ttl, so its personalized responses are stale records (STALE), not Redis."
    echo
    echo "| redis | config | before | req/s | p50 ms | p99 ms | statuses | 5xx | personalized | socket errors | one curl | error.log lines |"
    echo "|---|---|---|---:|---:|---:|---|---:|---:|---:|---|---:|"
    awk -F'\t' 'NR > 1 { printf "| %s | %s | %s | %.0f | %.2f | %.2f | %s | %d | %d | %d | %s | %d |\n", $1 == "hung" ? "hung (SIGSTOP)" : "killed (refused)", $2, ($13 == "" ? "-" : $13), $3, $4 / 1000, $5 / 1000, $6, $7, $8, $10, $11, $12 }' "$dir/down.tsv"
    echo
    awk -F'\t' 'NR > 1 { n += $7 } END { printf "- no 5xx while Redis is down: **%s** (%d)\n", n == 0 ? "PASS" : "MISS", n }' "$dir/down.tsv"
    [[ -f $dir/down-resume.txt ]] && sed 's/^/- /' "$dir/down-resume.txt"
fi
