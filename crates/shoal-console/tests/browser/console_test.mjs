// The console in a real headless Chromium (Debian's, driven by playwright-core) against two
// `shoal proxy` instances on one real Redis with live traffic (traffic.mjs).
// Env: CONSOLE (base URL), PROXY_A, PROXY_B (base URLs), STORE, SHOAL_BIN, REDIS_PID,
// CONSOLE_PID, IDS_FILE, SHOTS (screenshot folder), CHROMIUM (executable), COST_ROUNDS.
// Prints "ok <check>" / "FAIL <check>: <why>" / "figure <name>: <value>"; exit 1 on a failure.
import { execFileSync } from 'node:child_process';
import { readFileSync, mkdirSync } from 'node:fs';
import http from 'node:http';
import { chromium } from 'playwright-core';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const C = process.env.CONSOLE;
const PROXIES = [process.env.PROXY_A, process.env.PROXY_B];
const SHOTS = process.env.SHOTS;
mkdirSync(SHOTS, { recursive: true });
let failures = 0;
const ok = (n) => console.log(`ok ${n}`);
const fail = (n, why) => { failures++; console.log(`FAIL ${n}: ${why}`); };
const figure = (n, v) => console.log(`figure ${n}: ${v}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const shoal = (...args) => JSON.parse(execFileSync(process.env.SHOAL_BIN, ['--store', process.env.STORE, ...args, '--json'], { encoding: 'utf8' }));
const ids = JSON.parse(readFileSync(process.env.IDS_FILE, 'utf8'));

async function check(name, f) {
  try { await f(); } catch (e) { fail(name, String(e && e.stack || e).split('\n').slice(0, 3).join(' | ')); }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
const shot = (name) => page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });

await check('overview shows the store\'s live sessions and both proxies', async () => {
  await page.goto(`${C}/`);
  await page.waitForSelector('body[data-updated]', { timeout: 15000 });
  let shown = -1, stored = -2;
  for (let i = 0; i < 40 && shown !== stored; i++) {
    await sleep(500);
    stored = shoal('stats').sessions;
    shown = Number((await page.textContent('[data-k=live-sessions] .v')).replace(/,/g, ''));
  }
  if (shown !== stored) throw new Error(`page ${shown}, store ${stored}`);
  const up = await page.textContent('[data-k=instances-up] .v');
  if (up !== '2/2') throw new Error(`proxies up ${up}`);
  const rows = await page.$$eval('#instances-table tbody tr', (r) => r.length);
  if (rows !== 2) throw new Error(`${rows} proxy rows`);
  // Live traffic shows as a request rate and store operations.
  let rps = 0;
  for (let i = 0; i < 20 && !(rps > 0); i++) {
    await sleep(500);
    rps = parseFloat(await page.textContent('[data-k=requests-per-sec] .v'));
  }
  if (!(rps > 0)) throw new Error(`requests/s ${rps}`);
  const ops = await page.$$eval('#ops table tbody tr td:first-child', (t) => t.map((x) => x.textContent));
  if (!ops.includes('append_frames') && !ops.includes('append_frame')) throw new Error(`store ops ${ops.join(',')}`);
  ok(`overview: ${shown} live sessions as in the store, 2/2 proxies up, ${rps} requests/s, ${ops.length} store operations`);
  await shot('overview');
});

await check('a session page shows its frames in order', async () => {
  const id = ids[0].id;
  const before = shoal('sessions', 'frames', id, '--all');
  await page.goto(`${C}/sessions/${id}`);
  const after = shoal('sessions', 'frames', id, '--all');
  const seqOf = (j) => (Array.isArray(j) ? j : j.frames).map((f) => f.seq);
  const b = seqOf(before), a = seqOf(after);
  const p = await page.$$eval('#frames-table tbody tr', (r) => r.map((x) => Number(x.dataset.seq)));
  for (let i = 1; i < p.length; i++) if (!(p[i] > p[i - 1])) throw new Error(`seq ${p[i]} after ${p[i - 1]}`);
  if (p.length < b.length || b.some((s, i) => p[i] !== s)) throw new Error(`page ${p.length} frames do not start with the store's ${b.length}`);
  if (a.length < p.length || p.some((s, i) => a[i] !== s)) throw new Error('page frames are not the store\'s');
  const paired = await page.$$eval('#frames-table td', (t) => t.filter((x) => /ms \(to #\d+\)/.test(x.textContent)).length);
  if (paired === 0) throw new Error('no reply paired with its request');
  const lanes = await page.$$eval('#frame-lanes circle', (c) => c.length);
  if (lanes !== p.length) throw new Error(`${lanes} dots for ${p.length} frames`);
  ok(`session page: ${p.length} frames in seq order, as stored; ${paired} replies paired with their requests`);
  await shot('session');
  await page.click('#frames-table tbody tr:first-child a');
  const payload = await page.textContent('#payload');
  if (!payload.includes('"jsonrpc"')) throw new Error('payload page shows no JSON-RPC');
  ok('a frame\'s payload only on its own page');
  await shot('frame');
});

await check('analytics charts', async () => {
  await page.goto(`${C}/analytics`);
  let bars = 0;
  for (let i = 0; i < 40 && bars === 0; i++) {
    await sleep(500);
    bars = await page.$$eval('svg#chart-tools rect', (r) => r.length).catch(() => 0);
  }
  if (bars === 0) throw new Error('no tool bars after 20 s');
  const clients = await page.$$eval('svg#chart-clients text.label', (t) => t.map((x) => x.textContent));
  if (!clients.some((c) => c.startsWith('traffic-ts'))) throw new Error(`clients ${clients}`);
  ok(`analytics: ${bars} tools charted, clients ${clients.join(', ')}`);
  await shot('analytics');
  await page.goto(`${C}/redis`);
  await page.waitForSelector('[data-k=redis-policy]');
  const policy = await page.textContent('[data-k=redis-policy]');
  if (policy !== 'noeviction') throw new Error(`policy ${policy}`);
  ok('redis page: maxmemory-policy noeviction, persistence warning shown');
  await shot('redis');
});

await check('search by principal', async () => {
  await page.goto(`${C}/sessions?by=principal&q=team-1`);
  const shown = await page.$$eval('#sessions-table tbody tr', (r) => r.length);
  const expected = ids.filter((s) => s.principal === 'team-1').length;
  if (shown !== expected) throw new Error(`${shown} rows, ${expected} sessions of team-1`);
  ok(`search by principal: ${shown} sessions of team-1`);
  await shot('sessions');
});

// The status a proxy answers a request in session `sid` (its principal's header included:
// a session is bound to its principal).
async function statusOn(proxy, sid) {
  const principal = ids.find((s) => s.id === sid).principal;
  const r = await fetch(`${proxy}/mcp`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25', 'x-shoal-principal': principal },
    body: JSON.stringify({ jsonrpc: '2.0', id: 99, method: 'tools/list' }),
  });
  await r.arrayBuffer().catch(() => {});
  return r.status;
}

await check('deleting a session from its page makes it 404 on both proxies', async () => {
  const id = ids[1].id;
  const before = await Promise.all(PROXIES.map((p) => statusOn(p, id)));
  if (before.some((s) => s !== 200)) throw new Error(`before: ${before}`);
  await page.goto(`${C}/sessions/${id}`);
  await page.click('#delete-session');
  await page.waitForSelector('#confirm');
  await shot('confirm-delete');
  await page.click('#confirm button[type=submit]');
  await page.waitForSelector('text=deleted');
  const after = await Promise.all(PROXIES.map((p) => statusOn(p, id)));
  if (after.some((s) => s !== 404)) throw new Error(`after: ${after}`);
  ok(`deleted from the page: ${before.join('/')} before, ${after.join('/')} after on both proxies`);
});

await check('forged actions and foreign hosts are refused', async () => {
  const forged = await fetch(`${C}/sessions/${ids[2].id}/delete`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'csrf=guess&confirm=yes',
  });
  const cross = await fetch(`${C}/sessions/${ids[2].id}/delete`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'http://evil.example' }, body: 'csrf=guess&confirm=yes',
  });
  // fetch() does not let a caller set Host: a raw request does, as a rebinding page's would arrive.
  const rebinding = await new Promise((resolve, reject) => {
    const u = new URL(C);
    http.get({ host: u.hostname, port: u.port, path: '/', headers: { host: 'evil.example' } }, (res) => { res.resume(); resolve({ status: res.statusCode }); }).on('error', reject);
  });
  const still = await statusOn(PROXIES[0], ids[2].id);
  if (forged.status !== 403 || cross.status !== 403 || rebinding.status !== 403 || still !== 200) {
    throw new Error(`forged ${forged.status}, cross-site ${cross.status}, foreign Host ${rebinding.status}, session ${still}`);
  }
  ok('a POST without the page\'s CSRF token, a cross-site POST and a foreign Host get 403; the session lives');
});

