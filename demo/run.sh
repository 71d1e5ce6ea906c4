#!/bin/sh
# The loyalty demo (make demo): a private Redis with sample customers and
# an offer catalog, and Debian's nginx with the loyalty module serving a
# shop page, on loopback ports, in the foreground until Ctrl-C (or TERM,
# HUP).  Everything runs from a temporary directory that is removed on
# exit: the key that signs the demo's cookies is made there at each start.
#
#   sh demo/run.sh              storefront on a free port
#   DEMO_PORT=8080 sh demo/run.sh
#
# Once the storefront answers, it prints the URLs, among them the line
#   "  storefront    http://127.0.0.1:PORT/"
# (t/15-browser.t runs the demo and reads it).  TMPDIR chooses where the
# temporary directory goes.
#
# Needs what `make deps` installs (nginx, redis-server, redis-tools, perl,
# curl) and the module and build/loyalty-cookie built by `make`.

# cleanup, stop and on_signal run from traps
# shellcheck disable=SC2317

set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEMO="$ROOT/demo"
MODULE="$ROOT/build/ngx_http_loyalty_module.so"
COOKIE_TOOL="$ROOT/build/loyalty-cookie"
NGINX=${NGINX_BINARY:-/usr/sbin/nginx}

TMP=""
NGINX_PID=""
REDIS_PID=""
BACKEND_PORT=""
REDIS_PORT=""


die() {
    echo "demo: $*" >&2
    exit 1
}


# free TCP ports on 127.0.0.1, all different: free_ports N
free_ports() {
    perl -MIO::Socket::INET -e '
        for (1 .. $ARGV[0]) {
            push @s, IO::Socket::INET->new(LocalAddr => "127.0.0.1",
                                           LocalPort => 0, Listen => 1)
                or die "demo: cannot bind a loopback port: $!\n";
        }
        print join(" ", map { $_->sockport } @s), "\n";
    ' "$1"
}


port_is_free() {
    perl -MIO::Socket::INET -e '
        exit(IO::Socket::INET->new(LocalAddr => "127.0.0.1",
                                   LocalPort => $ARGV[0], Listen => 1,
                                   ReuseAddr => 1) ? 0 : 1);
    ' "$1"
}


# waits for a child process to exit, up to about 5 s, then kills it
stop() {
    pid=$1
    sig=$2

    [ -n "$pid" ] || return 0
    kill -"$sig" "$pid" 2>/dev/null || return 0

    i=0
    while kill -0 "$pid" 2>/dev/null; do
        i=$((i + 1))
        if [ "$i" -gt 50 ]; then
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done

    wait "$pid" 2>/dev/null || true
}


cleanup() {
    rc=$?

    # a second Ctrl-C must not cut the cleanup short, nor a failing
    # command (a sleep killed by a signal sent to the whole group)
    trap '' INT TERM HUP
    trap - EXIT
    set +e

    stop "$NGINX_PID" TERM
    stop "$REDIS_PID" TERM

    if [ -n "$TMP" ]; then
        rm -rf "$TMP"
    fi

    exit "$rc"
}


on_signal() {
    echo
    echo "demo: stopping nginx and redis-server, removing $TMP"
    exit "$1"
}


# escapes a string for the replacement part of s|...|...|
sed_escape() {
    printf '%s' "$1" | sed 's/[\\|&]/\\&/g'
}


# --- checks ------------------------------------------------------------

[ -x "$NGINX" ] || die "$NGINX not found (run: make deps)"
[ -f "$MODULE" ] || die "$MODULE not found (run: make)"
[ -x "$COOKIE_TOOL" ] || die "$COOKIE_TOOL not found (run: make)"
command -v redis-server >/dev/null || die "redis-server not found (run: make deps)"
command -v redis-cli >/dev/null || die "redis-cli not found (run: make deps)"
command -v perl >/dev/null || die "perl not found (run: make deps)"
command -v curl >/dev/null || die "curl not found (run: make deps)"

if [ -n "${DEMO_PORT:-}" ]; then
    case $DEMO_PORT in
        *[!0-9]* | "") die "DEMO_PORT must be a port number, not \"$DEMO_PORT\"" ;;
    esac

    if [ "$DEMO_PORT" -lt 1 ] || [ "$DEMO_PORT" -gt 65535 ]; then
        die "DEMO_PORT must be between 1 and 65535"
    fi

    port_is_free "$DEMO_PORT" \
        || die "port $DEMO_PORT on 127.0.0.1 is in use (or needs root)"
fi


# --- temporary directory -------------------------------------------------

trap cleanup EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
trap 'on_signal 129' HUP

TMP=$(mktemp -d "${TMPDIR:-/tmp}/loyalty-demo.XXXXXX")

# nginx's workers run as "nobody" when the demo runs as root: they must be
# able to reach the page and the temp paths
chmod 755 "$TMP"
mkdir "$TMP/redis"
cp -R "$DEMO/html" "$TMP/html"
chmod -R a+rX "$TMP/html"

# four candidates, so that three remain when one of them is DEMO_PORT
ports=$(free_ports 4)
# shellcheck disable=SC2086
set -- $ports
if [ -z "${DEMO_PORT:-}" ]; then
    DEMO_PORT=$1
    shift
fi
for p in "$@"; do
    [ "$p" = "$DEMO_PORT" ] && continue
    if [ -z "${BACKEND_PORT:-}" ]; then
        BACKEND_PORT=$p
    elif [ -z "${REDIS_PORT:-}" ]; then
        REDIS_PORT=$p
    fi
