// A small MCP server (official TypeScript SDK, stateful Streamable HTTP sessions, plain
// node:http on 127.0.0.1:$PORT, endpoint /mcp) for the race test of server-initiated requests.
//
// Its one tool, `ask {n, tag}`, sends the client a `sampling/createMessage` request (and, when n
// is odd, an `elicitation/create` request as well, both at once) the moment it is called, WITHOUT
// a related request id, awaits the answers and returns them in the tool result. In SDK 1.32 a
// request without `relatedRequestId` goes to the session's standalone GET stream
// (WebStandardStreamableHTTPServerTransport.send: no request id -> `_standaloneSseStreamId`); when
// no GET stream is open at that moment, the SDK drops the message silently (there is no event
// store here), so the tool waits until its request timeout. That is the race the client measures:
// the client opens its GET and POSTs `tools/call` at the same time.
//
// Env: PORT (required), REQUEST_TIMEOUT_MS (how long the tool waits for the client's answer,
// default 15000). Logs one line per dropped/failed server request to stderr.
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

const PORT = Number(process.env.PORT);
const REQUEST_TIMEOUT_MS = Number(process.env.REQUEST_TIMEOUT_MS || 15000);
if (!PORT) { console.error('race_server: PORT is required'); process.exit(2); }

const transports = new Map(); // session id -> StreamableHTTPServerTransport
const stats = { sessions: 0, calls: 0, answered: 0, failed: 0, getNotOpen: 0 };
// Whether the session's standalone GET stream is registered at the server right now (reads the
// SDK transport's private state; only for the diagnostics in /stats and the log).
function standaloneOpen(sid) {
  const t = transports.get(sid)?._webStandardTransport;
  return !!t?._streamMapping?.has?.(t._standaloneSseStreamId);
}

function newServer() {
  const mcp = new McpServer({ name: 'shoal-race-server', version: '1.0.0' }, { capabilities: { tools: {} } });
  mcp.registerTool(
    'ask',
    {
      description: 'Asks the client (sampling, and elicitation when n is odd) on the standalone stream and returns the answers',
      inputSchema: { n: z.number().int(), tag: z.string() },
    },
    async ({ n, tag }, extra) => {
      stats.calls++;
      if (!standaloneOpen(extra.sessionId)) {
        stats.getNotOpen++;
        console.error(`race_server: ask ${tag}: no standalone GET stream open at the server when called`);
      }
      // No relatedRequestId: the SDK routes these requests to the standalone GET stream.
      const asks = [
        mcp.server.createMessage(
          { messages: [{ role: 'user', content: { type: 'text', text: `sample ${tag}` } }], maxTokens: 16 },
          { timeout: REQUEST_TIMEOUT_MS },
        ),
      ];
      if (n % 2 === 1) {
        asks.push(mcp.server.elicitInput(
          {
            mode: 'form',
            message: `elicit ${tag}`,
            requestedSchema: { type: 'object', properties: { answer: { type: 'string' } }, required: ['answer'] },
          },
          { timeout: REQUEST_TIMEOUT_MS },
        ));
      }
      try {
        const [sample, elicit] = await Promise.all(asks);
        stats.answered++;
        const parts = [`sampling=${sample.content?.text}`];
        if (elicit) parts.push(`elicitation=${elicit.action}:${elicit.content?.answer}`);
        return { content: [{ type: 'text', text: parts.join(' ') }] };
      } catch (e) {
        stats.failed++;
        console.error(`race_server: ask ${tag}: server request failed: ${e?.message || e}`);
        return { isError: true, content: [{ type: 'text', text: `server request failed: ${e?.message || e}` }] };
      }
    },
  );
  return mcp;
}

async function readJson(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : undefined;
}

function jsonError(res, status, message) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message }, id: null }));
}

const httpServer = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, 'http://127.0.0.1');
    if (url.pathname === '/stats') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(stats));
      return;
    }
    if (url.pathname !== '/mcp') { jsonError(res, 404, 'not found'); return; }
    const sid = req.headers['mcp-session-id'];
    if (req.method === 'POST') {
      let body;
      try { body = await readJson(req); } catch { jsonError(res, 400, 'Parse error'); return; }
      let transport = sid ? transports.get(sid) : undefined;
      if (!transport) {
        if (sid) { jsonError(res, 404, 'Session not found'); return; }
        if (!isInitializeRequest(body)) { jsonError(res, 400, 'Bad Request: no session'); return; }
        transport = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          onsessioninitialized: (id) => { transports.set(id, transport); stats.sessions++; },
        });
        transport.onclose = () => { if (transport.sessionId) transports.delete(transport.sessionId); };
        await newServer().connect(transport);
      }
      await transport.handleRequest(req, res, body);
      return;
    }
    if (req.method === 'GET' || req.method === 'DELETE') {
      const transport = sid ? transports.get(sid) : undefined;
      if (!transport) { jsonError(res, sid ? 404 : 400, sid ? 'Session not found' : 'Bad Request: no session'); return; }
      await transport.handleRequest(req, res);
      return;
    }
    res.writeHead(405, { allow: 'GET, POST, DELETE' }).end();
  } catch (e) {
    console.error(`race_server: ${e?.stack || e}`);
    if (!res.headersSent) jsonError(res, 500, 'Internal error');
  }
});
httpServer.listen(PORT, '127.0.0.1', () => console.error(`race_server: listening on http://127.0.0.1:${PORT}/mcp`));
