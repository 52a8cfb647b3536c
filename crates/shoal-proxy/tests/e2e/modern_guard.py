"""An ASGI guard that makes an MCP server built with the Python SDK speak 2026-07-28 only, as a
server that dropped the 2025 revisions would: GET and DELETE are refused (405), any
`Mcp-Session-Id` (400), a 2025 `initialize` handshake (400). Used by the e2e test upstreams (modern_server.py,
conformance_fixture.py)."""

import json


async def refuse(send, status, why):
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": why}}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


async def only_2026(inner, scope, receive, send, counts=None, before=None):
    """Serves one ASGI call with `inner` unless 2025 traffic; `counts` (a dict) counts what was
    refused and the POSTs seen; `before(msg, send)` may answer a POST itself (returns True)."""
    counts = counts if counts is not None else {}

    def count(key):
        counts[key] = counts.get(key, 0) + 1

    if scope["type"] != "http":
        return await inner(scope, receive, send)
    if scope["method"] in ("GET", "DELETE"):
        count("get_or_delete")
        return await refuse(send, 405, "2026-07-28 only: no GET stream, no DELETE")
    if b"mcp-session-id" in dict(scope["headers"]):
        count("session_header")
        return await refuse(send, 400, "2026-07-28 only: no sessions")
    raw, replay = await buffered(receive)
    count("posts")
    try:
        msg = json.loads(raw)
    except ValueError:
        msg = {}
    if isinstance(msg, dict) and msg.get("method") == "initialize" and not enveloped(msg):
        count("initialize")
        return await refuse(send, 400, "2026-07-28 only: no initialize")
    if before is not None and isinstance(msg, dict) and await before(msg, send):
        return None
    return await inner(scope, replay, send)


def enveloped(msg):
    """Whether a request carries the 2026 per-request `_meta` envelope. An `initialize` that does
    is not a 2025 handshake: the SDK answers it as every method 2026-07-28 removed (404, -32601)."""
    meta = (msg.get("params") or {}).get("_meta") or {}
    return isinstance(meta, dict) and "io.modelcontextprotocol/protocolVersion" in meta


async def buffered(receive):
    """The whole request body, and a `receive` that hands it over again."""
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    raw, replayed = b"".join(chunks), False

    async def again():
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": raw, "more_body": False}

    return raw, again
