#!/usr/bin/env python3
"""Open N concurrent streaming requests to chat2api and read its RSS.

Each connection POSTs a `"stream": true` chat request for a slow mock model
(bench config: `mock-slow`, one token per second) and reads until the first
`data:` event has arrived. When every stream has its first event, the
gateway's VmRSS is read from /proc/PID/status; then all connections are
closed. Prints one line `STREAMS_RESULT key=value ...`.

With --upstream-pid (the slow upstream a proxied stream goes through, e.g. a
second chat2api serving the mock), that process's VmRSS and open fds are
read at the same moments and printed as `up_*` keys.

Standard library only. Usage:
  open_streams.py --port P --pid PID --n N [--model mock-slow] [--key K]
                  [--upstream-pid PID]
"""
import argparse
import asyncio
import os
import resource
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def threads(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


async def open_one(port, request, sem, writers, ended):
    async with sem:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        buf = b""
        while b"\ndata: " not in b"\n" + buf:
            chunk = await reader.read(4096)
            if not chunk:
                raise ConnectionError("closed before the first event")
            buf += chunk
        if not buf.startswith(b"HTTP/1.1 200"):
            raise ConnectionError(buf.split(b"\r\n", 1)[0].decode(errors="replace"))
    writers.append(writer)

    # Keep draining so the gateway's socket buffers stay small, and notice a
    # stream that finishes (it must not, before the measurement).
    async def drain():
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk or b"[DONE]" in chunk:
                    ended.append(1)
                    return
        except (ConnectionError, OSError):
            return
    asyncio.ensure_future(drain())


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--model", default="mock-slow")
    ap.add_argument("--key", default="sk-bench-5f3c9a1e7d2b4c68")
    ap.add_argument("--concurrency", type=int, default=256, help="connects in flight")
    ap.add_argument("--hold", type=float, default=1.0, help="seconds to wait after the last first event")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--upstream-pid", type=int, default=0,
                    help="also report this process's RSS and fds (a proxied stream's upstream)")
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < a.n + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, a.n + 1000), hard))

    body = (b'{"model":"' + a.model.encode() + b'","stream":true,'
            b'"messages":[{"role":"user","content":"Tell me a long story."}]}')
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Authorization: Bearer " + a.key.encode() + b"\r\n"
               b"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
               b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

    up = a.upstream_pid
    rss0 = rss_kib(a.pid)
    up0 = rss_kib(up) if up else 0
    sem = asyncio.Semaphore(a.concurrency)
    writers, ended = [], []
    t0 = time.monotonic()
    results = await asyncio.wait_for(
        asyncio.gather(*(open_one(a.port, request, sem, writers, ended) for _ in range(a.n)),
                       return_exceptions=True),
        a.timeout)
    ramp = time.monotonic() - t0
    errors = [r for r in results if isinstance(r, BaseException)]
    await asyncio.sleep(a.hold)
    rss1 = rss_kib(a.pid)
    up1 = rss_kib(up) if up else 0
    nthreads = threads(a.pid)
    fds1, up_fds1 = fds(a.pid), (fds(up) if up else 0)
    open_now = len(writers) - len(ended)
    for w in writers:
        w.transport.abort()
    await asyncio.sleep(1.0)
    rss2 = rss_kib(a.pid)
    up2 = rss_kib(up) if up else 0
    fds2, up_fds2 = fds(a.pid), (fds(up) if up else 0)
    per = (rss1 - rss0) / max(open_now, 1)
    first_err = repr(errors[0])[:120].replace(" ", "_") if errors else "-"
    up_kv = (f" up_rss_before_kib={up0} up_rss_open_kib={up1} up_rss_after_close_kib={up2}"
             f" up_fds_open={up_fds1} up_fds_after_close={up_fds2}") if up else ""
    print(f"STREAMS_RESULT n={a.n} opened={len(writers)} open_at_measure={open_now} "
          f"errors={len(errors)} ramp_s={ramp:.2f} rss_before_kib={rss0} rss_open_kib={rss1} "
          f"rss_after_close_kib={rss2} per_stream_kib={per:.1f} threads={nthreads} "
          f"fds_open={fds1} fds_after_close={fds2}{up_kv} first_error={first_err}")
    return 0 if not errors else 1


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except asyncio.TimeoutError:
        print("STREAMS_RESULT error=timeout")
        sys.exit(1)
