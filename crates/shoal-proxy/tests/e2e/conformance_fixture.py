"""A test fixture MCP server for the official MCP conformance suite's server scenarios, built
with the official Python SDK (`mcp` 2.x, `MCPServer`): the tools, resources, prompts and
completion those scenarios call, by the names and contents their descriptions give.

Env:
- PORT: listen on 127.0.0.1:PORT, endpoint /mcp.
- ERA=2026: a 2026-07-28-only server, sessionless; the guard of modern_guard.py refuses
  `initialize` and any `Mcp-Session-Id` (400), GET and DELETE (405), as a server that dropped
  the 2025 revisions would. Tools that need the client answer with an `input_required` result
  and finish when the call comes back with `inputResponses`.
- ERA=2025: the same tools, resources and prompts over 2025 sessions (`initialize`,
  `Mcp-Session-Id`, the GET stream, resumable streams); tools that need the client send it
  `elicitation/create`, `sampling/createMessage` or `roots/list` mid-call.
"""

import base64
import json
import os
import warnings
from typing import Annotated, Any

import anyio
import uvicorn
from modern_guard import only_2026
from mcp.server.caching import CacheHint
from mcp.server.mcpserver import Context, Elicit, ElicitationResult, MCPServer, Resolve, Sample, UserMessage
from mcp.server.mcpserver.tools import Tool
from mcp.server.streamable_http import EventMessage, EventStore
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.shared.message import ServerMessageMetadata
from mcp_types import (
    AudioContent,
    CallToolResult,
    Completion,
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    EmbeddedResource,
    EmptyResult,
    ImageContent,
    InputRequest,
    InputRequiredResult,
    ListRootsRequest,
    ListRootsResult,
    SamplingMessage,
    SetLevelRequestParams,
    SubscribeRequestParams,
    TextContent,
    TextResourceContents,
    UnsubscribeRequestParams,
)
from mcp_types.version import is_version_at_least
from pydantic import BaseModel, Field

ERA = os.environ.get("ERA", "2026")
if ERA not in ("2026", "2025"):
    raise SystemExit(f"ERA must be 2026 or 2025, not {ERA!r}")
# The suite still exercises logging (2025) and the SDK warns on every use of it: keep the log clean.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

# A 1x1 red PNG and a 44-byte silent WAV, base64.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
WAV = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQAAAAA="

# --- A tool with a JSON Schema 2020-12 input schema (SEP-1613, SEP-2106) ----------------------


class Address(BaseModel):
    street: str | None = None
    city: str | None = None


async def json_schema_2020_12_tool(
    name: str | None = None,
    address: Address | None = None,
    contactMethod: str | None = None,  # noqa: N803 - the suite's name
    phone: str | None = None,
    email: str | None = None,
) -> str:
    """Tool with JSON Schema 2020-12 features"""
    return f"contact {name or 'someone'} by {contactMethod or 'any means'}"


