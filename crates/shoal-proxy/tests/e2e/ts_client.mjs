// End-to-end scenarios with the official TypeScript SDK client against two proxy instances
// that share one Redis. Env: URL_A, URL_B (proxy MCP endpoints), PID_A (killed mid-session).
// Prints one line per check: "ok <name>" or "FAIL <name>: <why>"; exit 1 on any failure.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { cutAfterProgress, retarget } from './cut_stream.mjs';

const A = process.env.URL_A, B = process.env.URL_B;
let failures = 0;
const ok = (name) => console.log(`ok ${name}`);
const fail = (name, why) => { failures++; console.log(`FAIL ${name}: ${why}`); };

let aDead = false;
let turn = 0;
let cut = null; // { after: n } cuts the next SSE POST reply after n progress events
let lastPostTarget = null;
const seen = { A: 0, B: 0 };


async function routedFetch(url, init = {}) {
  const method = (init.method || 'GET').toUpperCase();
  const headers = new Headers(init.headers || {});
  let base;
  if (aDead) base = B;
  else if (method === 'GET' && headers.get('last-event-id') && lastPostTarget) {
    base = lastPostTarget === A ? B : A; // resume on the other instance
  } else base = (turn++ % 2 === 0) ? A : B;
  seen[base === A ? 'A' : 'B']++;
  if (method === 'POST') lastPostTarget = base;
  const resp = await fetch(retarget(url, base), init);
  const ct = resp.headers.get('content-type') || '';
  if (cut && method === 'POST' && ct.startsWith('text/event-stream')) {
    const after = cut.after; cut = null;
    return cutAfterProgress(resp, after);
  }
  return resp;
}

const transport = new StreamableHTTPClientTransport(new URL(A), {
  fetch: routedFetch,
  reconnectionOptions: { initialReconnectionDelay: 200, maxReconnectionDelay: 2000, reconnectionDelayGrowFactor: 1.5, maxRetries: 5 },
});
const client = new Client({ name: 'shoal-e2e-ts', version: '1.0.0' });
client.onerror = () => {};
transport.onerror = () => {};

try {
  await client.connect(transport);
  const sid = transport.sessionId;
  if (!sid || sid.length !== 32) fail('initialize', `odd session id ${sid}`); else ok('initialize through the proxy');

  // Requests alternate between the instances.
  let good = 0;
  for (let i = 0; i < 6; i++) {
    const tools = await client.listTools();
    if (tools.tools.some((t) => t.name === 'echo')) good++;
    const r = await client.callTool({ name: 'echo', arguments: { message: `m${i}` } });
    if (JSON.stringify(r.content).includes(`m${i}`)) good++;
  }
  if (good === 12 && seen.A > 2 && seen.B > 2) ok(`12 requests alternating between instances (A ${seen.A}, B ${seen.B})`);
  else fail('alternating', `good=${good} A=${seen.A} B=${seen.B}`);

  // An SSE reply cut after 3 progress events and resumed on the other instance.
  const steps = 8;
  const progress = [];
  cut = { after: 3 };
  const r = await client.callTool(
    { name: 'trigger-long-running-operation', arguments: { duration: 2, steps } },
    undefined,
    { onprogress: (p) => progress.push(p.progress), timeout: 60000 },
  );
  const want = Array.from({ length: steps }, (_, i) => i + 1);
  const text = JSON.stringify(r.content);
  if (JSON.stringify(progress) === JSON.stringify(want) && text.includes('completed')) {
    ok(`SSE stream cut after 3 events and resumed on the other instance: ${steps} progress events exactly once, then the result`);
  } else fail('cut-and-resume', `progress=${JSON.stringify(progress)} result=${text}`);
  // The resume went through a Last-Event-ID GET on the instance the POST did not use.
  const metric = async (base, name) => {
    const t = await (await fetch(new URL('/metrics', base))).text();
    const m = t.match(new RegExp(`^shoal_proxy_${name} (\\d+)$`, 'm'));
    return m ? Number(m[1]) : -1;
  };
  const resumed = (await metric(A, 'sse_replayed_total')) + (await metric(B, 'sse_replayed_total'));
  const woken = (await metric(A, 'wakeups_received_total')) + (await metric(B, 'wakeups_received_total'));
  if (resumed > 0) ok(`the resumed events came from the store through Last-Event-ID (${resumed} replayed, ${woken} pub/sub wake-ups)`);
  else fail('resume path', `sse_replayed_total=${resumed}`);

  // One instance killed mid-session; the client carries on with the same session id.
  process.kill(Number(process.env.PID_A), 'SIGKILL');
  aDead = true;
  let after = 0;
  for (let i = 0; i < 3; i++) {
    const r2 = await client.callTool({ name: 'get-sum', arguments: { a: i, b: 1 } });
    if (JSON.stringify(r2.content).includes(String(i + 1))) after++;
  }
  if (after === 3 && transport.sessionId === sid) ok('instance A killed; the same session carries on through B');
  else fail('kill', `after=${after} sid=${transport.sessionId} vs ${sid}`);

  await transport.terminateSession();
  ok('DELETE ends the session');
  await client.close();
} catch (e) {
  fail('ts client', e?.stack || String(e));
}
process.exit(failures ? 1 : 0);
