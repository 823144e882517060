"""Paced streams through a proxy, the AI-gateway shape (issue 20): a
64-frame answer paced at 20 ms a frame, asked for directly from the
upstream, through chat2api and through nginx, at 1 and at 64 concurrent
streams. Prints, per target, the time to first frame (TTFT) and the gaps
between frames (p50, p99), and what the proxy adds over the direct run.

The upstream is chat2api's own mock (tokenDelayMs 20, answerTokens 64) on
its own port; chat2api and nginx proxy to it over keep-alive connections.
All on 127.0.0.1, sharing the machine's cores, nothing pinned.

Usage: python3 paced.py UPSTREAM_PORT CHAT2API_PORT NGINX_PORT [STREAMS_PER_CONN]
(benches/e2e/paced.sh starts the three and calls this.)
"""
import asyncio
import statistics
import sys
import time

BODY = (b'{"model":"paced","stream":true,'
        b'"messages":[{"role":"user","content":"Tell me a long story"}]}')


def request(port):
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
            b"Content-Type: application/json\r\nAuthorization: Bearer sk-bench\r\n"
            b"Content-Length: %d\r\n\r\n" % (port, len(BODY))) + BODY


async def one_stream(reader, writer, port):
    """One streamed answer on an open connection: (ttft, [gaps]) in ms."""
    sent = time.perf_counter()
    writer.write(request(port))
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n", 1)[0], head
    arrivals = []
    buf = b""
    while True:
        # chunked framing: size line, data, CRLF
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.strip(), 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            break
        data = await reader.readexactly(size + 2)
        now = time.perf_counter()
        buf += data[:-2]
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            if b'"content":"' in event and b'"content":""' not in event:
                arrivals.append(now)
    ttft = (arrivals[0] - sent) * 1000
    gaps = [(b - a) * 1000 for a, b in zip(arrivals, arrivals[1:])]
    return ttft, gaps


async def worker(port, streams, out):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(streams):
        out.append(await one_stream(reader, writer, port))
    writer.close()


async def run(port, conns, streams):
    out = []
    await asyncio.gather(*(worker(port, streams, out) for _ in range(conns)))
    ttfts = sorted(t for t, _ in out)
    gaps = sorted(g for _, gs in out for g in gs)
    pct = lambda xs, p: xs[min(len(xs) - 1, int(len(xs) * p))]
    return {"ttft50": pct(ttfts, 0.5), "ttft99": pct(ttfts, 0.99),
            "gap50": pct(gaps, 0.5), "gap99": pct(gaps, 0.99), "streams": len(out)}


async def main():
    up, c2a, ngx = (int(p) for p in sys.argv[1:4])
    per_conn = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    for conns in (1, 64):
        streams = per_conn * (10 if conns == 1 else 1)
        results = {}
        for name, port in (("direct", up), ("chat2api", c2a), ("nginx", ngx), ("direct2", up)):
            results[name] = await run(port, conns, streams)
        base = {k: min(results["direct"][k], results["direct2"][k]) for k in results["direct"] if k != "streams"}
        print(f"c{conns}: {results['direct']['streams']} streams per target")
        for name in ("direct", "chat2api", "nginx", "direct2"):
            r = results[name]
            added = ""
            if name in ("chat2api", "nginx"):
                added = (f"  added: ttft p50 {r['ttft50'] - base['ttft50']:+.2f} ms, "
                         f"p99 {r['ttft99'] - base['ttft99']:+.2f} ms; gap p99 {r['gap99'] - base['gap99']:+.2f} ms")
            print(f"  {name:9} ttft p50 {r['ttft50']:7.2f} p99 {r['ttft99']:7.2f} ms; "
                  f"gap p50 {r['gap50']:6.2f} p99 {r['gap99']:6.2f} ms{added}")


asyncio.run(main())
