"""End-to-end scenario with the official Python SDK (`mcp`, legacy = session mode) against two
proxy instances sharing one Redis: requests alternate between URL_A and URL_B; instance B
(PID_B) is killed mid-session and the session carries on through A.
Prints "ok …" / "FAIL …" lines; exit 1 on any failure."""

import asyncio
import os
import signal
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

A = httpx2.URL(os.environ["URL_A"])
B = httpx2.URL(os.environ["URL_B"])
failures = 0
state = {"turn": 0, "b_dead": False, "hosts": set(), "sessions": set()}


def ok(name):
    print(f"ok {name}", flush=True)


def fail(name, why):
    global failures
    failures += 1
    print(f"FAIL {name}: {why}", flush=True)


class Alternating(httpx2.AsyncBaseTransport):
    """Sends each request to the other instance (only A once B is dead)."""

    def __init__(self):
        self.inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request):
        target = A if state["b_dead"] or state["turn"] % 2 == 0 else B
        state["turn"] += 1
        state["hosts"].add(target.port)
        sid = request.headers.get("mcp-session-id")
        if sid:
            state["sessions"].add(sid)
        request.url = request.url.copy_with(host=target.host, port=target.port)
        return await self.inner.handle_async_request(request)

    async def aclose(self):
        await self.inner.aclose()


async def main():
    http = httpx2.AsyncClient(transport=Alternating(), timeout=30)
    transport = streamable_http_client(str(A), http_client=http)
    async with Client(transport, mode="legacy") as client:
        ok("initialize (legacy, session mode) through the proxy")
        good = 0
        for i in range(6):
            tools = await client.list_tools()
            if any(t.name == "echo" for t in tools.tools):
                good += 1
            r = await client.call_tool("echo", {"message": f"py{i}"})
            if f"py{i}" in str(r.content):
                good += 1
        if good == 12 and len(state["hosts"]) == 2 and len(state["sessions"]) == 1:
            ok("12 requests alternating between instances, one session id")
        else:
            fail("alternating", f"good={good} hosts={state['hosts']} sessions={len(state['sessions'])}")
        os.kill(int(os.environ["PID_B"]), signal.SIGKILL)
        state["b_dead"] = True
        after = 0
        for i in range(3):
            r = await client.call_tool("get-sum", {"a": i, "b": 100})
            if str(i + 100) in str(r.content):
                after += 1
        if after == 3 and len(state["sessions"]) == 1:
            ok("instance B killed; the same session carries on through A")
        else:
            fail("kill", f"after={after} sessions={len(state['sessions'])}")
    await http.aclose()


try:
    asyncio.run(asyncio.wait_for(main(), 120))
except BaseException as e:  # noqa: BLE001 - report anything as a failure line
    fail("python client", repr(e))
sys.exit(1 if failures else 0)
