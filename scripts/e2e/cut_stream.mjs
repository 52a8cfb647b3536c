// Shared by the end-to-end clients (copied next to them by their run.sh): what a test needs to
// route a client's requests between instances and to cut an SSE reply mid-stream.

// `url` with the host and port of `base`.
export function retarget(url, base) {
  const u = new URL(url); const t = new URL(base); u.host = t.host; return u;
}

// `resp` with its body cut (an error, as a dropped connection) once `after` progress
// notifications have passed through it.
export function cutAfterProgress(resp, after) {
  const reader = resp.body.getReader();
  let n = 0; const dec = new TextDecoder();
  const body = new ReadableStream({
    async pull(c) {
      const { value, done } = await reader.read();
      if (done) { c.close(); return; }
      c.enqueue(value);
      n += (dec.decode(value).match(/notifications\/progress/g) || []).length;
      if (n >= after) { reader.cancel().catch(() => {}); c.error(new Error('connection cut by the test')); }
    },
    cancel() { reader.cancel().catch(() => {}); },
  });
  return new Response(body, { status: resp.status, statusText: resp.statusText, headers: resp.headers });
}
