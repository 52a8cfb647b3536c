#!/usr/bin/env bash
# Runs every Shoal test on a fresh machine: installs what the tests need (redis-server,
# redis-tools, openssl, chromium from Debian's packages) when missing, then the whole workspace's tests.
# Tests start their own servers on free loopback ports and stop them afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# The console's browser test drives Debian's Chromium (browser downloads do not work here).
if [ "${SHOAL_SKIP_E2E:-0}" != "1" ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
fi
if [ "${#need[@]}" -gt 0 ]; then
  echo "scripts/test.sh: installing ${need[*]}" >&2
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The Debian package starts a system redis on 6379; the tests never use it.

cargo test --workspace --all-targets --locked "$@"
cargo test --workspace --doc --locked

# End-to-end: real MCP software from npm/PyPI (reference server, TypeScript SDK client, Python
# mcp client, the official conformance suite on node 22) through two `shoal proxy` instances
# sharing a real Redis. Installs into target/e2e-cache; every step bounded by `timeout`.
# Then shoal-rmcp: the TypeScript and Python clients against two replicas of an rmcp server.
if [ "${SHOAL_SKIP_E2E:-0}" != "1" ]; then
  crates/shoal-proxy/tests/e2e/run.sh
  crates/shoal-rmcp/tests/e2e/run.sh
  # The live console in headless Chromium against two proxies on Redis (screenshots in
  # target/console-screenshots).
  crates/shoal-console/tests/browser/run.sh
fi
