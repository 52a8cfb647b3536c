#!/usr/bin/env bash
# The official conformance suite against the upstream directly and through the proxy, in the
# same run. Passes when every scenario scores at least as well through the proxy as directly.
# Usage: conformance.sh UPSTREAM_URL PROXY_URL CACHE_DIR LOG_DIR
# Exit: 0 ok, 1 worse through the proxy or the suite failed to run, 3 suite not installable.
set -uo pipefail
UP=$1 PROXY=$2 CACHE=$3 LOG=$4
DIR="$CACHE/conformance"
mkdir -p "$DIR"
if [ ! -f "$DIR/.done-v1" ]; then
  echo '{"private":true}' > "$DIR/package.json"
  # The suite needs node 22; the `node` package brings that binary from the npm registry.
  if timeout 300 npm install --prefix "$DIR" --no-audit --no-fund --loglevel=error \
      @modelcontextprotocol/conformance@0.1.16 node@22 > "$LOG/conformance-npm.log" 2>&1; then
    touch "$DIR/.done-v1"
  else
    echo "npm install of the conformance suite failed (see $LOG/conformance-npm.log)"
    exit 3
  fi
fi
NODE="$DIR/node_modules/node/bin/node"
# The suite's own "everything" fixture server lives in its source repository
# (examples/servers/typescript/everything-server.ts) and is not published: the npm package ships
# only dist/index.js, README.md, LICENSE and package.json. Say so, so a later version that does
# ship it is noticed.
PKG="$DIR/node_modules/@modelcontextprotocol/conformance"
FIXTURE=$(find "$PKG" -path "$PKG/node_modules" -prune -o -name 'everything-server*' -print 2>/dev/null | head -1)
if [ -z "$FIXTURE" ]; then
  echo "note: the suite's own fixture server is not in the npm package ($(cd "$PKG" && find . -path ./node_modules -prune -o -type f -print | sed 's|^\./||' | sort | paste -sd ' ' -)); only $UP is tested"
else
  echo "note: the npm package now ships a fixture server ($FIXTURE): not wired into this script yet"
fi
SUITE="$DIR/node_modules/.bin/conformance"
run() { timeout 600 "$NODE" "$SUITE" server --url "$1" 2>&1 | grep -E '^(✓|✗|Total:)'; }
run "$UP" > "$LOG/conformance-direct.txt"
run "$PROXY" > "$LOG/conformance-proxy.txt"
echo "score direct: $(grep '^Total:' "$LOG/conformance-direct.txt")"
echo "score proxy:  $(grep '^Total:' "$LOG/conformance-proxy.txt")"
grep -q '^Total:' "$LOG/conformance-direct.txt" && grep -q '^Total:' "$LOG/conformance-proxy.txt" || {
  echo "the suite did not finish"; exit 1; }
worse=0
while IFS= read -r line; do
  name=${line#* }; name=${name%%:*}
  d=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/')
  p=$(grep -E "^(✓|✗) $name:" "$LOG/conformance-proxy.txt" | sed -E 's/.*: ([0-9]+) passed.*/\1/')
  if [ -z "$p" ] || [ "$p" -lt "$d" ]; then
    echo "FAIL scenario $name: $d passed directly, ${p:-none} through the proxy"
    worse=1
  elif [ "$p" -gt "$d" ]; then
    echo "note: scenario $name: $d passed directly, $p through the proxy"
  fi
done < <(grep -E '^(✓|✗) ' "$LOG/conformance-direct.txt")
exit $worse
