#!/bin/sh
# Installs, with apt-get, the Debian packages the build, the tests and the
# demo need, but only those that are missing: a machine that has them all
# runs no apt-get at all.  Extra package names may be given as arguments
# (make bench adds wrk and the Lua peer's packages).
set -eu

PACKAGES="nginx nginx-dev libhiredis-dev libjansson-dev libssl-dev
          redis-server redis-tools curl gcc make perl python3 php-cli
          nodejs clang libclang-rt-14-dev valgrind chromium fonts-dejavu-core"

missing=""
for p in $PACKAGES "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
         | grep -q 'install ok installed'
    then
        missing="$missing $p"
    fi
done

[ -z "$missing" ] && exit 0

echo "installing:$missing"

SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=sudo
    else
        echo "error: need root (or sudo) to install:$missing" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing
