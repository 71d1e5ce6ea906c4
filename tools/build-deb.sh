#!/bin/sh
# Builds the Debian package libnginx-mod-http-loyalty (make deb) the way
# Debian builds its own nginx modules: dpkg-buildpackage on debian/, whose
# rules run dh with nginx-dev's nginx sequence (nginx_mod build system,
# dh_nginx).  The build runs in a scratch copy of the tree, WORKDIR/src,
# so the work tree gets no debian/.debhelper, obj-*/ or debian/<pkg>/;
# the package is then copied to DEB.
#
#   sh tools/build-deb.sh WORKDIR DEB
set -eu

[ $# -eq 2 ] || { echo "usage: $0 WORKDIR DEB" >&2; exit 2; }
work=$1
deb=$2
cd "$(dirname "$0")/.."

rm -rf "$work"
mkdir -p "$work/src"

# the files of the tree: git's tracked and untracked-but-not-ignored ones
# (debian/ may not be committed yet), or everything but build/ and .git/
# outside a git checkout
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard
else
    find . -path ./build -prune -o -path ./.git -prune -o ! -type d -print0
fi | tar --null -T - --ignore-failed-read -cf - | tar -xf - -C "$work/src"

log=$work/build.log
echo "dpkg-buildpackage -b in $work/src (log: $log)"
if ! (cd "$work/src" && dpkg-buildpackage -b -us -uc -Jauto) >"$log" 2>&1
then
    tail -40 "$log" >&2
    echo "error: dpkg-buildpackage failed, see $log" >&2
    exit 1
fi

# dpkg-buildpackage leaves its output next to the source directory
built=$work/$(basename "$deb")
[ -f "$built" ] || { echo "error: $built was not built" >&2; ls "$work" >&2; exit 1; }
cp "$built" "$deb.tmp"
mv -f "$deb.tmp" "$deb"
echo "built $deb"
