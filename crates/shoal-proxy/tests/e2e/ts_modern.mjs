// The 2025-to-2026 bridge with the official TypeScript SDK client (1.x, 2025-11-25) through two
// `shoal proxy` instances on one Redis in front of a 2026-07-28-only upstream (modern_server.py).
// Env: URL_A, URL_B (proxy endpoints), STATS (the upstream's /stats URL).
// Prints "ok <check>" / "FAIL <check>: <why>"; exit 1 on any failure.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema, ElicitRequestSchema, ListRootsRequestSchema, ResourceUpdatedNotificationSchema, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { cutAfterProgress, retarget } from './cut_stream.mjs';

const A = process.env.URL_A, B = process.env.URL_B;
let failures = 0;
const ok = (name) => console.log(`ok ${name}`);
const fail = (name, why) => { failures++; console.log(`FAIL ${name}: ${why}`); };
let turn = 0, cut = null, lastPostTarget = null;
const seen = { A: 0, B: 0 };
const answeredOn = [], askedOn = [];

async function routedFetch(url, init = {}) {
  const method = (init.method || 'GET').toUpperCase();
  const headers = new Headers(init.headers || {});
  let base;
  if (method === 'GET' && headers.get('last-event-id') && lastPostTarget) base = lastPostTarget === A ? B : A;
  else base = (turn++ % 2 === 0) ? A : B;
  seen[base === A ? 'A' : 'B']++;
  if (method === 'POST') {
    lastPostTarget = base;
    const body = typeof init.body === 'string' ? init.body : '';
    if (body.includes('"shoal-input-') && body.includes('"result"')) answeredOn.push(base === A ? 'A' : 'B');
    if (body.includes('"tools/call"') && body.includes('"ask_')) askedOn.push(base === A ? 'A' : 'B');
  }
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
const client = new Client({ name: 'shoal-bridge-ts', version: '1.0.0' },
  { capabilities: { elicitation: {}, sampling: {}, roots: { listChanged: false } } });
client.onerror = () => {};
// The user behind the client: answers the upstream's questions (or refuses, when told to).
const asked = [];
let refuseElicitation = false;
client.setRequestHandler(ElicitRequestSchema, async (req) => {
  asked.push(`elicitation: ${req.params.message}`);
  if (refuseElicitation) throw new Error('the user closed the dialog');
  return { action: 'accept', content: { name: 'Ada' } };
});
client.setRequestHandler(ListRootsRequestSchema, async () => {
  asked.push('roots');
  return { roots: [{ uri: 'file:///work/a', name: 'a' }, { uri: 'file:///work/b', name: 'b' }] };
});
client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
  asked.push(`sampling: ${JSON.stringify(req.params.messages[0]?.content?.text)}`);
  return { role: 'assistant', model: 'test-model', content: { type: 'text', text: 'blue' } };
});
let listChanged = 0;
client.setNotificationHandler(ToolListChangedNotificationSchema, () => { listChanged++; });
const updated = [];
client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => { updated.push(n.params.uri); });
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
  if (['echo', 'countdown', 'ask_name', 'touch_tools', 'flaky_lookup'].every((n) => tools.tools.some((t) => t.name === n))) good++;
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

  // A resource subscription: 2026 has no resources/subscribe; the proxy answers it, keeps the
  // URI in the session, and the instance holding the session's listen stream listens again
  // with it, so the upstream's resource update reaches the client's GET stream.
  await client.subscribeResource({ uri: 'note://greeting' });
  let touched = 0;
  for (let i = 0; i < 40 && !updated.includes('note://greeting'); i++) {
    await client.callTool({ name: 'touch_note', arguments: {} });
    touched++;
    await new Promise((r) => setTimeout(r, 250));
  }
  if (updated.includes('note://greeting')) {
    ok(`resources/subscribe answered by the proxy; the upstream's resources/updated reached the client's GET stream (after ${touched} touch(es))`);
  } else fail('resource subscription', `no notifications/resources/updated within 10 s (${touched} touches)`);
  await client.unsubscribeResource({ uri: 'note://greeting' });

  // The upstream's questions (2026 input_required results) asked of the 2025 client as server
  // requests on the call's stream; the client answers on the other instance, and the proxy
  // retries the call upstream with the answers and the upstream's requestState.
  const named = await client.callTool({ name: 'ask_name', arguments: {} }, undefined, { timeout: 30000 });
  const said = JSON.stringify(named.content);
  if (said.includes('hello Ada') && asked.includes('elicitation: Your name?') && answeredOn.length >= 1 &&
      askedOn.length >= 1 && answeredOn[answeredOn.length - 1] !== askedOn[askedOn.length - 1]) {
    ok(`elicitation round trip: the upstream's input_required became elicitation/create on the stream, answered on instance ${answeredOn.at(-1)} (call on ${askedOn.at(-1)}), retried upstream: ${said.slice(0, 120)}`);
  } else fail('elicitation round trip', `result=${said} asked=${JSON.stringify(asked)} answeredOn=${answeredOn} askedOn=${askedOn}`);
  const sampled = await client.callTool({ name: 'ask_model', arguments: { topic: 'the sky' } }, undefined, { timeout: 30000 });
  const text = JSON.stringify(sampled.content);
  if (text.includes('the model said: blue') && asked.some((a) => a.startsWith('sampling:') && a.includes('the sky'))) {
    ok(`sampling round trip: sampling/createMessage asked of the client, its answer carried upstream: ${text.slice(0, 100)}`);
  } else fail('sampling round trip', `result=${text} asked=${JSON.stringify(asked)}`);
  const rooted = JSON.stringify((await client.callTool({ name: 'count_roots', arguments: {} }, undefined, { timeout: 30000 })).content);
  if (rooted.includes('2 roots: file:///work/a, file:///work/b') && asked.includes('roots')) {
    ok(`roots round trip: roots/list asked of the client, its roots carried upstream: ${rooted.slice(0, 100)}`);
  } else fail('roots round trip', `result=${rooted} asked=${JSON.stringify(asked)}`);
  refuseElicitation = true;
  let refused = '';
  try {
    const e = await client.callTool({ name: 'ask_name', arguments: {} }, undefined, { timeout: 30000 });
    refused = JSON.stringify(e);
  } catch (e) { refused = String(e?.message || e); }
  refuseElicitation = false;
  if (/elicitation\/create/.test(refused) && /closed the dialog/.test(refused)) ok(`a client that answers the question with an error ends the call with an error naming it: ${refused.slice(0, 160)}`);
  else fail('refused elicitation', refused.slice(0, 300));

  // A 2026 upstream's response stream that breaks before the answer: a read-only tool's call
  // is re-issued by the proxy under a new id; a call with effects ends with an error saying so.
  const looked = await client.callTool({ name: 'flaky_lookup', arguments: { key: 'k1' } }, undefined, { timeout: 30000 });
  let wrote = '';
  try {
    wrote = JSON.stringify(await client.callTool({ name: 'flaky_write', arguments: { key: 'k2' } }, undefined, { timeout: 30000 }));
  } catch (e) { wrote = String(e?.message || e); }
  const flaky = (await (await fetch(process.env.STATS)).json()).flaky;
  const ids = flaky.flaky_lookup;
  if (JSON.stringify(looked.content).includes('value of k1') && ids.length === 2 && ids[0] !== ids[1] &&
      String(ids[1]).startsWith('shoal-reissue-') && /not re-issued/.test(wrote) && flaky.flaky_write.length === 1) {
    ok(`a broken upstream stream: the read-only call re-issued under a new id (${JSON.stringify(ids)}) and answered; ` +
       `the call with effects not re-issued, the client told: ${wrote.slice(0, 140)}`);
  } else fail('broken upstream stream', `looked=${JSON.stringify(looked)} wrote=${wrote.slice(0, 200)} flaky=${JSON.stringify(flaky)}`);

  // A tool argument the upstream mirrors in a header (x-mcp-header): a 2025 client sends no
  // such header; the proxy adds Mcp-Param-Region (base64 for non-ASCII) and the upstream's SDK
  // checks it against the body. Control: the same call straight to the upstream without the
  // header is refused.
  const deployed = [];
  for (const region of ['us-west1', 'Zürich']) {
    try {
      const d = await client.callTool({ name: 'deploy', arguments: { region } });
      deployed.push(JSON.stringify(d.content).includes(`deployed to ${region}`) && !d.isError);
    } catch (e) { deployed.push(String(e?.message || e).slice(0, 200)); }
  }
  const upstream = process.env.STATS.replace(/\/stats$/, '/mcp');
  const bare = await fetch(upstream, {
    method: 'POST',
    headers: {
      'content-type': 'application/json', accept: 'application/json, text/event-stream',
      'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'deploy',
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: 'control', method: 'tools/call', params: {
      name: 'deploy', arguments: { region: 'us-west1' },
      _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': {} } } }),
  });
  const bareText = await bare.text();
  if (deployed.every((d) => d === true) && bare.status === 400 && /-32020/.test(bareText)) {
    ok(`a mirrored tool argument: the proxy sent Mcp-Param-Region (plain and base64) and the upstream accepted both calls; without the header it answers ${bare.status} -32020`);
  } else fail('mirrored argument', `deployed=${JSON.stringify(deployed)} control=${bare.status} ${bareText.slice(0, 200)}`);

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
