"""RSS of a chat2api process through a burst of large request bodies.

Sends N concurrent requests with a body of SIZE MiB each (a chat request
for an unknown model: the gateway reads and parses the whole body, then
answers 404), then samples VmRSS every 5 s for 30 s of quiet.

    python3 benches/e2e/burst.py --port PORT --pid PID [--n 8] [--mib 49] [--key KEY]

Prints one line: BURST_RESULT idle_kib=... peak_kib=... after_5s_kib=... after_30s_kib=... errors=...
"""
import argparse
import socket
import threading
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--mib", type=int, default=49)
    ap.add_argument("--key", default="", help="client key, when the gateway checks keys")
    a = ap.parse_args()
    content = b"x" * (a.mib * 1024 * 1024 - 100)
    body = b'{"model":"burst-unknown","messages":[{"role":"user","content":"' + content + b'"}]}'
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n" % len(body)
        + (b"Authorization: Bearer %s\r\n" % a.key.encode() if a.key else b"")
        + b"\r\n"
    )
    errors = []
    peak = [rss_kib(a.pid)]
    idle = peak[0]

    def one():
        try:
            with socket.create_connection(("127.0.0.1", a.port), timeout=60) as s:
                s.sendall(head)
                s.sendall(body)
                parts = []
                while True:
                    chunk = s.recv(1 << 16)
                    if not chunk:
                        break
                    parts.append(chunk)
                if not b"".join(parts).startswith(b"HTTP/1.1 404"):
                    errors.append("unexpected answer")
        except OSError as e:
            errors.append(str(e))

    threads = [threading.Thread(target=one) for _ in range(a.n)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        peak[0] = max(peak[0], rss_kib(a.pid))
        time.sleep(0.01)
    samples = {}
    for s in range(5, 31, 5):
        time.sleep(5)
        samples[s] = rss_kib(a.pid)
    print(
        f"BURST_RESULT idle_kib={idle} peak_kib={peak[0]} after_5s_kib={samples[5]} "
        f"after_30s_kib={samples[30]} errors={len(errors)}"
    )


if __name__ == "__main__":
    main()
