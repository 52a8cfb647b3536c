// The 2025-to-2026 bridge with the official TypeScript SDK client (1.x, 2025-11-25) through two
// `shoal proxy` instances on one Redis in front of a 2026-07-28-only upstream (modern_server.py).
// Env: URL_A, URL_B (proxy endpoints), STATS (the upstream's /stats URL).
// Prints "ok <check>" / "FAIL <check>: <why>"; exit 1 on any failure.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { cutAfterProgress, retarget } from './cut_stream.mjs';

const A = process.env.URL_A, B = process.env.URL_B;
let failures = 0;
const ok = (name) => console.log(`ok ${name}`);
const fail = (name, why) => { failures++; console.log(`FAIL ${name}: ${why}`); };
let turn = 0, cut = null, lastPostTarget = null;
const seen = { A: 0, B: 0 };

async function routedFetch(url, init = {}) {
  const method = (init.method || 'GET').toUpperCase();
  const headers = new Headers(init.headers || {});
  let base;
  if (method === 'GET' && headers.get('last-event-id') && lastPostTarget) base = lastPostTarget === A ? B : A;
  else base = (turn++ % 2 === 0) ? A : B;
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
const client = new Client({ name: 'shoal-bridge-ts', version: '1.0.0' });
client.onerror = () => {};
let listChanged = 0;
client.setNotificationHandler(ToolListChangedNotificationSchema, () => { listChanged++; });
transport.onerror = () => {};
try {
  await client.connect(transport);
  const info = client.getServerVersion();
  const sid = transport.sessionId;
  if (sid && info?.name === 'modern-upstream' && client.getInstructions() === 'a 2026-only test upstream') {
    ok(`initialize answered by the proxy from the 2026 upstream's server/discover (server ${info.name}, session ${sid.slice(0, 8)}…)`);
  } else fail('initialize', `sid=${sid} info=${JSON.stringify(info)}`);

  let good = 0;
  const tools = await client.listTools();
  if (['echo', 'countdown', 'ask_name', 'touch_tools'].every((n) => tools.tools.some((t) => t.name === n))) good++;
  for (let i = 0; i < 6; i++) {
    const r = await client.callTool({ name: 'echo', arguments: { message: `m${i}` } });
    if (JSON.stringify(r.content).includes(`m${i}`)) good++;
  }
  if (good === 7 && seen.A > 2 && seen.B > 2) ok(`tools listed and 6 calls alternating between instances (A ${seen.A}, B ${seen.B})`);
  else fail('calls', `good=${good} A=${seen.A} B=${seen.B}`);

  // A progress stream cut after 3 events and resumed on the other instance: the 2026 upstream
  // has no resumability; the proxy's record does it.
  const steps = 8, progress = [];
  cut = { after: 3 };
  const r = await client.callTool({ name: 'countdown', arguments: { steps } }, undefined,
    { onprogress: (p) => progress.push(p.progress), timeout: 60000 });
  const want = Array.from({ length: steps }, (_, i) => i + 1);
  if (JSON.stringify(progress) === JSON.stringify(want) && JSON.stringify(r.content).includes('completed')) {
    ok(`stream cut after 3 progress events on one instance, resumed on the other: ${steps} events exactly once, then the result`);
  } else fail('cut-and-resume', `progress=${JSON.stringify(progress)} result=${JSON.stringify(r)}`);

  // A server notification outside any request: the upstream's subscriptions/listen stream,
  // held by one instance and recorded, reaches the client's GET stream (on either instance).
  await client.callTool({ name: 'touch_tools', arguments: {} });
  for (let i = 0; i < 100 && listChanged === 0; i++) await new Promise((r) => setTimeout(r, 100));
  if (listChanged >= 1) ok(`a server notification (tools/list_changed) from the upstream's subscriptions/listen reached the client's GET stream`);
  else fail('server notification', 'no notifications/tools/list_changed within 10 s');

  // What the bridge cannot translate reaches the client as an error naming it.
  let named = '';
  try {
    const e = await client.callTool({ name: 'ask_name', arguments: {} });
    named = JSON.stringify(e);
  } catch (e) { named = String(e?.message || e); }
  if (/elicit/i.test(named)) ok(`a tool that needs elicitation gets an error naming it: ${named.slice(0, 300)}`);
  else fail('elicitation refused', named.slice(0, 300));

  const stats = await (await fetch(process.env.STATS)).json();
  if (stats.initialize === 0 && stats.session_header === 0 && stats.posts >= 9) {
    ok(`the upstream saw ${stats.posts} 2026 requests, no initialize and no session id (GET/DELETE tried: ${stats.get_or_delete})`);
  } else fail('upstream saw 2025 traffic', JSON.stringify(stats));
  await transport.terminateSession().catch(() => {});
  await client.close();
} catch (e) {
  fail('ts client', e?.stack || String(e));
}
process.exit(failures ? 1 : 0);
