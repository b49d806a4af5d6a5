#!/usr/bin/env bash
# The Python base image built from Debian packages, for machines that reach no container
# registry (only a Debian mirror): debootstrap minbase + python3, python3-venv, ca-certificates,
# trimmed, imported as the image named by $1. The Dockerfiles take it as their PYTHON_BASE.
set -euo pipefail
image="${1:?usage: python-base.sh IMAGE [ENGINE]}"
engine="${2:-podman}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$mirror" >/dev/null
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
    "$root"/usr/share/locale/* "$root"/usr/share/info/*
if ! said=$(tar -C "$root" -c . | "$engine" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$image" 2>&1); then
    echo "$said" >&2
    exit 1
fi
echo "$image"
