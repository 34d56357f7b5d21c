#!/bin/sh
# Debian tools the infra tests use: docker-compose (validates the compose file without an
# engine) and prometheus (promtool, and the server the scrape test starts); chromium for the
# report test's headless screenshot and the web console's browser tests (Playwright drives this
# Chromium; nothing runs `playwright install`). Idempotent: when all are there it does nothing, so the test
# command can call it every run.
set -eu

if command -v docker-compose >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 \
   && command -v prometheus >/dev/null 2>&1 && [ -x /usr/bin/chromium ]; then
    exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# No recommends: they would pull in docker.io and node-exporter, which the tests do not use.
# The package's service is never started by the tests; they run the binary on a free port.
$SUDO apt-get install -y -qq --no-install-recommends docker-compose prometheus chromium >/dev/null
