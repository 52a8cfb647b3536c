"""Added latency of a bridge: the same `echo` call from the Python SDK through one `shoal proxy`,
across the bridge and in the upstream's own era (same-era path), and straight to the upstream
as the floor. Blocks of 20 calls alternate between the three for ROUNDS rounds; prints p50/p90
of each and the differences as "figure …" lines (a benchmark: reported, never judged).
Env: URL (a bridged proxy's endpoint), UPSTREAM, ROUNDS (default 10), DIRECTION
(`2026-to-2025`, default: a 2025 upstream; `2025-to-2026`: a 2026-07-28 upstream)."""

import asyncio
import contextlib
import os
import statistics
import time

from mcp import Client

URL, UPSTREAM = os.environ["URL"], os.environ["UPSTREAM"]
ROUNDS = int(os.environ.get("ROUNDS", "10"))


async def main():
    if os.environ.get("DIRECTION", "2026-to-2025") == "2025-to-2026":
        direct, same, bridged = "direct 2026", "proxy 2026 (same era)", "bridge 2025->2026"
        clients = {
            direct: Client(UPSTREAM, mode="2026-07-28"),
            same: Client(URL, mode="2026-07-28"),
            bridged: Client(URL, mode="legacy"),
        }
    else:
        direct, same, bridged = "direct 2025", "proxy 2025 (same era)", "bridge 2026->2025"
        clients = {
            direct: Client(UPSTREAM, mode="legacy"),
            same: Client(URL, mode="legacy"),
            bridged: Client(URL, mode="auto"),
        }
    times = {name: [] for name in clients}
    async with contextlib.AsyncExitStack() as stack:
        for c in clients.values():
            await stack.enter_async_context(c)
        for name, c in clients.items():  # warm-up
            for _ in range(5):
                await c.call_tool("echo", {"message": "w"})
        for _ in range(ROUNDS):
            for name, c in clients.items():
                for _ in range(20):
                    t = time.perf_counter()
                    await c.call_tool("echo", {"message": "x"})
                    times[name].append((time.perf_counter() - t) * 1000)
    p50 = {}
    for name, t in times.items():
        t.sort()
        p50[name] = statistics.median(t)
        print(f"figure {name}: p50 {p50[name]:.2f} ms, p90 {t[int(len(t) * 0.9)]:.2f} ms ({len(t)} calls)")
    print(f"figure {bridged} added over the same-era proxy (p50): {p50[bridged] - p50[same]:+.2f} ms")
    print(f"figure same-era proxy added over direct (p50): {p50[same] - p50[direct]:+.2f} ms")


asyncio.run(asyncio.wait_for(main(), 240))
