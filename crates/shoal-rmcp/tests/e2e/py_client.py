"""End-to-end scenario with the official Python SDK (`mcp`, legacy = session mode) against two
replicas of the shoal-rmcp example server sharing one Redis: requests alternate between URL_A
and URL_B; a tool on one asks the client by elicitation and the answer goes to the other;
replica B (PID_B) is killed mid-session and the session carries on through A.
Prints "ok …" / "FAIL …" lines; exit 1 on any failure."""

import asyncio
import os
import signal
import sys

import httpx2
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client

A = httpx2.URL(os.environ["URL_A"])
B = httpx2.URL(os.environ["URL_B"])
failures = 0
state = {"turn": 0, "b_dead": False, "hosts": [], "sessions": set()}


def ok(name):
    print(f"ok {name}", flush=True)


def fail(name, why):
    global failures
    failures += 1
    print(f"FAIL {name}: {why}", flush=True)


class Alternating(httpx2.AsyncBaseTransport):
    """Sends each request to the other replica (only A once B is dead)."""

    def __init__(self):
        self.inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request):
        target = A if state["b_dead"] or state["turn"] % 2 == 0 else B
        state["turn"] += 1
        state["hosts"].append(f"{request.method}->{'A' if target == A else 'B'}")
        sid = request.headers.get("mcp-session-id")
        if sid:
            state["sessions"].add(sid)
        request.url = request.url.copy_with(host=target.host, port=target.port)
        return await self.inner.handle_async_request(request)

    async def aclose(self):
        await self.inner.aclose()


async def elicit(context, params):
    return types.ElicitResult(action="accept", content={"name": "Grace"})


def text(r):
    return " ".join(getattr(c, "text", "") for c in r.content)


async def main():
    http = httpx2.AsyncClient(transport=Alternating(), timeout=30)
    transport = streamable_http_client(str(A), http_client=http)
    async with Client(transport, mode="legacy", elicitation_callback=elicit) as client:
        ok("initialize (legacy, session mode) on replica A")
        good = 0
        for i in range(4):
            if text(await client.call_tool("echo", {"message": f"py{i}"})) == f"py{i}":
                good += 1
            if text(await client.call_tool("add", {"a": i, "b": 10})) == str(i + 10):
                good += 1
        hosts = {h.split("->")[1] for h in state["hosts"]}
        if good == 8 and hosts == {"A", "B"} and len(state["sessions"]) == 1:
            ok("8 tool calls alternating between replicas, one session id")
        else:
            fail("alternating", f"good={good} hosts={state['hosts']} sessions={len(state['sessions'])}")
        mark = len(state["hosts"])
        greeting = text(await client.call_tool("ask_name", {}))
        if greeting == "Hello, Grace!":
            ok(f"elicitation answered across replicas: {greeting!r} ({' '.join(state['hosts'][mark:])})")
        else:
            fail("elicitation", f"{greeting!r} ({state['hosts'][mark:]})")
        os.kill(int(os.environ["PID_B"]), signal.SIGKILL)
        state["b_dead"] = True
        after = 0
        for i in range(3):
            if text(await client.call_tool("add", {"a": i, "b": 100})) == str(i + 100):
                after += 1
        if after == 3 and len(state["sessions"]) == 1:
            ok("replica B killed; the same session carries on through A")
        else:
            fail("kill", f"after={after} sessions={len(state['sessions'])}")
    await http.aclose()


try:
    asyncio.run(asyncio.wait_for(main(), 120))
except BaseException as e:  # noqa: BLE001 - report anything as a failure line
    fail("python client", repr(e))
sys.exit(1 if failures else 0)
