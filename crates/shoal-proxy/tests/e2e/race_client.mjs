// Race test of server-initiated requests on the standalone GET stream, with the official
// TypeScript SDK client (Client + StreamableHTTPClientTransport) against race_server.mjs.
//
// After `connect`, the SDK transport opens its standalone GET (on the 202 of
// notifications/initialized, without awaiting it) and this script POSTs `tools/call ask` at
// once, so the GET and the POST race. The tool sends `sampling/createMessage` (and on odd calls
// `elicitation/create` too) on the standalone stream; the handlers here answer at once. A round
// trip is lost when the call times out or fails or its result lacks the answers.
//
// Env: URL_A and URL_B (two proxy endpoints; requests alternate between them), or URL (DIRECT
// mode: every request to that one endpoint). SESSIONS (default 20) x CALLS (default 10) round
// trips, CONCURRENCY sessions at a time (default 4), TIMEOUT_MS per call (default 10000),
// LABEL (printed in the result line), DEADLINE_MS for the whole run (default 240000: round trips
// not started by then count as lost), GET_DELAY_MS (default 0: holds the standalone GET back that
// long, a control that shows the test catches a GET overtaken by the POST), STATS_URL (the race
// server's /stats: reports how many calls found no GET stream open at the server).
// Prints "ok race…" or "FAIL race…"; exit 1 on a loss.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema, ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';

const DIRECT = process.env.URL;
const A = DIRECT || process.env.URL_A, B = DIRECT || process.env.URL_B;
if (!A || !B) { console.log('FAIL race: set URL (direct) or URL_A and URL_B'); process.exit(1); }
const SESSIONS = Number(process.env.SESSIONS || 20);
const CALLS = Number(process.env.CALLS || 10);
const CONCURRENCY = Number(process.env.CONCURRENCY || 4);
const TIMEOUT_MS = Number(process.env.TIMEOUT_MS || 10000);
const DEADLINE = Date.now() + Number(process.env.DEADLINE_MS || 240000);
const GET_DELAY_MS = Number(process.env.GET_DELAY_MS || 0);
const LABEL = process.env.LABEL || (DIRECT ? 'direct' : 'through two proxies');
const TOTAL = SESSIONS * CALLS;

function retarget(url, base) {
  const u = new URL(url); const t = new URL(base); u.host = t.host; u.pathname = t.pathname; return u;
}

// One alternating router per session: GET, POSTs and the answers to the server's requests
// each go to the next instance in turn.
function router() {
  let turn = 0;
  const seen = { A: 0, B: 0 };
  const f = async (url, init = {}) => {
    const method = (init.method || 'GET').toUpperCase();
    if (method === 'GET' && GET_DELAY_MS > 0) await new Promise((r) => setTimeout(r, GET_DELAY_MS));
    const base = (turn++ % 2 === 0) ? A : B;
    seen[base === A ? 'A' : 'B']++;
    return fetch(retarget(url, base), init);
  };
  return { fetch: f, seen };
}

let lost = 0, done = 0;
const reasons = new Map();
const loss = (why) => { lost++; reasons.set(why, (reasons.get(why) || 0) + 1); };
const totals = { A: 0, B: 0 };

async function session(s) {
  if (Date.now() > DEADLINE) { for (let n = 0; n < CALLS; n++) loss('not started before the deadline'); return; }
  const r = router();
  const transport = new StreamableHTTPClientTransport(new URL(A), {
    fetch: r.fetch,
    reconnectionOptions: { initialReconnectionDelay: 100, maxReconnectionDelay: 1000, reconnectionDelayGrowFactor: 1.5, maxRetries: 20 },
  });
  const client = new Client(
    { name: 'shoal-e2e-race', version: '1.0.0' },
    { capabilities: { sampling: {}, elicitation: { form: {} } } },
  );
  client.onerror = () => {};
  transport.onerror = () => {};
  client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
    const text = req.params.messages[0]?.content?.text ?? '';
    return { model: 'race', role: 'assistant', content: { type: 'text', text: `re ${text}` } };
  });
  client.setRequestHandler(ElicitRequestSchema, async (req) => ({
    action: 'accept', content: { answer: `re ${req.params.message}` },
  }));
  try {
    await client.connect(transport);
  } catch (e) {
    for (let n = 0; n < CALLS; n++) loss(`connect failed: ${e?.message || e}`);
    return;
  }
  // The first call goes out right after connect, while the SDK is still opening its GET.
  for (let n = 0; n < CALLS; n++) {
    if (Date.now() > DEADLINE) { loss('not started before the deadline'); continue; }
    const tag = `s${s}c${n}`;
    try {
      const res = await client.callTool({ name: 'ask', arguments: { n, tag } }, undefined, { timeout: TIMEOUT_MS });
      const text = res.content?.[0]?.text ?? '';
      const want = `sampling=re sample ${tag}` + (n % 2 === 1 ? ` elicitation=accept:re elicit ${tag}` : '');
      if (res.isError || text !== want) loss(`${n === 0 ? 'first' : 'later'} call: wrong result: ${text.slice(0, 120)}`);
      else done++;
    } catch (e) {
      loss(`${n === 0 ? 'first' : 'later'} call: ${(e?.message || String(e)).slice(0, 120)}`);
    }
  }
  totals.A += r.seen.A; totals.B += r.seen.B;
  try { await transport.terminateSession(); } catch {}
  try { await client.close(); } catch {}
}

const stats = async () => {
  if (!process.env.STATS_URL) return undefined;
  try { return await (await fetch(process.env.STATS_URL)).json(); } catch { return undefined; }
};
const before = await stats();
const started = Date.now();
let next = 0;
await Promise.all(Array.from({ length: Math.min(CONCURRENCY, SESSIONS) }, async () => {
  while (next < SESSIONS) await session(next++);
}));
const secs = ((Date.now() - started) / 1000).toFixed(1);
for (const [why, count] of reasons) console.error(`race: lost ${count}: ${why}`);
let where = DIRECT ? '' : `, requests A ${totals.A} / B ${totals.B}`;
const after = await stats();
if (before && after) where += `; at the server ${after.getNotOpen - before.getNotOpen} of ${after.calls - before.calls} calls found no GET stream open`;
if (lost === 0 && done === TOTAL) {
  console.log(`ok race: ${done}/${TOTAL} round trips, 0 lost (server requests on the standalone stream; ${LABEL}, ${secs} s${where})`);
  process.exit(0);
}
console.log(`FAIL race: ${lost} of ${TOTAL} lost (server requests on the standalone stream; ${LABEL}, ${done} ok, ${secs} s${where})`);
process.exit(1);
