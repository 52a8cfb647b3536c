"""End-to-end scenario with the official Python SDK (`mcp`, legacy = session mode) against two
proxy instances sharing one Redis: requests alternate between URL_A and URL_B; instance B
(PID_B) is killed mid-session and the session carries on through A.
Prints "ok …" / "FAIL …" lines; exit 1 on any failure."""

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "scripts" / "e2e"))
from alternating import Alternating, Report  # noqa: E402

A = os.environ["URL_A"]
report = Report()
route = Alternating(A, os.environ["URL_B"])


async def main():
    http = httpx2.AsyncClient(transport=route, timeout=30)
    transport = streamable_http_client(A, http_client=http)
    async with Client(transport, mode="legacy") as client:
        report.ok("initialize (legacy, session mode) through the proxy")
        good = 0
        for i in range(6):
            tools = await client.list_tools()
            if any(t.name == "echo" for t in tools.tools):
                good += 1
            r = await client.call_tool("echo", {"message": f"py{i}"})
            if f"py{i}" in str(r.content):
                good += 1
        hosts = {entry.split("->")[1] for entry in route.log}
        if good == 12 and hosts == {"A", "B"} and len(route.sessions) == 1:
            report.ok("12 requests alternating between instances, one session id")
        else:
            report.fail("alternating", f"good={good} hosts={hosts} sessions={len(route.sessions)}")
        os.kill(int(os.environ["PID_B"]), signal.SIGKILL)
        route.b_dead = True
        after = 0
        for i in range(3):
            r = await client.call_tool("get-sum", {"a": i, "b": 100})
            if str(i + 100) in str(r.content):
                after += 1
        if after == 3 and len(route.sessions) == 1:
            report.ok("instance B killed; the same session carries on through A")
        else:
            report.fail("kill", f"after={after} sessions={len(route.sessions)}")
    await http.aclose()


try:
    asyncio.run(asyncio.wait_for(main(), 120))
except BaseException as e:  # noqa: BLE001 - report anything as a failure line
    report.fail("python client", repr(e))
sys.exit(1 if report.failures else 0)
