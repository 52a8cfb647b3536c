"""End-to-end scenario with the official Python SDK (`mcp`, legacy = session mode) against two
replicas of the shoal-rmcp example server sharing one Redis: requests alternate between URL_A
and URL_B; a tool on one asks the client by elicitation and the answer goes to the other;
replica B (PID_B) is killed mid-session and the session carries on through A.
Prints "ok …" / "FAIL …" lines; exit 1 on any failure."""

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx2
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "scripts" / "e2e"))
from alternating import Alternating, Report  # noqa: E402

A = os.environ["URL_A"]
report = Report()
route = Alternating(A, os.environ["URL_B"])


async def elicit(context, params):
    return types.ElicitResult(action="accept", content={"name": "Grace"})


def text(r):
    return " ".join(getattr(c, "text", "") for c in r.content)


async def main():
    http = httpx2.AsyncClient(transport=route, timeout=30)
    transport = streamable_http_client(A, http_client=http)
    async with Client(transport, mode="legacy", elicitation_callback=elicit) as client:
        report.ok("initialize (legacy, session mode) on replica A")
        good = 0
        for i in range(4):
            if text(await client.call_tool("echo", {"message": f"py{i}"})) == f"py{i}":
                good += 1
            if text(await client.call_tool("add", {"a": i, "b": 10})) == str(i + 10):
                good += 1
        hosts = {entry.split("->")[1] for entry in route.log}
        if good == 8 and hosts == {"A", "B"} and len(route.sessions) == 1:
            report.ok("8 tool calls alternating between replicas, one session id")
        else:
            report.fail("alternating", f"good={good} log={route.log} sessions={len(route.sessions)}")
        mark = len(route.log)
        greeting = text(await client.call_tool("ask_name", {}))
        if greeting == "Hello, Grace!":
            report.ok(f"elicitation answered across replicas: {greeting!r} ({' '.join(route.log[mark:])})")
        else:
            report.fail("elicitation", f"{greeting!r} ({route.log[mark:]})")
        os.kill(int(os.environ["PID_B"]), signal.SIGKILL)
        route.b_dead = True
        after = 0
        for i in range(3):
            if text(await client.call_tool("add", {"a": i, "b": 100})) == str(i + 100):
                after += 1
        if after == 3 and len(route.sessions) == 1:
            report.ok("replica B killed; the same session carries on through A")
        else:
            report.fail("kill", f"after={after} sessions={len(route.sessions)}")
    await http.aclose()


try:
    asyncio.run(asyncio.wait_for(main(), 120))
except BaseException as e:  # noqa: BLE001 - report anything as a failure line
    report.fail("python client", repr(e))
sys.exit(1 if report.failures else 0)
