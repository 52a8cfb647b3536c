"""The 2026-to-2025 bridge with the official Python SDK (`mcp` 2.x, which speaks 2026-07-28
when the server answers `server/discover`) through two `shoal proxy` instances on one Redis,
in front of a 2025-revision upstream (server-everything). Requests alternate between the
instances. Env: URL_A, URL_B (proxy endpoints), UPSTREAM (the upstream's endpoint),
SHOAL_BIN, STORE. Prints "ok …" / "FAIL …" lines; exit 1 on any failure."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "scripts" / "e2e"))
from alternating import Alternating, Report  # noqa: E402

A, B = os.environ["URL_A"], os.environ["URL_B"]
report = Report()


def bridge_sessions():
    out = subprocess.run(
        [os.environ["SHOAL_BIN"], "--store", os.environ["STORE"], "--json", "sessions", "list", "--all"],
        check=True, capture_output=True, text=True,
    ).stdout
    doc = json.loads(out)
    sessions = doc["sessions"] if isinstance(doc, dict) else doc
    return [s for s in sessions if s["id"].startswith("bridge-")]


def connect(principal, route, **callbacks):
    http = httpx2.AsyncClient(transport=route, timeout=30, headers={"x-shoal-principal": principal})
    return http, Client(streamable_http_client(A, http_client=http), mode="auto", **callbacks)


class Watching(Alternating):
    """Alternating, and notes where each retried request (one carrying a requestState) and each
    first call of a tool went."""

    def __init__(self, a, b):
        super().__init__(a, b)
        self.calls = []
        self.posts = []

    async def handle_async_request(self, request):
        body = request.content.decode(errors="replace") if request.method == "POST" else ""
        response = await super().handle_async_request(request)
        if body:
            self.posts.append((self.log[-1].split("->")[1], body))
        if '"tools/call"' in body:
            where = self.log[-1].split("->")[1]
            self.calls.append(("retry" if '"requestState"' in body else "call", where, body))
        return response


MODERN_HEADERS = {"mcp-protocol-version": "2026-07-28", "accept": "application/json, text/event-stream"}


def modern_call(rid, name, arguments, capabilities, **params):
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {
        "name": name, "arguments": arguments, **params, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": capabilities,
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"}}}}


def last_message(resp):
    """The last JSON-RPC message of a JSON or SSE response."""
    if resp.headers.get("content-type", "").startswith("application/json"):
        return resp.json()
    found = None
    for line in resp.text.splitlines():
        if line.startswith("data:") and line[5:].strip():
            found = json.loads(line[5:])
    return found


async def questions():
    """The upstream's questions (elicitation, sampling) asked of the 2026 client as
    input_required results, its retries on the other instance."""
    asked = []

    async def on_elicit(context, params):
        asked.append(("elicitation", params.message))
        return types.ElicitResult(action="accept", content={"name": "Ada Lovelace"})

    async def on_sample(context, params):
        asked.append(("sampling", params.messages[0].content.text))
        return types.CreateMessageResult(role="assistant", model="test-model",
                                         content=types.TextContent(type="text", text="cerulean"))

    route = Watching(A, B)
    http, client = connect("carol", route, elicitation_callback=on_elicit, sampling_callback=on_sample)
    async with client:
        r = await client.call_tool("trigger-elicitation-request", {})
        text = str(r.content)
        first = [c for c in route.calls if "trigger-elicitation" in c[2]]
        hops = [(kind, where) for kind, where, _ in first]
        if ("Ada Lovelace" in text and not r.is_error and len(asked) == 1 and len(hops) == 2
                and hops[0][0] == "call" and hops[1][0] == "retry" and hops[0][1] != hops[1][1]):
            report.ok(f"elicitation round trip: the 2025 upstream's elicitation/create became an input_required result; "
                      f"the client's retry on the other instance ({hops}) carried the answer upstream and got the result")
        else:
            report.fail("elicitation round trip", f"asked={asked} hops={hops} result={text[:300]}")
        r = await client.call_tool("trigger-sampling-request", {"prompt": "the sky", "maxTokens": 5})
        text = str(r.content)
        if "cerulean" in text and not r.is_error and any(k == "sampling" and "the sky" in m for k, m in asked):
            report.ok("sampling round trip: sampling/createMessage asked as input_required, answered, result returned")
        else:
            report.fail("sampling round trip", f"asked={asked} result={text[:300]}")
    await http.aclose()

    # The requestState is its principal's: another principal's retry with it is refused, and
    # the held request still completes for its owner.
    caps = {"elicitation": {}}
    async with httpx2.AsyncClient(timeout=30) as raw:
        hdr = {**MODERN_HEADERS, "mcp-method": "tools/call", "mcp-name": "trigger-elicitation-request"}
        first = last_message(await raw.post(A, json=modern_call(1, "trigger-elicitation-request", {}, caps),
                                            headers={**hdr, "x-shoal-principal": "dave"}))
        res = (first or {}).get("result", {})
        state = res.get("requestState", "")
        keys = list((res.get("inputRequests") or {}).keys())
        answer = {k: {"action": "accept", "content": {"name": "Dave"}} for k in keys}
        stolen = last_message(await raw.post(B, json=modern_call(2, "trigger-elicitation-request", {}, caps,
                                                                 inputResponses=answer, requestState=state),
                                             headers={**hdr, "x-shoal-principal": "mallory"}))
        forged = last_message(await raw.post(B, json=modern_call(3, "trigger-elicitation-request", {}, caps,
                                                                 inputResponses=answer,
                                                                 requestState="shoal-bridge." + "0" * 32 + ".1"),
                                             headers={**hdr, "x-shoal-principal": "dave"}))
        done = last_message(await raw.post(B, json=modern_call(4, "trigger-elicitation-request", {}, caps,
                                                               inputResponses=answer, requestState=state),
                                           headers={**hdr, "x-shoal-principal": "dave"}))
    refused = lambda m: (m or {}).get("error", {}).get("code") == -32602 and "requestState" in m["error"]["message"]
    if (res.get("resultType") == "input_required" and refused(stolen) and refused(forged)
            and "Dave" in json.dumps((done or {}).get("result", {})) and (done or {}).get("id") == 4):
        report.ok("a requestState is its principal's: another principal's retry and a forged one are refused (-32602); "
                  "the owner's retry on the other instance completes the call")
    else:
        report.fail("requestState ownership", f"first={first} stolen={stolen} forged={forged} done={str(done)[:300]}")


async def main():
    route = Alternating(A, B)
    http, client = connect("alice", route)
    async with client:
        if client.protocol_version == "2026-07-28":
            report.ok("the 2.x client speaks 2026-07-28 to the bridge (server/discover answered)")
        else:
            report.fail("discover", f"negotiated {client.protocol_version}")
        tools = await client.list_tools()
        good = sum(1 for t in tools.tools if t.name in ("echo", "get-sum"))
        for i in range(6):
            r = await client.call_tool("echo", {"message": f"bridged{i}"})
            good += f"bridged{i}" in str(r.content)
        hosts = {entry.split("->")[1] for entry in route.log}
        if good == 8 and hosts == {"A", "B"} and not route.sessions:
            report.ok("tools listed and 6 calls on both instances, no Mcp-Session-Id on the client side")
        else:
            report.fail("calls", f"good={good} hosts={hosts} session ids sent={route.sessions}")
        progress = []

        async def on_progress(p, total, message):
            progress.append(p)

        r = await client.call_tool(
            "trigger-long-running-operation", {"duration": 1, "steps": 4}, progress_callback=on_progress
        )
        if len(progress) == 4 and not r.is_error:
            report.ok(f"a progress-streaming tool: {len(progress)} progress notifications, then its result")
        else:
            report.fail("progress", f"progress={progress} result={r}")

        mine = [s for s in bridge_sessions() if s.get("principal") == "alice"]
        if len(mine) == 1:
            report.ok("one upstream session for alice, kept in the store and used by both instances")
        else:
            report.fail("shared upstream session", f"{mine}")

        # The store record of the upstream session is not a client session: naming it as a
        # 2025 client's Mcp-Session-Id gets 404 (its id is derived, not secret).
        async with httpx2.AsyncClient() as raw:
            hijack = await raw.post(A, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers={
                "mcp-session-id": mine[0]["id"] if mine else "none", "x-shoal-principal": "alice",
                "mcp-protocol-version": "2025-11-25", "accept": "application/json, text/event-stream"})
        if hijack.status_code == 404:
            report.ok("the upstream session's record cannot be used as a 2025 session (404)")
        else:
            report.fail("record used as a session", f"{hijack.status_code} {hijack.text[:200]}")

        # The upstream forgets the session: the next request re-initializes transparently.
        old = mine[0]["upstream_session_id"] if mine else None
        async with httpx2.AsyncClient() as raw:
            d = await raw.delete(os.environ["UPSTREAM"], headers={"mcp-session-id": old or "", "mcp-protocol-version": "2025-11-25"})
        r = await client.call_tool("echo", {"message": "after-expiry"})
        now = [s for s in bridge_sessions() if s.get("principal") == "alice"]
        new = now[0]["upstream_session_id"] if now else None
        if "after-expiry" in str(r.content) and new and new != old and d.status_code < 300:
            report.ok("the upstream ended its session; the next call re-initialized it and succeeded")
        else:
            report.fail("upstream expiry", f"delete={d.status_code} old={old} new={new} result={r}")
    await http.aclose()

    http, client = connect("bob", Alternating(A, B))
    async with client:
        r = await client.call_tool("get-sum", {"a": 2, "b": 3})
        owners = sorted(s.get("principal") for s in bridge_sessions())
        if "5" in str(r.content) and owners == ["alice", "bob"]:
            report.ok("another principal gets its own upstream session (never shared)")
        else:
            report.fail("principals", f"owners={owners} result={r}")
    await http.aclose()

    await questions()

    await listening()
    await holder_dies()


async def listening():
    """subscriptions/listen across the bridge: two listeners of one principal, one on each
    instance, share the upstream session's single GET stream (read by one instance into the
    store); a resource update the upstream sends there reaches both, stamped with each
    listener's subscription id."""
    r1, r2 = Watching(A, B), Watching(B, A)
    h1, c1 = connect("erin", r1)
    h2, c2 = connect("erin", r2)
    async with c1, c2:
        uri = str((await c1.list_resources()).resources[0].uri)
        async with c1.listen(resource_subscriptions=[uri], tools_list_changed=True) as s1, \
                c2.listen(resource_subscriptions=[uri]) as s2:
            on = [where for r in (r1, r2) for where, body in r.posts if '"subscriptions/listen"' in body]
            honored = (list(s1.honored.resource_subscriptions or []), s1.honored.tools_list_changed,
                       list(s2.honored.resource_subscriptions or []))
            await c1.call_tool("toggle-subscriber-updates", {})
            got = []
            try:
                for s in (s1, s2):
                    ev = await asyncio.wait_for(s.__anext__(), 20)
                    got.append(getattr(ev, "uri", repr(ev)))
            except (TimeoutError, asyncio.TimeoutError):
                got.append("timeout")
            await c1.call_tool("toggle-subscriber-updates", {})
        if got == [uri, uri] and sorted(on) == ["A", "B"] and honored == ([uri], True, [uri]):
            report.ok(f"subscriptions/listen on both instances (acknowledged {honored[0]}, toolsListChanged): "
                      "a notifications/resources/updated from the 2025 upstream's GET stream reached both listeners")
        else:
            report.fail("listen", f"got={got} listens on={on} honored={honored}")
    await h1.aclose()
    await h2.aclose()


