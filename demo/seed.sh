#!/bin/sh
# Loads demo/customers.txt into the Redis server on 127.0.0.1:PORT, one hash
# per customer (loyalty:customer:<id> with fields tier and points), the
# record format the module reads.  Other keys are left alone.
#
#   sh demo/seed.sh PORT
set -eu

port=${1:?usage: sh demo/seed.sh PORT}
dir=$(cd "$(dirname "$0")" && pwd)

grep -v '^[[:space:]]*\(#\|$\)' "$dir/customers.txt" |
while read -r id tier points; do
    redis-cli -h 127.0.0.1 -p "$port" \
        HSET "loyalty:customer:$id" tier "$tier" points "$points" </dev/null >/dev/null
done