await check('a breaker opening (Redis SIGSTOPped) is on the timeline within 2 s', async () => {
  await page.goto(`${C}/timeline`);
  await page.waitForSelector('body[data-updated]', { timeout: 15000 });
  const known = await page.$$eval('li[data-kind=breaker_opened]', (l) => l.length);
  const breakerOpen = async () => {
    for (const p of PROXIES) {
      const t = await (await fetch(`${p}/metrics`)).text();
      if (/^shoal_resilient_breaker_state\{[^}]*\} 2$/m.test(t)) return true;
    }
    return false;
  };
  process.kill(Number(process.env.REDIS_PID), 'SIGSTOP');
  const stopped = Date.now();
  let opened = 0, shown = 0;
  try {
    while (Date.now() - stopped < 30000) {
      if (!opened && await breakerOpen()) opened = Date.now();
      if (opened && (await page.$$eval('li[data-kind=breaker_opened]', (l) => l.length)) > known) { shown = Date.now(); break; }
      await sleep(50);
    }
    await shot('timeline-breaker-open');
  } finally {
    process.kill(Number(process.env.REDIS_PID), 'SIGCONT');
  }
  if (!opened) throw new Error('no breaker opened within 30 s of SIGSTOP');
  if (!shown) throw new Error('the timeline never showed it');
  figure('breaker opened after SIGSTOP (ms)', opened - stopped);
  figure('breaker on the timeline after it opened (ms)', shown - opened);
  if (shown - opened > 2000) throw new Error(`shown ${shown - opened} ms after it opened`);
  ok(`breaker opened ${opened - stopped} ms after SIGSTOP, on the timeline ${shown - opened} ms later`);
  await page.waitForSelector('li[data-kind=breaker_closed]', { timeout: 60000 });
  ok('breaker closed after SIGCONT, on the timeline');
  await shot('timeline');
});

