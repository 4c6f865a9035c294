#!/bin/sh
# runtime-packages.sh PROGRAM... — prints the Debian packages that own the shared libraries the
# programs load (ldd, then dpkg -S), one a line, sorted: what a runtime image must install for
# them. The Containerfile's build stage runs it, so the runtime images follow the build's
# dependencies without a list kept by hand. Exit 1 when a library belongs to no package.
set -eu
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
for prog in "$@"; do
    for lib in $(ldd "$prog" | awk '$3 ~ /^\// {print $3}'); do
        owner=$(dpkg -S "$lib" 2>/dev/null || dpkg -S "$(readlink -f "$lib")" 2>/dev/null) || {
            echo "runtime-packages.sh: no Debian package owns $lib ($prog loads it)" >&2
            exit 1
        }
        echo "$owner" | head -n 1 | cut -d: -f1 | tr -d ' ' | tr ',' '\n' >>"$tmp"
    done
done
sort -u "$tmp"
