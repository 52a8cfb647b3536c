// A stdio upstream behind two proxies: initialize on A, then requests alternate, so B has to
// restore the session (start the server, replay the stored initialize) before forwarding.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const A = process.env.URL_A, B = process.env.URL_B;
let failures = 0, turn = 0;
const ok = (n) => console.log(`ok ${n}`);
const fail = (n, why) => { failures++; console.log(`FAIL ${n}: ${why}`); };
const routedFetch = (url, init = {}) => {
  const u = new URL(url); u.host = new URL(turn++ % 2 === 0 ? A : B).host;
  return fetch(u, init);
};
const transport = new StreamableHTTPClientTransport(new URL(A), { fetch: routedFetch });
const client = new Client({ name: 'shoal-e2e-stdio', version: '1.0.0' });
client.onerror = () => {};
try {
  await client.connect(transport);
  let good = 0;
  for (let i = 0; i < 6; i++) {
    const r = await client.callTool({ name: 'get-sum', arguments: { a: i, b: 10 } });
    if (JSON.stringify(r.content).includes(String(i + 10))) good++;
  }
  if (good === 6) ok('stdio session restored on the second instance; 6 calls alternating');
  else fail('stdio', `good=${good}`);
  const tools = await client.listTools();
  if (tools.tools.length > 3) ok(`tools/list through a restored stdio session (${tools.tools.length} tools)`);
  else fail('stdio tools', JSON.stringify(tools));
  await transport.terminateSession();
  await client.close();
} catch (e) {
  fail('stdio client', e?.stack || String(e));
}
process.exit(failures ? 1 : 0);