async def holder_dies():
    """The instance holding a request for the client's answer is killed (SIGKILL): the retry on
    the other instance is told the request may or may not have completed, without waiting for
    the idle timeout. Runs last: instance A is gone afterwards."""
    caps = {"elicitation": {}}
    hdr = {**MODERN_HEADERS, "mcp-method": "tools/call", "mcp-name": "trigger-elicitation-request",
           "x-shoal-principal": "frank"}
    async with httpx2.AsyncClient(timeout=60) as raw:
        first = last_message(await raw.post(A, json=modern_call(1, "trigger-elicitation-request", {}, caps),
                                            headers=hdr))
        res = (first or {}).get("result", {})
        answer = {k: {"action": "accept", "content": {"name": "Frank"}} for k in (res.get("inputRequests") or {})}
        os.kill(int(os.environ["PID_A"]), signal.SIGKILL)
        started = time.monotonic()
        after = last_message(await raw.post(B, json=modern_call(2, "trigger-elicitation-request", {}, caps,
                                                                inputResponses=answer,
                                                                requestState=res.get("requestState", "")),
                                            headers=hdr))
        took = time.monotonic() - started
    message = ((after or {}).get("error") or {}).get("message", "")
    if res.get("resultType") == "input_required" and "stopped" in message and took < 40:
        report.ok(f"the instance holding a request was killed: the retry on the other one was told in {took:.1f} s: {message[:90]}")
    else:
        report.fail("holder killed", f"first={first} after={after} took={took:.1f}s")


try:
    asyncio.run(asyncio.wait_for(main(), 120))
except BaseException as e:  # noqa: BLE001 - report anything as a failure line
    report.fail("python client", repr(e))
sys.exit(1 if report.failures else 0)
