"""Shared by the Python end-to-end clients: "ok …" / "FAIL …" report lines, and an httpx2
transport that sends each request to the other of two instances (only the first once the
second is marked dead), logging where each went."""

import httpx2


class Report:
    """Counts failures; prints one line per check."""

    def __init__(self):
        self.failures = 0

    def ok(self, name):
        print(f"ok {name}", flush=True)

    def fail(self, name, why):
        self.failures += 1
        print(f"FAIL {name}: {why}", flush=True)


class Alternating(httpx2.AsyncBaseTransport):
    """Sends each request to the other instance (only A once `b_dead` is set). `log` holds
    "<METHOD>->A|B" per request; `sessions` the Mcp-Session-Id values seen."""

    def __init__(self, a, b):
        self.inner = httpx2.AsyncHTTPTransport()
        self.a = httpx2.URL(a)
        self.b = httpx2.URL(b)
        self.turn = 0
        self.b_dead = False
        self.log = []
        self.sessions = set()

    async def handle_async_request(self, request):
        target = self.a if self.b_dead or self.turn % 2 == 0 else self.b
        self.turn += 1
        self.log.append(f"{request.method}->{'A' if target == self.a else 'B'}")
        sid = request.headers.get("mcp-session-id")
        if sid:
            self.sessions.add(sid)
        request.url = request.url.copy_with(host=target.host, port=target.port)
        return await self.inner.handle_async_request(request)

    async def aclose(self):
        await self.inner.aclose()
