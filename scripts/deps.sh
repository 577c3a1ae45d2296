#!/bin/sh
# Installs the Debian packages convoy builds against when pkg-config cannot
# find them. Usage: scripts/deps.sh [extra-package ...]
# Extra packages (benchmark references, fuzzing tools) are installed when the
# command or file they provide is missing; the caller names them as
# "package:probe" where probe is a command name or an absolute path.
set -eu

missing=""
command -v pkg-config >/dev/null 2>&1 || missing="pkg-config"
for pair in openssl:libssl-dev libcjson:libcjson-dev liburing:liburing-dev cunit:libcunit1-dev; do
    mod=${pair%%:*}
    pkg=${pair#*:}
    if ! pkg-config --exists "$mod" 2>/dev/null; then
        missing="$missing $pkg"
    fi
done
for pair in "$@"; do
    pkg=${pair%%:*}
    probe=${pair#*:}
    case "$probe" in
    /*) [ -e "$probe" ] || missing="$missing $pkg" ;;
    *) command -v "$probe" >/dev/null 2>&1 || missing="$missing $pkg" ;;
    esac
done
[ -z "$missing" ] && exit 0

echo "deps: installing:$missing" >&2
if [ "$(id -u)" = 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "deps: not root and no sudo; run as root: apt-get update && apt-get install -y$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has empty package lists; refresh them once per run.
$SUDO apt-get update -qq >&2 || {
    echo "deps: apt-get update failed; run: apt-get update && apt-get install -y$missing" >&2
    exit 1
}
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >&2 || {
    echo "deps: apt-get install failed; run: apt-get install -y$missing" >&2
    exit 1
}