# MCPServer derives a tool's inputSchema from its signature; this one must carry 2020-12
# keywords no signature produces ($schema, $anchor, allOf/anyOf, if/then/else), so the tool
# is built from the function, given the schema the suite expects verbatim, and handed to the
# MCPServer constructor.
SCHEMA_2020_12 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {"address": {"$anchor": "addressDef", "type": "object",
                          "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}
TOOL_2020_12 = Tool.from_function(json_schema_2020_12_tool).model_copy(update={"parameters": SCHEMA_2020_12})


server = MCPServer(
    "shoal-conformance-fixture",
    version="1.0.0",
    instructions=f"conformance fixture ({ERA} era)",
    tools=[TOOL_2020_12],
    # SEP-2549 (2026-07-28): every cacheable result carries ttlMs and cacheScope.
    cache_hints={
        method: CacheHint(ttl_ms=60_000, scope="public")
        for method in ("tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read")
    },
)


# --- Asking the client, in either era -------------------------------------------------------
#
# Two ways, both era-agnostic. Where the wire keys and schemas are free, a tool takes its
# answer as a `Resolve(...)` parameter whose resolver returns an `Elicit`/`Sample` marker,
# and the SDK does the rest (see test_sampling). Where the 2026 scenarios name the
# `inputRequests` keys or the schemas are not pydantic-shaped (`enumNames`, titled `oneOf`),
# `ask` below sends the exact requests. Note that returning an `InputRequiredResult` is no
# era-agnostic mechanism: in a 2025 session the SDK answers it as an invalid result (-32603).


def elicitation(message: str, properties: dict[str, Any], required: list[str] | None = None) -> ElicitRequest:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return ElicitRequest(params=ElicitRequestFormParams(message=message, requested_schema=schema))


def sampling(text: str, max_tokens: int) -> CreateMessageRequest:
    msg = SamplingMessage(role="user", content=TextContent(type="text", text=text))
    return CreateMessageRequest(params=CreateMessageRequestParams(messages=[msg], max_tokens=max_tokens))


def modern(ctx: Context) -> bool:
    """Whether this request speaks 2026-07-28 (or later): no server-to-client requests."""
    return ctx.protocol_version is not None and is_version_at_least(ctx.protocol_version, "2026-07-28")


# What a client's answer to each kind of request must parse as.
ANSWER_TYPES = {
    "elicitation/create": ElicitResult,
    "sampling/createMessage": CreateMessageResult,
    "roots/list": ListRootsResult,
}


async def ask(
    ctx: Context, questions: dict[str, InputRequest], state: str | None = None
) -> dict[str, Any] | InputRequiredResult:
    """The client's answers to `questions` (request by key), keyed alike.

    2026-07-28: the answers come with the retried request (`inputResponses`); an
    `InputRequiredResult` asking for the missing or ill-typed ones (with `state` as its
    `requestState`, which the SDK seals and verifies) is returned until all are there; keys
    nobody asked for are ignored. 2025: each question is a server-to-client request sent
    mid-call on the call's own stream."""
    if modern(ctx):
        got = ctx.input_responses or {}
        answers = {k: got[k] for k, q in questions.items() if isinstance(got.get(k), ANSWER_TYPES[q.method])}
        missing = {k: q for k, q in questions.items() if k not in answers}
        if missing:
            return InputRequiredResult(input_requests=missing, request_state=state)
        return answers
    related = ServerMessageMetadata(related_request_id=ctx.request_id)
    return {k: await ctx.session.send_request(q, ANSWER_TYPES[q.method], metadata=related)
            for k, q in questions.items()}


def state_of(ctx: Context) -> dict[str, Any]:
    """The plaintext `requestState` this server minted last round (the SDK verified it)."""
    try:
        return json.loads(ctx.request_state or "{}")
    except ValueError:
        return {}


# --- Content tools ----------------------------------------------------------------------------


@server.tool()
async def test_simple_text() -> str:
    """Returns a simple text."""
    return "This is a simple text response for testing."


@server.tool()
async def test_image_content() -> list[ImageContent]:
    """Returns an image."""
    return [ImageContent(type="image", data=PNG, mime_type="image/png")]


@server.tool()
async def test_audio_content() -> list[AudioContent]:
    """Returns audio."""
    return [AudioContent(type="audio", data=WAV, mime_type="audio/wav")]


def embedded(uri: str, text: str) -> EmbeddedResource:
    return EmbeddedResource(type="resource", resource=TextResourceContents(uri=uri, mime_type="text/plain", text=text))


@server.tool()
async def test_embedded_resource() -> list[EmbeddedResource]:
    """Returns an embedded resource."""
    return [embedded("test://embedded-resource", "This is an embedded resource content.")]


@server.tool()
async def test_multiple_content_types() -> list[TextContent | ImageContent | EmbeddedResource]:
    """Returns text, an image and an embedded resource."""
    return [
        TextContent(type="text", text="Multiple content types test:"),
        ImageContent(type="image", data=PNG, mime_type="image/png"),
        embedded("test://mixed-content-resource", '{"test":"data","value":123}'),
    ]


@server.tool()
async def test_error_handling() -> CallToolResult:
    """Always fails: a tool error (isError), not a protocol error."""
    text = "This tool intentionally returns an error for testing"
    return CallToolResult(is_error=True, content=[TextContent(type="text", text=text)])


# --- Logging, progress, streams -----------------------------------------------------------------


async def log_three(ctx: Context) -> None:
    # In 2026 the SDK sends these only at or above the level the request's `_meta` opted in
    # to (none without it); in 2025 the session's `logging/setLevel` era rules apply.
    for i, text in enumerate(["Tool execution started", "Tool processing data", "Tool execution completed"]):
        if i:
            await anyio.sleep(0.05)
        await ctx.info(text)


@server.tool()
async def test_tool_with_logging(ctx: Context) -> str:
    """Sends three info log messages, 50 ms apart."""
    await log_three(ctx)
    return "Tool with logging executed successfully"


@server.tool()
async def test_logging_tool(ctx: Context) -> str:
    """Sends three info log messages, 50 ms apart (the 2026 stateless scenario's name)."""
    await log_three(ctx)
    return "Logging tool executed successfully"


@server.tool()
async def test_tool_with_progress(ctx: Context) -> str:
    """Reports progress 0, 50 and 100 of 100, 50 ms apart (when the call has a progress token)."""
    for i, progress in enumerate([0, 50, 100]):
        if i:
            await anyio.sleep(0.05)
        await ctx.report_progress(progress, 100)
    return "Tool with progress executed successfully"


@server.tool()
async def test_reconnection(ctx: Context) -> str:
    """Closes its response stream mid-call (SEP-1699 polling); the client resumes with
    Last-Event-ID on a GET and gets the result replayed from the event store (2025)."""
    await anyio.sleep(0.1)
    await ctx.close_sse_stream()
    await anyio.sleep(0.3)
    return "Reconnection test completed successfully"


@server.tool()
async def test_trigger_tool_change(ctx: Context) -> str:
    """Tells `subscriptions/listen` streams that the tool list changed (2026)."""
    await ctx.notify_tools_changed()
    return "tools list changed"


@server.tool()
async def test_trigger_prompt_change(ctx: Context) -> str:
    """Tells `subscriptions/listen` streams that the prompt list changed (2026)."""
    await ctx.notify_prompts_changed()
    return "prompts list changed"


# --- Sampling and elicitation through the SDK's resolvers (either era) --------------------------


def ask_model(prompt: str) -> Sample:
    # A resolver taking the tool argument `prompt` by name; the SDK asks the client's model
    # mid-call (2025) or through an input_required result (2026), and checks first that the
    # client declared `sampling` (else error -32021).
    msg = SamplingMessage(role="user", content=TextContent(type="text", text=prompt))
    return Sample([msg], max_tokens=100)


@server.tool()
async def test_sampling(prompt: str, answer: Annotated[CreateMessageResult, Resolve(ask_model)]) -> str:
    """Asks the client's model about `prompt`."""
    text = answer.content.text if isinstance(answer.content, TextContent) else str(answer.content)
    return f"LLM response: {text}"


def ask_anything() -> Sample:
    msg = SamplingMessage(role="user", content=TextContent(type="text", text="Say anything"))
    return Sample([msg], max_tokens=10)


@server.tool()
async def test_missing_capability(answer: Annotated[CreateMessageResult, Resolve(ask_anything)]) -> str:
    """Needs sampling: the SDK refuses the call (-32021) when the client did not declare it."""
    return "sampled"


class UserInfo(BaseModel):
    username: str = Field(description="User's response")
    email: str = Field(description="User's email address")


def ask_user(message: str) -> Elicit[UserInfo]:
    return Elicit(message, UserInfo)


@server.tool()
async def test_elicitation(message: str, info: Annotated[ElicitationResult[UserInfo], Resolve(ask_user)]) -> str:
    """Asks the user for a username and an email address, showing `message`."""
    # Annotated with the whole outcome (not just `UserInfo`), a decline or cancel reaches the
    # body instead of failing the call.
    content = info.data.model_dump_json() if info.action == "accept" else "{}"
    return f"User response: action={info.action}, content={content}"


class Confirmation(BaseModel):
    ok: bool


def ask_confirmation() -> Elicit[Confirmation]:
    return Elicit("Please confirm", Confirmation)


@server.tool()
async def test_streaming_elicitation(answer: Annotated[Confirmation, Resolve(ask_confirmation)]) -> str:
    """Elicits a confirmation: never a request on a 2026 response stream, an input_required
    result instead."""
    return f"confirmed: {answer.ok}"


# --- Elicitation with exact schemas (SEP-1034 defaults, SEP-1330 enums) --------------------------


async def elicited(ctx: Context, request: ElicitRequest) -> str | InputRequiredResult:
    got = await ask(ctx, {"form": request})
    if isinstance(got, InputRequiredResult):
        return got
    answer = got["form"]
    return f"Elicitation completed: action={answer.action}, content={json.dumps(answer.content or {})}"


@server.tool()
async def test_elicitation_sep1034_defaults(ctx: Context) -> str | InputRequiredResult:
    """Asks with a default for every primitive type."""
    return await elicited(ctx, elicitation("Please review and update the form fields with defaults", {
        "name": {"type": "string", "description": "User name", "default": "John Doe"},
        "age": {"type": "integer", "description": "User age", "default": 30},
        "score": {"type": "number", "description": "User score", "default": 95.5},
        "status": {"type": "string", "description": "User status", "enum": ["active", "inactive", "pending"],
                   "default": "active"},
        "verified": {"type": "boolean", "description": "Verification status", "default": True},
    }))


def choices(*pairs: str) -> list[dict[str, str]]:
    return [{"const": pairs[i], "title": pairs[i + 1]} for i in range(0, len(pairs), 2)]


@server.tool()
async def test_elicitation_sep1330_enums(ctx: Context) -> str | InputRequiredResult:
    """Asks with the five enum forms: untitled, titled and legacy titled single-select,
    untitled and titled multi-select."""
    return await elicited(ctx, elicitation("Please select options from the enum fields", {
        "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
        "titledSingle": {"type": "string", "oneOf": choices("value1", "First Option", "value2", "Second Option",
                                                             "value3", "Third Option")},
        "legacyEnum": {"type": "string", "enum": ["opt1", "opt2", "opt3"],
                       "enumNames": ["Option One", "Option Two", "Option Three"]},
        "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
        "titledMulti": {"type": "array", "items": {"anyOf": choices("value1", "First Choice", "value2", "Second Choice",
                                                                    "value3", "Third Choice")}},
    }))


# --- Multi-round-trip requests (SEP-2322; the 2026 scenarios name the input keys) --------------

NAME = elicitation("What is your name?", {"name": {"type": "string"}}, ["name"])


@server.tool()
async def test_input_required_result_elicitation(ctx: Context) -> str | InputRequiredResult:
    """Asks the user's name (key `user_name`), then greets them."""
    got = await ask(ctx, {"user_name": NAME})
    if isinstance(got, InputRequiredResult):
        return got
    return f"Hello, {(got['user_name'].content or {}).get('name', 'stranger')}!"


@server.tool()
async def test_input_required_result_sampling(ctx: Context) -> str | InputRequiredResult:
    """Asks the client's model the capital of France (key `capital_question`)."""
    got = await ask(ctx, {"capital_question": sampling("What is the capital of France?", 100)})
    if isinstance(got, InputRequiredResult):
        return got
    content = got["capital_question"].content
    return f"The model answered: {getattr(content, 'text', content)}"


@server.tool()
async def test_input_required_result_list_roots(ctx: Context) -> str | InputRequiredResult:
    """Asks the client's roots (key `client_roots`), then lists them."""
    got = await ask(ctx, {"client_roots": ListRootsRequest()})
    if isinstance(got, InputRequiredResult):
        return got
    roots = got["client_roots"].roots
    return f"{len(roots)} root(s): {', '.join(str(r.uri) for r in roots)}"


@server.tool()
async def test_input_required_result_request_state(ctx: Context) -> str | InputRequiredResult:
    """Asks for a confirmation with a `requestState`; finishes with "state-ok" only when the
    state comes back as minted."""
    confirm = elicitation("Please confirm", {"ok": {"type": "boolean"}}, ["ok"])
    got = await ask(ctx, {"confirm": confirm}, state=json.dumps({"asked": "confirm"}))
    if isinstance(got, InputRequiredResult):
        return got
    if modern(ctx) and state_of(ctx).get("asked") != "confirm":
        # Answers without the state this server minted: ask again.
        return InputRequiredResult(input_requests={"confirm": confirm}, request_state=json.dumps({"asked": "confirm"}))
    return f"state-ok: confirmed={(got['confirm'].content or {}).get('ok')}"


@server.tool()
async def test_input_required_result_multiple_inputs(ctx: Context) -> str | InputRequiredResult:
    """Asks an elicitation, a sampling and the roots at once."""
    got = await ask(ctx, {
        "user_name": NAME,
        "greeting": sampling("Generate a greeting", 50),
        "client_roots": ListRootsRequest(),
    }, state=json.dumps({"asked": "three"}))
    if isinstance(got, InputRequiredResult):
        return got
    name = (got["user_name"].content or {}).get("name")
    greeting = getattr(got["greeting"].content, "text", "")
    return f"{greeting} {name} ({len(got['client_roots'].roots)} root(s))"


@server.tool()
async def test_input_required_result_multi_round(ctx: Context) -> str | InputRequiredResult:
    """Asks a name, then (a second round, the name kept in the state) a favourite color."""
    name = state_of(ctx).get("name")
    if name is None:
        step1 = elicitation("Step 1: What is your name?", {"name": {"type": "string"}}, ["name"])
        got = await ask(ctx, {"step1": step1}, state=json.dumps({"round": 1}))
        if isinstance(got, InputRequiredResult):
            return got
        name = (got["step1"].content or {}).get("name", "?")
    step2 = elicitation("Step 2: What is your favorite color?", {"color": {"type": "string"}}, ["color"])
    got = await ask(ctx, {"step2": step2}, state=json.dumps({"round": 2, "name": name}))
    if isinstance(got, InputRequiredResult):
        return got
    return f"{name} likes {(got['step2'].content or {}).get('color', '?')}"


@server.tool()
async def test_input_required_result_tampered_state(ctx: Context) -> str | InputRequiredResult:
    """Asks for a confirmation with a `requestState`; the SDK seals it, so a tampered echo
    is refused (-32602) before this body runs."""
    confirm = elicitation("Please confirm", {"ok": {"type": "boolean"}}, ["ok"])
    got = await ask(ctx, {"confirm": confirm}, state=json.dumps({"asked": "confirm"}))
    if isinstance(got, InputRequiredResult):
        return got
    return "state verified"


@server.tool()
async def test_input_required_result_capabilities(ctx: Context) -> str | InputRequiredResult:
    """Asks only what the client declared it can answer: elicitation, sampling, roots."""
    caps = ctx.client_capabilities
    wanted = {
        "user_name": NAME if caps and caps.elicitation else None,
        "greeting": sampling("Generate a greeting", 50) if caps and caps.sampling else None,
        "client_roots": ListRootsRequest() if caps and caps.roots else None,
    }
    questions = {k: q for k, q in wanted.items() if q is not None}
    if not questions:
        return "nothing to ask: the client declared none of elicitation, sampling, roots"
    got = await ask(ctx, questions)
    if isinstance(got, InputRequiredResult):
        return got
    return f"answered: {', '.join(sorted(got))}"


@server.prompt(description="A prompt that asks the user for its context first")
async def test_input_required_result_prompt(ctx: Context) -> list[UserMessage] | InputRequiredResult:
    ask_context = elicitation("What context should the prompt use?", {"context": {"type": "string"}}, ["context"])
    got = await ask(ctx, {"user_context": ask_context})
    if isinstance(got, InputRequiredResult):
        return got
    context = (got["user_context"].content or {}).get("context", "")
    return [UserMessage(content=f"Use this context: {context}")]


# --- Schemas and headers ---------------------------------------------------------------------


@server.tool()
async def test_custom_headers(
    region: Annotated[str, Field(description="A region, mirrored in the Mcp-Param-Region header",
                                 json_schema_extra={"x-mcp-header": "Region"})],
) -> str:
    """Echoes its argument; its `region` rides an `Mcp-Param-Region` header too (SEP-2243),
    which the SDK checks against the body."""
    return f"region: {region}"


# --- Resources ---------------------------------------------------------------------------------


@server.resource("test://static-text", name="static-text",
                 description="A static text resource", mime_type="text/plain")
def static_text() -> str:
    return "This is the content of the static text resource."


@server.resource("test://static-binary", name="static-binary",
                 description="A static binary resource (a PNG)", mime_type="image/png")
def static_binary() -> bytes:
    return base64.b64decode(PNG)


@server.resource("test://watched-resource", name="watched-resource",
                 description="A resource to subscribe to", mime_type="text/plain")
def watched_resource() -> str:
    return "Watched resource content"


@server.resource("test://template/{id}/data", name="template",
                 description="A resource template with an id", mime_type="application/json")
def template(id: str) -> str:
    return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})


