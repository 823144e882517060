"""The official OpenAI Python SDK against upstreams that misbehave (run by
tests/fidelity.rs, which starts the scripted upstream and the gateway).

Usage: python fidelity_test.py BASE_URL

Each model `client-<case>` is served by an upstream that misbehaves in that
way. The SDK must get a valid answer carrying the alias, or a clean
APIStatusError / APIError: never a JSONDecodeError, an empty "successful"
stream, or a hang.
"""
import sys

import openai
from openai import OpenAI

client = OpenAI(api_key="sk-test", base_url=sys.argv[1], max_retries=0, timeout=10)
MESSAGES = [{"role": "user", "content": "Hi"}]


def plain(case):
    r = client.chat.completions.create(model=f"client-{case}", messages=MESSAGES)
    assert r.model == f"client-{case}", (case, r.model)
    return r.choices[0].message.content


def streamed(case):
    text = ""
    with client.chat.completions.create(model=f"client-{case}", messages=MESSAGES, stream=True) as s:
        for chunk in s:
            assert chunk.model == f"client-{case}", (case, chunk.model)
            for c in chunk.choices:
                text += c.delta.content or ""
    return text


for case in ["multiline", "gzip", "deflate", "brotli", "sse-as-json", "json-for-stream", "named-events"]:
    assert plain(case) == "Hello there", case
    assert streamed(case) == "Hello there", case
assert streamed("pings") == "Hello there"
# Events with ids, then silences filled with keep-alives: the decoder keeps
# the last id, so a keep-alive followed by a blank line would be an event.
assert streamed("ids-paused") == "Hello there"

for case in ["zstd", "empty", "html", "text"]:
    for call in (plain, streamed):
        try:
            call(case)
            raise SystemExit(f"{case}: expected an APIStatusError from {call.__name__}")
        except openai.APIStatusError as e:
            assert e.status_code == 502, (case, e.status_code)

for case in ["error-mid-stream", "done-only"]:
    try:
        streamed(case)
        raise SystemExit(f"{case}: expected an APIError while streaming")
    except openai.APIStatusError as e:
        raise SystemExit(f"{case}: the stream should have begun, got {e.status_code}")
    except openai.APIError:
        pass

print("python sdk, misbehaving upstreams: ok")
