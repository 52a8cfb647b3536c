// End-to-end scenarios with the official TypeScript SDK client against two replicas of the
// shoal-rmcp example server sharing one Redis. Env: URL_A, URL_B (MCP endpoints), PID_A
// (killed mid-session). Prints "ok <name>" or "FAIL <name>: <why>"; exit 1 on any failure.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { cutAfterProgress, retarget } from './cut_stream.mjs';

const A = process.env.URL_A, B = process.env.URL_B;
let failures = 0;
const ok = (name) => console.log(`ok ${name}`);
const fail = (name, why) => { failures++; console.log(`FAIL ${name}: ${why}`); };


// Routing: the first POST (initialize) goes to A, every later request to B, except a POST
// the test sends to A on purpose (`nextPostToA`) and everything once A is dead.
function router(label) {
  const r = { label, initialized: false, nextPostToA: false, aDead: false, cut: null, log: [] };
  r.fetch = async (url, init = {}) => {
    const method = (init.method || 'GET').toUpperCase();
    let base = B;
    if (!r.aDead && method === 'POST' && (!r.initialized || r.nextPostToA)) {
      base = A; r.initialized = true; r.nextPostToA = false;
    }
    const headers = new Headers(init.headers || {});
    r.log.push(`${method}${headers.get('last-event-id') ? '+resume' : ''}->${base === A ? 'A' : 'B'}`);
    const resp = await fetch(retarget(url, base), init);
    const ct = resp.headers.get('content-type') || '';
    if (r.cut && method === 'POST' && ct.startsWith('text/event-stream')) {
      const after = r.cut.after; r.cut = null;
      return cutAfterProgress(resp, after);
    }
    return resp;
  };
  return r;
}

async function connect(r) {
  const transport = new StreamableHTTPClientTransport(new URL(A), {
    fetch: r.fetch,
    reconnectionOptions: { initialReconnectionDelay: 200, maxReconnectionDelay: 2000, reconnectionDelayGrowFactor: 1.5, maxRetries: 5 },
  });
  const client = new Client({ name: `shoal-rmcp-e2e-${r.label}`, version: '1.0.0' }, { capabilities: { elicitation: {} } });
  client.onerror = () => {}; transport.onerror = () => {};
  client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'accept', content: { name: 'Ada' } }));
  await client.connect(transport);
  return { client, transport };
}

const text = (r) => (r.content || []).map((c) => c.text || '').join(' ');

try {
  const r = router('main');
  const { client, transport } = await connect(r);
  const sid = transport.sessionId;
  if (sid && r.log[0] === 'POST->A') ok(`initialize on replica A (session ${sid.slice(0, 8)}…)`);
  else fail('initialize', `sid=${sid} log=${r.log.join(',')}`);

  // Every later request on B, which has never seen the session.
  const before = r.log.length;
  const tools = (await client.listTools()).tools.map((t) => t.name).sort();
  const echoed = text(await client.callTool({ name: 'echo', arguments: { message: 'hello from B' } }));
  const sum = text(await client.callTool({ name: 'add', arguments: { a: 2, b: 40 } }));
  const laterOnB = r.log.slice(before).every((l) => l.endsWith('->B'));
  if (JSON.stringify(tools) === JSON.stringify(['add', 'ask_name', 'count', 'echo']) && echoed === 'hello from B' && sum === '42' && laterOnB) {
    ok(`every later request on replica B: tools/list, echo, add (${r.log.slice(before).join(' ')})`);
  } else fail('requests on B', `tools=${tools} echo=${echoed} sum=${sum} log=${r.log.slice(before).join(' ')}`);

  // The progress stream: POST on A, cut after 3 notifications, resumed with Last-Event-ID on B.
  const steps = 8;
  const progress = [];
  r.nextPostToA = true;
  r.cut = { after: 3 };
  const mark = r.log.length;
  const res = await client.callTool(
    { name: 'count', arguments: { steps, interval_ms: 250 } },
    undefined,
    { onprogress: (p) => progress.push(p.progress), timeout: 60000 },
  );
  const want = Array.from({ length: steps }, (_, i) => i + 1);
  const resumedOnB = r.log.slice(mark).some((l) => l === 'GET+resume->B');
  if (JSON.stringify(progress) === JSON.stringify(want) && text(res).includes('completed') && resumedOnB) {
    ok(`progress stream cut on A after 3 notifications, resumed with Last-Event-ID on B: ${steps} notifications exactly once, then the result (${r.log.slice(mark).join(' ')})`);
  } else fail('cut-and-resume', `progress=${JSON.stringify(progress)} result=${text(res)} log=${r.log.slice(mark).join(' ')}`);

  // Elicitation: the tool runs on A; the client's answer is POSTed to B.
  r.nextPostToA = true;
  const mark2 = r.log.length;
  const greeting = text(await client.callTool({ name: 'ask_name', arguments: {} }, undefined, { timeout: 30000 }));
  const answerOnB = r.log.slice(mark2).filter((l) => l === 'POST->B').length >= 1;
  if (greeting === 'Hello, Ada!' && answerOnB) ok(`elicitation asked by A, answered to B, delivered to A's tool: "${greeting}" (${r.log.slice(mark2).join(' ')})`);
  else fail('elicitation across replicas', `greeting=${greeting} log=${r.log.slice(mark2).join(' ')}`);

  // DELETE on B: the session is 404 on A at once.
  const r2 = router('delete');
  const second = await connect(r2);
  const sid2 = second.transport.sessionId;
  await second.client.callTool({ name: 'echo', arguments: { message: 'x' } });
  await second.transport.terminateSession();
  const onA = await fetch(A, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': sid2, 'mcp-protocol-version': '2025-06-18' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/list' }),
  });
  if (onA.status === 404 && r2.log.includes('DELETE->B')) ok('DELETE on B; the same session on A answers 404');
  else fail('delete', `status on A ${onA.status}, log ${r2.log.join(' ')}`);

  // Replica A killed mid-session; the client carries on through B.
  process.kill(Number(process.env.PID_A), 'SIGKILL');
  r.aDead = true;
  let after = 0;
  for (let i = 0; i < 3; i++) {
    if (text(await client.callTool({ name: 'add', arguments: { a: i, b: 1 } })) === String(i + 1)) after++;
  }
  if (after === 3 && transport.sessionId === sid) ok('replica A killed; the same session carries on through B');
  else fail('kill', `after=${after} sid=${transport.sessionId} vs ${sid}`);
  await client.close();
} catch (e) {
  fail('ts client', e?.stack || String(e));
}
process.exit(failures ? 1 : 0);
