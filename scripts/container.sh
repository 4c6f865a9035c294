#!/usr/bin/env bash
# Builds kiln's two container images (Containerfile, docs/containers.md) with Podman, without any
# registry: `kiln` (train, tune, board, serve: everything) and `kiln-serve` (kiln serve only).
#
#   bash scripts/container.sh [--no-cache] [--new-base] [--base-only]
#
# The Debian base: debian:bookworm-slim when local storage has it (from a registry pull or a
# `podman load`); otherwise this script makes it: `debootstrap --variant=minbase bookworm` from
# deb.debian.org (retried), slimmed like the official slim image (no docs, man pages, locales,
# apt lists) and a little more (zoneinfo/right, legacy iconv modules), dpkg told to leave them
# out of later installs too, imported as localhost/kiln-debian:bookworm-slim (kept for later
# builds; --new-base makes it again). Builds never pull (--pull=never). --no-cache rebuilds
# every layer; --base-only stops after the base.
#
# Podman here runs with runc and explicit ulimits (crun fails on hybrid cgroup v1/v2 kernels) from
# a containers.conf of our own, named by CONTAINERS_CONF: the host's configuration is not changed.
# The storage driver is the host's (overlay, checked by `podman info`; vfs where overlay is
# unavailable: KILN_STORAGE_DRIVER=vfs). tests/container.sh sources the same settings.
#
# Environment: KILN_IMAGE_TAG (default latest), KILN_BUILD_JOBS (make -j inside the build, default
# 2), KILN_DEBIAN_MIRROR (default http://deb.debian.org/debian), KILN_CONTAINER_DIR (where the
# containers.conf and the base's rootfs go, default /tmp/kiln-container-$(id -u)).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TAG="${KILN_IMAGE_TAG:-latest}"
JOBS="${KILN_BUILD_JOBS:-2}"
MIRROR="${KILN_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CDIR="${KILN_CONTAINER_DIR:-/tmp/kiln-container-$(id -u)}"
BASE_LOCAL=localhost/kiln-debian:bookworm-slim

# --- Podman's configuration for kiln (also used by tests/container.sh: source with --env-only) ---
kiln_container_env() {
    mkdir -p "$CDIR"
    cat >"$CDIR/containers.conf" <<'EOF'
# Written by kiln's scripts/container.sh: runc (crun fails on hybrid cgroups), explicit ulimits.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
    export CONTAINERS_CONF="$CDIR/containers.conf"
    if [ -n "${KILN_STORAGE_DRIVER:-}" ]; then
        export STORAGE_DRIVER="$KILN_STORAGE_DRIVER"  # podman's own override (vfs: slow, but works)
    fi
}

retry() {  # retry N CMD...: archive downloads fail now and then
    local n=$1 i; shift
    for ((i = 1; i <= n; i++)); do
        "$@" && return 0
        echo "container.sh: try $i of $n failed: $*" >&2
        sleep $((i * 5))
    done
    return 1
}

base_image() {  # prints the image the Containerfile starts FROM
    local img
    for img in debian:bookworm-slim docker.io/library/debian:bookworm-slim; do
        if podman image exists "$img"; then echo "$img"; return; fi
    done
    if podman image exists "$BASE_LOCAL" && [ -z "${NEW_BASE:-}" ]; then
        echo "$BASE_LOCAL"; return
    fi
    command -v debootstrap >/dev/null || {
        echo "container.sh: debian:bookworm-slim is not in local storage and debootstrap is not" \
             "installed (apt-get install debootstrap, or podman pull debian:bookworm-slim)" >&2
        exit 1; }
    local rootfs="$CDIR/rootfs"
    echo "container.sh: making the Debian base with debootstrap ($MIRROR)" >&2
    rm -rf "$rootfs"
    # shellcheck disable=SC2317
    debootstrap_once() {
        rm -rf "$rootfs" && debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >&2
    }
    retry 3 debootstrap_once
    # Slim it like debian:bookworm-slim: no docs (copyright kept), man pages, locales, apt lists,
    # backup files of dpkg and debconf, and dpkg leaves them out of every later install too; the
    # leap-second time zones (zoneinfo/right, which Debian 13 moves to tzdata-legacy); and glibc's
    # iconv modules for legacy character sets (8 MB; UTF-8, UTF-16, UTF-32, UCS-2/4 and ASCII
    # are built into glibc, and nothing in the images converts other sets).
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/kiln-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/zoneinfo/right/*
path-exclude /usr/lib/*/gconv/*.so
EOF
    cat >"$rootfs/etc/apt/apt.conf.d/80-kiln" <<'EOF'
Acquire::Retries "5";
APT::Install-Recommends "false";
EOF
    printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$MIRROR" "$MIRROR" \
        >"$rootfs/etc/apt/sources.list"
    printf 'deb http://deb.debian.org/debian-security bookworm-security main\n' \
        >>"$rootfs/etc/apt/sources.list"
    find "$rootfs/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete 2>/dev/null || true
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
    rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/lintian/* \
           "$rootfs"/usr/share/groff/* "$rootfs"/usr/share/zoneinfo/right \
           "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/lib/dpkg/*-old \
           "$rootfs"/usr/lib/*/gconv/*.so
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias \
        -exec rm -rf {} + 2>/dev/null || true
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
           "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log "$rootfs"/tmp/*
    tar -C "$rootfs" --numeric-owner -c . |
        podman import --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' - "$BASE_LOCAL" >&2
    rm -rf "$rootfs"
    echo "$BASE_LOCAL"
}

main() {
    local base_only="" arg
    NO_CACHE="" NEW_BASE=""
    for arg in "$@"; do
        case "$arg" in
            --no-cache) NO_CACHE=1 ;;
            --base-only) base_only=1 ;;
            --new-base) NEW_BASE=1 ;;
            -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
            *) echo "container.sh: unknown argument '$arg'" \
                    "(--no-cache, --new-base, --base-only)" >&2; exit 2 ;;
        esac
    done
    command -v podman >/dev/null || { echo "container.sh: podman is not installed" >&2; exit 1; }
    kiln_container_env
    local base; base="$(base_image)"
    echo "container.sh: base image $base"
    [ -n "$base_only" ] && return 0
    local t
    for t in kiln kiln-serve; do
        echo "container.sh: building $t:$TAG"
        # --format docker: OCI image configs have no HEALTHCHECK. With --no-cache only the first
        # target rebuilds every layer; the second reuses its build stage, just made.
        podman build --pull=never --format docker ${NO_CACHE:+--no-cache} --build-arg "BASE=$base" \
            --build-arg "JOBS=$JOBS" --target "$t" -t "localhost/$t:$TAG" -f "$ROOT/Containerfile" \
            "$ROOT"
        NO_CACHE=""
    done
    podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' |
        grep -E "/kiln(-serve)?:$TAG " || true
}

if [ "${1:-}" = --env-only ]; then kiln_container_env; else main "$@"; fi
