"""The conformance suite's server fixture, for the era-bridge conformance run
(bridge_conformance.sh), built with the official Python SDK (`mcp` 2.x, `MCPServer`).

It offers the tools, resources, prompts and completion the suite's server scenarios ask for
(the names and contents their descriptions give), in one of two eras:
- ERA=2026: 2026-07-28 only, sessionless: the guard of modern_guard.py refuses `initialize`,
  any `Mcp-Session-Id`, GET and DELETE. Tools that need the client answer with
  an `input_required` result and finish when the request comes back with `inputResponses`.
- ERA=2025: 2025 sessions (`initialize`, `Mcp-Session-Id`, the GET stream); tools that need
  the client send it `sampling/createMessage` or `elicitation/create` mid-call.
Env: PORT, ERA."""

import asyncio
import json
import os

import uvicorn
from modern_guard import only_2026
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts.base import UserMessage
from mcp_types import (
    AudioContent,
    CallToolResult,
    CreateMessageRequest,
    CreateMessageRequestParams,
    ElicitRequest,
    ElicitRequestFormParams,
    EmbeddedResource,
    ImageContent,
    InputRequiredResult,
    SamplingMessage,
    TextContent,
    TextResourceContents,
)

ERA = os.environ.get("ERA", "2026")
# A 1x1 PNG and a 44-byte silent WAV, base64.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
WAV = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQAAAAA="

server = MCPServer("shoal-era-fixture", instructions=f"conformance fixture ({ERA} era)")


def modern(ctx: Context) -> bool:
    return (ctx.protocol_version or "").startswith("2026")


@server.tool()
async def test_simple_text() -> str:
    """Returns simple text."""
    return "This is a simple text response for testing."


@server.tool()
async def test_image_content() -> list[ImageContent]:
    """Returns an image."""
    return [ImageContent(type="image", data=PNG, mime_type="image/png")]


@server.tool()
async def test_audio_content() -> list[AudioContent]:
    """Returns audio."""
    return [AudioContent(type="audio", data=WAV, mime_type="audio/wav")]


def embedded() -> EmbeddedResource:
    return EmbeddedResource(type="resource", resource=TextResourceContents(
        uri="test://embedded-resource", mime_type="text/plain", text="This is an embedded resource content."))


@server.tool()
async def test_embedded_resource() -> list[EmbeddedResource]:
    """Returns an embedded resource."""
    return [embedded()]


@server.tool()
async def test_multiple_content_types() -> list[TextContent | ImageContent | EmbeddedResource]:
    """Returns text, an image and a resource."""
    return [TextContent(type="text", text="Multiple content types test:"),
            ImageContent(type="image", data=PNG, mime_type="image/png"), embedded()]


@server.tool()
async def test_tool_with_logging(ctx: Context) -> str:
    """Sends three log messages 50 ms apart."""
    for i, text in enumerate(["Tool execution started", "Tool processing data", "Tool execution completed"]):
        if i:
            await asyncio.sleep(0.05)
        await ctx.info(text)
    return "Tool with logging executed successfully"


@server.tool()
async def test_error_handling() -> CallToolResult:
    """Always fails (a tool error, not a protocol error)."""
    return CallToolResult(is_error=True, content=[TextContent(type="text", text="This tool intentionally returns an error for testing")])


@server.tool()
async def test_tool_with_progress(ctx: Context) -> str:
    """Reports progress 0, 50 and 100 of 100, 50 ms apart."""
    for i, p in enumerate([0, 50, 100]):
        if i:
            await asyncio.sleep(0.05)
        await ctx.report_progress(p, 100)
    return "Tool with progress executed successfully"


async def ask(ctx: Context, key: str, request, state: str):
    """The client's answer to `request` under `key`: asked mid-call (2025) or through an
    input_required result (2026; `None` is returned then, with the result to send)."""
    if modern(ctx):
        got = (ctx.input_responses or {}).get(key)
        if got is None:
            return None, InputRequiredResult(input_requests={key: request}, request_state=state)
        return got, None
    if isinstance(request, CreateMessageRequest):
        p = request.params
        return await ctx.session.create_message(p.messages, max_tokens=p.max_tokens), None
    return await ctx.session.elicit_form(request.params.message, request.params.requested_schema,
                                         related_request_id=ctx.request_id), None


@server.tool()
async def test_sampling(prompt: str, ctx: Context) -> str | InputRequiredResult:
    """Asks the client's model about `prompt`."""
    msg = SamplingMessage(role="user", content=TextContent(type="text", text=prompt))
    got, asking = await ask(ctx, "sample", CreateMessageRequest(params=CreateMessageRequestParams(messages=[msg], max_tokens=100)), "sampling")
    if asking:
        return asking
    return f"LLM response: {getattr(got.content, 'text', got.content)}"