done
PORT=$DEMO_PORT


# --- Redis ---------------------------------------------------------------

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 \
             --save '' --appendonly no --daemonize no \
             --dir "$TMP/redis" --logfile "$TMP/redis.log" \
             </dev/null >/dev/null 2>&1 &
REDIS_PID=$!

i=0
until redis-cli -h 127.0.0.1 -p "$REDIS_PORT" PING 2>/dev/null | grep -q PONG
do
    i=$((i + 1))
    if ! kill -0 "$REDIS_PID" 2>/dev/null || [ "$i" -gt 50 ]; then
        cat "$TMP/redis.log" >&2 2>/dev/null || true
        die "redis-server did not start on 127.0.0.1:$REDIS_PORT"
    fi
    sleep 0.1
done

sh "$DEMO/seed.sh" "$REDIS_PORT"


# --- signed cookies ------------------------------------------------------

# a fresh key for this run, readable by its owner only (nginx -t refuses a
# key file that others can read); nginx's master reads it as this user
(umask 077 && "$COOKIE_TOOL" keygen > "$TMP/loyalty.keys") \
    || die "cannot make a key with $COOKIE_TOOL keygen"
chmod 600 "$TMP/loyalty.keys"

# one signed cookie per sample customer, valid for a day: the map from
# /login/<login> to the cookie value in nginx.conf
CUSTOMERS=$(grep -v '^[[:space:]]*\(#\|$\)' "$DEMO/customers.txt")
: > "$TMP/logins.map"
echo "$CUSTOMERS" | while read -r login id about; do
    value=$("$COOKIE_TOOL" sign --key-file "$TMP/loyalty.keys" \
                           --id "$id" --ttl 86400) \
        || die "cannot sign a cookie for $id"
    printf '"/login/%s" "%s";\n' "$login" "$value" >> "$TMP/logins.map"
done

# the cookie value of a login name
cookie_of() {
    sed -n "s|^\"/login/$1\" \"\\(.*\\)\";\$|\\1|p" "$TMP/logins.map"
}


# --- nginx ---------------------------------------------------------------

sed -e "s|@MODULE@|$(sed_escape "$MODULE")|g" \
    -e "s|@TMP@|$(sed_escape "$TMP")|g" \
    -e "s|@PORT@|$PORT|g" \
    -e "s|@BACKEND_PORT@|$BACKEND_PORT|g" \
    -e "s|@REDIS_PORT@|$REDIS_PORT|g" \
    "$DEMO/nginx.conf.in" > "$TMP/nginx.conf"

"$NGINX" -p "$TMP/" -c "$TMP/nginx.conf" -e "$TMP/error.log" -t -q \
    || die "nginx -t failed on $TMP/nginx.conf"

"$NGINX" -p "$TMP/" -c "$TMP/nginx.conf" -e "$TMP/error.log" \
    </dev/null >>"$TMP/nginx.out" 2>&1 &
NGINX_PID=$!

URL="http://127.0.0.1:$PORT"

# the worker reads the offer catalog from Redis just after it starts:
# ready when a member's fragment lists catalog offers
probe=$(cookie_of platinum)

i=0
until curl -s -b "loyalty_id=$probe" "$URL/loyalty.json" 2>/dev/null \
      | grep -q '"free-shipping"'
do
    i=$((i + 1))
    if ! kill -0 "$NGINX_PID" 2>/dev/null || [ "$i" -gt 100 ]; then
        tail -n 20 "$TMP/error.log" "$TMP/nginx.out" >&2 2>/dev/null || true
        die "nginx did not start on 127.0.0.1:$PORT, or has no offer catalog"
    fi
    sleep 0.1
done


# --- what to try -----------------------------------------------------------

cat <<EOF

Loyalty demo is running.  Ctrl-C stops it and removes $TMP

  storefront    $URL/
  fragment      $URL/loyalty.json   (what the page reads from #loyalty-data)
  A/B report    $URL/loyalty-ab?format=text
  shop API      $URL/api/    (proxied; the backend echoes X-Loyalty-*)
  redis         redis-cli -p $REDIS_PORT HGETALL loyalty:customer:1003
                redis-cli -p $REDIS_PORT GET loyalty:offers
  logs          $TMP/access.log
                $TMP/error.log

Open the storefront as a sample customer (the link sets the customer's
signed cookie and goes back to the shop):

EOF

echo "$CUSTOMERS" | while read -r login id about; do
    printf "  %-38s %s, %s\n" "$URL/login/$login" "$id" "$about"
done

cat <<EOF
  $(printf '%-38s' "$URL/logout") a guest again: the join prompt

What the shop backend receives (with the same signed cookies):

  curl -s -b loyalty_id=$(cookie_of gold) $URL/api/
  curl -s -b loyalty_id=$(cookie_of unknown) $URL/api/
  curl -s -b loyalty_id=1003 $URL/api/    # unsigned: status=invalid
  curl -s -H 'X-Loyalty-Tier: platinum' $URL/api/    # forged header removed

The injected fragment and the X-Loyalty-Tier/-Points response headers:

  curl -s -D - -b loyalty_id=$(cookie_of platinum) $URL/

EOF


# --- foreground --------------------------------------------------------------

# wait returns early when a trapped signal arrives: the trap cleans up
status=0
wait "$NGINX_PID" || status=$?
NGINX_PID=""

tail -n 20 "$TMP/error.log" >&2 2>/dev/null || true
die "nginx exited unexpectedly (status $status)"
