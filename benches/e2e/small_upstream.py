"""A small upstream for benches/e2e/capped.sh: an asyncio HTTP/1.1 server
with a short accept queue (--backlog, 128 like many model servers' defaults)
that answers every POST with a chat.completion after --delay-ms, keep-alive.
Prints the connections it accepted when it gets SIGTERM."""
import argparse, asyncio, signal, sys

ANSWER = (b'{"id":"chatcmpl-small","object":"chat.completion","created":1700000000,'
          b'"model":"small","choices":[{"index":0,"message":{"role":"assistant",'
          b'"content":"ok"},"finish_reason":"stop"}],'
          b'"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}')
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(ANSWER)).encode() + b"\r\n\r\n" + ANSWER)
accepted = 0


async def serve(reader, writer, delay):
    global accepted
    accepted += 1
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            await asyncio.sleep(delay)
            writer.write(RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--backlog", type=int, default=128)
    p.add_argument("--delay-ms", type=float, default=20)
    a = p.parse_args()
    server = await asyncio.start_server(
        lambda r, w: serve(r, w, a.delay_ms / 1000), "127.0.0.1", a.port, backlog=a.backlog)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()
    print(f"ACCEPTED {accepted}", flush=True)

asyncio.run(main())