def elicit(message: str, schema: dict) -> ElicitRequest:
    return ElicitRequest(params=ElicitRequestFormParams(message=message, requested_schema=schema))


async def elicited(ctx: Context, key: str, request: ElicitRequest, label: str) -> str | InputRequiredResult:
    got, asking = await ask(ctx, key, request, key)
    if asking:
        return asking
    return f"{label}action={got.action}, content={json.dumps(got.content)}"


@server.tool()
async def test_elicitation(message: str, ctx: Context) -> str | InputRequiredResult:
    """Asks the user for a username and an email."""
    schema = {"type": "object", "required": ["username", "email"], "properties": {
        "username": {"type": "string", "description": "User's response"},
        "email": {"type": "string", "description": "User's email address"}}}
    return await elicited(ctx, "user", elicit(message, schema), "User response: ")


@server.tool()
async def test_elicitation_sep1034_defaults(ctx: Context) -> str | InputRequiredResult:
    """Asks with a default for every primitive type."""
    schema = {"type": "object", "properties": {
        "name": {"type": "string", "default": "John Doe"},
        "age": {"type": "integer", "default": 30},
        "score": {"type": "number", "default": 95.5},
        "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
        "verified": {"type": "boolean", "default": True}}}
    return await elicited(ctx, "defaults", elicit("Please review and update the form fields with defaults", schema), "Elicitation completed: ")


@server.tool()
async def test_elicitation_sep1330_enums(ctx: Context) -> str | InputRequiredResult:
    """Asks with the five enum forms."""
    schema = {"type": "object", "properties": {
        "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
        "titledSingle": {"type": "string", "oneOf": [
            {"const": "value1", "title": "First Option"}, {"const": "value2", "title": "Second Option"},
            {"const": "value3", "title": "Third Option"}]},
        "legacyEnum": {"type": "string", "enum": ["opt1", "opt2", "opt3"],
                       "enumNames": ["Option One", "Option Two", "Option Three"]},
        "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
        "titledMulti": {"type": "array", "items": {"anyOf": [
            {"const": "value1", "title": "First Choice"}, {"const": "value2", "title": "Second Choice"},
            {"const": "value3", "title": "Third Choice"}]}}}}
    return await elicited(ctx, "enums", elicit("Please select options from the enum fields", schema), "Elicitation completed: ")


@server.resource("test://static-text", name="static-text", description="A static text resource", mime_type="text/plain")
def static_text() -> str:
    return "This is the content of the static text resource."


@server.resource("test://static-binary", name="static-binary", description="A static binary resource", mime_type="image/png")
def static_binary() -> bytes:
    import base64
    return base64.b64decode(PNG)


@server.resource("test://template/{id}/data", name="template", description="A resource template", mime_type="application/json")
def template(id: str) -> str:
    return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})


@server.prompt(description="A simple prompt without arguments")
def test_simple_prompt() -> str:
    return "This is a simple prompt for testing."


@server.prompt(description="A prompt with two required arguments")
def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
    return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"


@server.prompt(description="A prompt that embeds a resource")
def test_prompt_with_embedded_resource(resourceUri: str) -> list[UserMessage]:  # noqa: N803 - the suite's name
    res = EmbeddedResource(type="resource", resource=TextResourceContents(
        uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing."))
    return [UserMessage(content=res), UserMessage(content="Please process the embedded resource above.")]


@server.prompt(description="A prompt with an image")
def test_prompt_with_image() -> list[UserMessage]:
    return [UserMessage(content=ImageContent(type="image", data=PNG, mime_type="image/png")),
            UserMessage(content="Please analyze the image above.")]


@server.completion()
async def complete(ref, argument, context):
    from mcp_types import Completion
    values = [v for v in ["paris", "park", "party"] if v.startswith(argument.value or "")]
    return Completion(values=values, total=len(values), has_more=False)


if ERA == "2025":
    # The suite's 2025 logging and subscription scenarios need handlers MCPServer does not
    # register itself (2026 replaced them); the SDK has no public accessor for its low-level
    # server, hence the private attribute.
    from mcp_types import EmptyResult, SetLevelRequestParams, SubscribeRequestParams, UnsubscribeRequestParams

    async def accept(ctx, params):
        return EmptyResult()

    for method, params in [("logging/setLevel", SetLevelRequestParams), ("resources/subscribe", SubscribeRequestParams),
                           ("resources/unsubscribe", UnsubscribeRequestParams)]:
        server._lowlevel_server.add_request_handler(method, params, accept)

if ERA == "2026":
    inner = server.streamable_http_app(stateless_http=True)

    async def app(scope, receive, send):
        return await only_2026(inner, scope, receive, send)
else:
    app = server.streamable_http_app(stateless_http=False)

uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
