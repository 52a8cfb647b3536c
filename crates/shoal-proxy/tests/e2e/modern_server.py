"""A 2026-07-28-only MCP server for the 2025-to-2026 bridge test, built with the official
Python SDK (`mcp` 2.x, `MCPServer`). The SDK serves both eras; a small ASGI guard in front
makes it speak 2026-07-28 only (modern_guard.py): `initialize`, any `Mcp-Session-Id`, GET and
DELETE are refused, and counted (GET /stats shows the counts).
Env: PORT."""

import asyncio
import json
import os

from typing import Annotated

import uvicorn
from modern_guard import only_2026
from pydantic import Field
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import (
    CreateMessageRequest,
    CreateMessageRequestParams,
    ElicitRequest,
    ElicitRequestFormParams,
    InputRequiredResult,
    ListRootsRequest,
    SamplingMessage,
    TextContent,
    ToolAnnotations,
)

server = MCPServer("modern-upstream", instructions="a 2026-only test upstream")


@server.tool()
async def echo(message: str) -> str:
    """Returns the message."""
    return message


@server.tool()
async def countdown(steps: int, ctx: Context) -> str:
    """Reports `steps` progress notifications, 150 ms apart, then finishes."""
    for i in range(steps):
        await ctx.report_progress(i + 1, steps, f"step {i + 1}")
        await asyncio.sleep(0.15)
    return f"countdown of {steps} completed"


@server.tool()
async def touch_tools(ctx: Context) -> str:
    """Tells `subscriptions/listen` subscribers the tool list changed."""
    await ctx.notify_tools_changed()
    return "tools changed"


@server.tool()
async def ask_name(ctx: Context) -> str | InputRequiredResult:
    """Asks the client for a name (2026 multi-round-trip: an input_required result, then the
    retried call with the answer), then greets it; the state says which round it is."""
    answers = ctx.input_responses or {}
    got = answers.get("name")
    if got is None:
        schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
        return InputRequiredResult(
            input_requests={"name": ElicitRequest(params=ElicitRequestFormParams(message="Your name?", requested_schema=schema))},
            request_state="asked-name",
        )
    content = getattr(got, "content", None) or {}
    return f"hello {content.get('name', '?')} (state {ctx.request_state})"


@server.tool()
async def ask_model(topic: str, ctx: Context) -> str | InputRequiredResult:
    """Asks the client's model (sampling) about `topic`, then reports its answer."""
    got = (ctx.input_responses or {}).get("sample")
    if got is None:
        msg = SamplingMessage(role="user", content=TextContent(type="text", text=f"one word about {topic}"))
        return InputRequiredResult(
            input_requests={"sample": CreateMessageRequest(params=CreateMessageRequestParams(messages=[msg], max_tokens=10))},
            request_state="asked-model",
        )
    content = getattr(got, "content", None)
    text = getattr(content, "text", None) or "?"
    return f"the model said: {text}"


@server.tool()
async def count_roots(ctx: Context) -> str | InputRequiredResult:
    """Asks the client for its roots, then counts them."""
    got = (ctx.input_responses or {}).get("roots")
    if got is None:
        return InputRequiredResult(input_requests={"roots": ListRootsRequest()}, request_state="asked-roots")
    roots = getattr(got, "roots", None) or []
    return f"{len(roots)} roots: {', '.join(str(r.uri) for r in roots)}"


@server.resource("note://greeting")
def greeting() -> str:
    """A resource whose updates listeners can subscribe to."""
    return "hello"


@server.tool()
async def touch_note(ctx: Context) -> str:
    """Tells `subscriptions/listen` subscribers of note://greeting that it changed."""
    await ctx.notify_resource_updated("note://greeting")
    return "note touched"


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
async def flaky_lookup(key: str) -> str:
    """Read-only; the guard breaks the response stream of its first call."""
    return f"value of {key}"


@server.tool()
async def flaky_write(key: str) -> str:
    """Has effects (no annotations); the guard breaks every response stream of it."""
    return f"wrote {key}"


@server.tool()
async def deploy(
    region: Annotated[str, Field(description="A region, mirrored in the Mcp-Param-Region header",
                                 json_schema_extra={"x-mcp-header": "Region"})],
) -> str:
    """Its `region` rides an `Mcp-Param-Region` header (2026-07-28), which the SDK checks
    against the body: a call whose header is missing or different is refused (-32020)."""
    return f"deployed to {region}"


inner = server.streamable_http_app(stateless_http=True)
refused = {"initialize": 0, "session_header": 0, "get_or_delete": 0, "posts": 0}
# The request ids of the calls of the flaky tools, in arrival order.
flaky = {"flaky_lookup": [], "flaky_write": []}


async def breaks_flaky_streams(msg, send):
    """Breaks the response stream of the first `flaky_lookup` call and of every `flaky_write`."""
    name = (msg.get("params") or {}).get("name") if msg.get("method") == "tools/call" else None
    if name not in flaky:
        return False
    flaky[name].append(msg.get("id"))
    if name == "flaky_lookup" and len(flaky[name]) > 1:
        return False
    # A response stream that breaks before the answer: the head and a comment, then the
    # connection is dropped (uvicorn closes it when the app fails mid-response).
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    await send({"type": "http.response.body", "body": b": working\n\n", "more_body": True})
    raise ConnectionAbortedError("the test upstream breaks this response stream")


async def app(scope, receive, send):
    if scope["type"] == "http" and scope["path"] == "/stats":
        body = json.dumps({**refused, "flaky": flaky}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        return await send({"type": "http.response.body", "body": body})
    return await only_2026(inner, scope, receive, send, counts=refused, before=breaks_flaky_streams)


uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