await browser.close();

// The console's cost: the proxy's throughput with the console attached and a browser
// watching the overview, against the console stopped (SIGSTOP: no scrapes, no page), rounds
// alternated in one run. Reported, not judged (a benchmark, not a timed test).
async function load(seconds) {
  const transport = new StreamableHTTPClientTransport(new URL(`${PROXIES[0]}/mcp`));
  const client = new Client({ name: 'cost', version: '1' });
  client.onerror = () => {};
  await client.connect(transport);
  let n = 0;
  const end = Date.now() + seconds * 1000;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (Date.now() < end) { await client.callTool({ name: 'echo', arguments: { message: 'x' } }); n++; }
  }));
  await client.close().catch(() => {});
  return n / seconds;
}
await check('console cost', async () => {
  try { process.kill(Number(process.env.TRAFFIC_PID)); } catch (_) {}
  const rounds = Number(process.env.COST_ROUNDS || 2);
  const off = [], on = [];
  const watcher = await chromium.launch({ executablePath: process.env.CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'] });
  const p2 = await watcher.newPage();
  const stopped = async () => {
    process.kill(Number(process.env.CONSOLE_PID), 'SIGSTOP');
    try { off.push(await load(4)); } finally { process.kill(Number(process.env.CONSOLE_PID), 'SIGCONT'); }
  };
  // CPU seconds the console process used (utime + stime, clock ticks of 10 ms).
  const cpu = () => {
    const f = readFileSync(`/proc/${process.env.CONSOLE_PID}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  };
  const consoleCpu = [];
  const watching = async () => {
    await p2.goto(`${C}/`);
    await p2.waitForSelector('body[data-updated]', { timeout: 15000 });
    const c0 = cpu(), t0 = Date.now();
    on.push(await load(4));
    consoleCpu.push((cpu() - c0) / ((Date.now() - t0) / 1000));
    await p2.goto('about:blank');
  };
  await load(2); // warm-up, not counted
  for (let r = 0; r < rounds; r++) {
    // Alternate which goes first, so a drift in the machine's load favours neither.
    if (r % 2 === 0) { await stopped(); await watching(); } else { await watching(); await stopped(); }
  }
  await watcher.close();
  const med = (a) => a.slice().sort((x, y) => x - y)[Math.floor(a.length / 2)];
  figure('proxy calls/s, console stopped (rounds)', off.map((x) => x.toFixed(0)).join(' '));
  figure('proxy calls/s, console watching (rounds)', on.map((x) => x.toFixed(0)).join(' '));
  figure('console watching ÷ stopped (median)', (med(on) / med(off)).toFixed(3));
  figure('console process CPU while watched (share of one core, rounds)', consoleCpu.map((x) => x.toFixed(3)).join(' '));
  ok('console cost measured');
});

process.exit(failures ? 1 : 0);
