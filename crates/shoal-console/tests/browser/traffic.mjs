// Live traffic for the console's browser test: N sessions opened with the official TypeScript
// SDK client through two proxies (requests alternate between them), each with a principal
// header, then tool calls in a loop until killed or DURATION_S passes. A session deleted
// under it (404) is dropped, never recreated, so the live count only falls.
// Env: URL_A, URL_B, N (default 8), IDS_FILE (written once every session is open),
// DURATION_S (default 600).
import { writeFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const A = process.env.URL_A, B = process.env.URL_B;
const N = Number(process.env.N || 8);
const until = Date.now() + 1000 * Number(process.env.DURATION_S || 600);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function routed(turn) {
  return (url, init = {}) => {
    const base = turn.n++ % 2 === 0 ? A : B;
    const u = new URL(url);
    const b = new URL(base);
    u.host = b.host;
    return fetch(u, init);
  };
}

const sessions = [];
for (let i = 0; i < N; i++) {
  const principal = `team-${i % 3}`;
  const transport = new StreamableHTTPClientTransport(new URL(A), {
    fetch: routed({ n: i }),
    requestInit: { headers: { 'x-shoal-principal': principal } },
    reconnectionOptions: { initialReconnectionDelay: 200, maxReconnectionDelay: 1000, reconnectionDelayGrowFactor: 1.5, maxRetries: 2 },
  });
  const client = new Client({ name: i % 2 ? 'traffic-ts' : 'traffic-ts-alt', version: `1.${i % 3}.0` });
  client.onerror = () => {};
  transport.onerror = () => {};
  await client.connect(transport);
  sessions.push({ client, transport, id: transport.sessionId, principal, alive: true });
}
writeFileSync(process.env.IDS_FILE, JSON.stringify(sessions.map((s) => ({ id: s.id, principal: s.principal }))));
console.log(`traffic: ${sessions.length} sessions open`);

let calls = 0, errors = 0;
while (Date.now() < until && sessions.some((s) => s.alive)) {
  await Promise.all(sessions.filter((s) => s.alive).map(async (s, k) => {
    try {
      const pick = (calls + k) % 7;
      if (pick === 0) await s.client.callTool({ name: 'get-sum', arguments: { a: 'x', b: 2 } }).catch(() => {}); // a tool error
      else if (pick === 1) await s.client.callTool({ name: 'get-sum', arguments: { a: calls, b: 2 } });
      else if (pick === 2) await s.client.listTools();
      else await s.client.callTool({ name: 'echo', arguments: { message: `m${calls}` } });
      calls++;
    } catch (e) {
      errors++;
      if (String(e).includes('404') || String(e).toLowerCase().includes('session not found')) s.alive = false;
    }
  }));
  await sleep(100);
}
console.log(`traffic: ${calls} calls, ${errors} errors`);
process.exit(0);
