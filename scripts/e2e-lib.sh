# Shared by the end-to-end scripts (crates/*/tests/e2e/run.sh): counters and their summary,
# free loopback ports, and the real MCP software from the registries, installed into
# target/e2e-cache and reused between runs. Source it after setting ROOT; every step is
# bounded by `timeout`.
# shellcheck shell=bash

CACHE="$ROOT/target/e2e-cache"
LOG="$CACHE/logs"
mkdir -p "$CACHE/npm" "$LOG"
NPM_PKGS=(@modelcontextprotocol/server-everything@2026.8.31 @modelcontextprotocol/sdk@1.32.2)
PY_PKG="mcp==2.3.0"

passed=0; failed=0; skipped=0
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT
note() { echo "e2e: $*" >&2; }
pass() { passed=$((passed + 1)); echo "PASS $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
skip() { skipped=$((skipped + 1)); echo "SKIP $*"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { # port, within 30 s
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
summary() {
  echo "e2e: $passed passed, $failed failed, $skipped skipped"
  echo "$passed passed, $failed failed"
  if [ "$passed" -eq 0 ] && [ "$failed" -eq 0 ] && [ "$skipped" -gt 0 ]; then
    echo "e2e: every part was skipped and nothing was tested; failing (set SHOAL_SKIP_E2E=1 to skip the end-to-end tests on purpose)"
    exit 1
  fi
  [ "$failed" -eq 0 ]
  exit $?
}
# Reads "ok …" / "FAIL …" lines of a client's output into the counters.
tally() {
  local out=$1 rc=$2 name=$3
  while IFS= read -r line; do
    case "$line" in
      "ok "*) pass "$name: ${line#ok }" ;;
      "FAIL "*) fail "$name: ${line#FAIL }" ;;
    esac
  done < "$out"
  if [ "$rc" -ne 0 ] && ! grep -q '^FAIL ' "$out"; then fail "$name: exited $rc (see $out)"; fi
}
# npm packages into $CACHE/npm (node_modules at $NM); returns 1 when they cannot be installed.
install_npm() {
  NM="$CACHE/npm/node_modules"
  [ -f "$CACHE/npm/.done-v1" ] && return 0
  note "npm install ${NPM_PKGS[*]} (into target/e2e-cache/npm)"
  if (cd "$CACHE/npm" && [ -f package.json ] || echo '{"private":true}' > package.json) &&
     timeout 300 npm install --prefix "$CACHE/npm" --no-audit --no-fund --loglevel=error "${NPM_PKGS[@]}" > "$LOG/npm.log" 2>&1; then
    touch "$CACHE/npm/.done-v1"
    return 0
  fi
  return 1
}
# The Python SDK into a venv at $CACHE/py (python at $PY); returns 1 when it cannot be installed.
install_py() {
  PY="$CACHE/py/bin/python"
  [ -f "$CACHE/py/.done-v1" ] && return 0
  note "pip install $PY_PKG (into target/e2e-cache/py)"
  if timeout 300 python3 -m venv "$CACHE/py" > "$LOG/pip.log" 2>&1 &&
     timeout 300 "$CACHE/py/bin/pip" install -q "$PY_PKG" >> "$LOG/pip.log" 2>&1; then
    touch "$CACHE/py/.done-v1"
    return 0
  fi
  return 1
}