# --- Prompts and completion ------------------------------------------------------------------


@server.prompt(description="A simple prompt without arguments")
def test_simple_prompt() -> str:
    return "This is a simple prompt for testing."


@server.prompt(description="A prompt with two required arguments")
def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
    return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"


@server.prompt(description="A prompt that embeds a resource")
def test_prompt_with_embedded_resource(resourceUri: str) -> list[UserMessage]:  # noqa: N803 - the suite's name
    return [
        UserMessage(content=embedded(resourceUri, "Embedded resource content for testing.")),
        UserMessage(content="Please process the embedded resource above."),
    ]


@server.prompt(description="A prompt with an image")
def test_prompt_with_image() -> list[UserMessage]:
    return [
        UserMessage(content=ImageContent(type="image", data=PNG, mime_type="image/png")),
        UserMessage(content="Please analyze the image above."),
    ]


WORDS = ["paris", "park", "party", "test", "testing", "tested"]


@server.completion()
async def complete(ref, argument, context) -> Completion:
    values = [w for w in WORDS if w.startswith(argument.value or "")]
    return Completion(values=values, total=len(values), has_more=False)


# --- Serving -----------------------------------------------------------------------------------


class MemoryEventStore(EventStore):
    """Every event of every stream, kept in memory: lets a 2025 client resume a response
    stream the server closed (`Last-Event-ID`)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, Any]] = []  # (event id, stream id, message or None)

    async def store_event(self, stream_id, message):
        event_id = str(len(self.events) + 1)
        self.events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id, send_callback):
        stream = next((s for e, s, _ in self.events if e == last_event_id), None)
        if stream is None:
            return None
        for event_id, s, message in self.events[int(last_event_id):]:
            if s == stream and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream


if ERA == "2026":
    inner = server.streamable_http_app(stateless_http=True)

    async def app(scope, receive, send):
        return await only_2026(inner, scope, receive, send)
else:
    # logging/setLevel and resources/(un)subscribe are 2025 methods MCPServer does not serve
    # (2026 replaced them with per-request log levels and subscriptions/listen); the SDK has no
    # public accessor for its low-level server, hence the private attribute.
    async def accept(ctx, params) -> EmptyResult:
        return EmptyResult()

    for method, params in [("logging/setLevel", SetLevelRequestParams), ("resources/subscribe", SubscribeRequestParams),
                           ("resources/unsubscribe", UnsubscribeRequestParams)]:
        server._lowlevel_server.add_request_handler(method, params, accept)
    app = server.streamable_http_app(stateless_http=False, event_store=MemoryEventStore(), retry_interval=500)

uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
