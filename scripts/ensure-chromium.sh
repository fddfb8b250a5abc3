#!/usr/bin/env bash
# Make a headless Chromium available for the tests that open a real EventSource: Debian's
# package when we are root on Debian. Elsewhere say what is missing; the tests that need it fail
# in CI (CI=1) and are skipped on a developer's machine without it.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium from Debian's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
    exit 0
fi
echo "no chromium and no root apt-get: the real-browser tests will not run here" >&2
