#!/usr/bin/env bash
# Make a small local Debian bookworm + Python 3.11 base image with debootstrap, for building the
# container image where no registry is reachable (the Dockerfile's PYTHON_IMAGE argument):
#
#   sudo scripts/debian-base.sh [TAG] [ROOTFS_DIR]      # default TAG authsvc-base:bookworm
#
# Needs root, debootstrap and a running docker daemon. Reuses ROOTFS_DIR when it already holds
# a bootstrapped system (debootstrap takes minutes). The result has python3, python3-venv (for
# the build stage's pip) and passwd (useradd); apt, perl, caches, docs, man pages, locales and
# the standard library's byte-code are removed (the image compiles what it imports).
set -euo pipefail

tag="${1:-authsvc-base:bookworm}"
rootfs="${2:-/var/tmp/authsvc-debian-base/rootfs}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if [ ! -x "$rootfs/usr/bin/python3" ]; then
    mkdir -p "$(dirname "$rootfs")"
    debootstrap --variant=minbase --include=python3,python3-venv bookworm "$rootfs" "$mirror"
fi

# Slim it down: nothing here is needed to run (or pip-install) a Python service. The package
# manager goes too (perl-base, apt, debconf; the image is rebuilt, never upgraded in place).
if [ -x "$rootfs/usr/bin/apt-get" ]; then
    chroot "$rootfs" apt-get clean
    chroot "$rootfs" dpkg --purge --force-remove-essential --force-depends apt debconf perl-base >/dev/null 2>&1 || true
fi
rm -rf "$rootfs"/usr/lib/x86_64-linux-gnu/gconv "$rootfs"/usr/lib/python3.11/lib2to3 \
       "$rootfs"/usr/lib/python3.11/pydoc_data "$rootfs"/usr/share/perl* "$rootfs"/usr/lib/x86_64-linux-gnu/perl*
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
       "$rootfs"/var/log/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
       "$rootfs"/usr/share/lintian "$rootfs"/usr/share/linda "$rootfs"/tmp/*
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name 'C.*' -not -name locale.alias -exec rm -rf {} +
find "$rootfs/usr/lib/python3.11" -name '__pycache__' -prune -exec rm -rf {} +
# The service runs `python` (the official images have it); Debian calls it python3.
ln -sf python3 "$rootfs/usr/bin/python"

tar --numeric-owner -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$tag" >/dev/null
docker image inspect --format '{{.Id}} {{.Size}}' "$tag" | awk -v t="$tag" '{printf "%s %s %.1f MB\n", t, $1, $2/1e6}'
