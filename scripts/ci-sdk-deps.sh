#!/usr/bin/env bash
# The hosted API provider's JavaScript SDK (npm novita-sdk, pinned in tests/js/package-lock.json) for the test
# that runs it unmodified against wanlab serve. Installs Debian's nodejs and npm first where they are absent.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v npm >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
