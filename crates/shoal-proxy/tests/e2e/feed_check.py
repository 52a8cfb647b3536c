"""The change feed and the analytics after the e2e run's real clients went through the proxies.

Reads the whole feed with `shoal tail --from start --json` and checks it: every session whose
frames are in it was created first (per-session order across instances), frame seqs of a
session increase, and nothing is unreadable. Then waits (bounded) for the analytics consumer
the proxies run to catch up and compares `shoal analytics --json` with counts made from the
feed itself: sessions created, frames per method (exact).

usage: feed_check.py SHOAL_BIN STORE_URL
"""
import collections
import json
import subprocess
import sys
import time

shoal, store = sys.argv[1], sys.argv[2]


def run(*args, timeout=60):
    out = subprocess.run([shoal, "--store", store, "--json", *args], capture_output=True,
                         text=True, timeout=timeout)
    if out.returncode != 0:
        print(f"FAIL feed: shoal {' '.join(args)} exited {out.returncode}: {out.stderr.strip()}")
        sys.exit(1)
    return out.stdout


entries = [json.loads(l) for l in run("tail", "--from", "start", "--for", "2s").splitlines() if l]
if not entries:
    print("FAIL feed: the feed is empty after the run")
    sys.exit(1)
created, last_seq, problems = set(), {}, []
methods = collections.Counter()
for e in entries:
    sid, kind = e["session_id"], e["kind"]
    if kind == "other":
        problems.append(f"unreadable entry {e['id']}")
    elif kind == "created":
        created.add(sid)
    elif kind == "frame":
        if sid not in created:
            problems.append(f"frame of {sid} before its creation")
        seq = e.get("seq", 0)
        if seq <= last_seq.get(sid, 0):
            problems.append(f"{sid}: seq {seq} after {last_seq.get(sid)}")
        last_seq[sid] = seq
        method = (e.get("frame") or {}).get("method")
        if method:
            methods[method] += 1
kinds = collections.Counter(e["kind"] for e in entries)
if problems:
    print(f"FAIL feed: {len(problems)} problems, first: {problems[:3]}")
    sys.exit(1)
print(f"ok {len(entries)} entries from every instance ({dict(kinds)}): each session "
      f"created before its frames, seqs increasing per session, none unreadable")

deadline = time.time() + 40
report = None
while time.time() < deadline:
    report = json.loads(run("analytics", "--top", "1000"))
    group = [g for g in report["feed"]["groups"] if g["name"] == "analytics"]
    if group and group[0]["pending"] == 0 and group[0]["lag"] == 0:
        report = json.loads(run("analytics", "--top", "1000"))
        break
    time.sleep(0.5)
else:
    print(f"FAIL analytics: the proxies' consumer did not catch up in 40 s: {report and report['feed']}")
    sys.exit(1)
got = {m["name"]: m["count"] for m in report["methods"]}
want = dict(methods)
if report["totals"].get("created", 0) != len(created) or got != want:
    print(f"FAIL analytics: created {report['totals'].get('created')} vs {len(created)} in the "
          f"feed; methods {got} vs {want}")
    sys.exit(1)
answered = sum((m.get("latency") or {}).get("samples", 0) for m in report["methods"])
print(f"ok analytics: kept by the proxies, equal to the feed: {len(created)} sessions, "
      f"{sum(want.values())} method frames over {len(want)} methods, {answered} requests "
      f"answered with latency")
