"""Drive chat2api with the official OpenAI Python SDK (run by tests/sdk.rs).

Usage: python sdk_test.py BASE_URL [MODEL ...]   (e.g. http://127.0.0.1:PORT/v1)
The MODELs (default: mock-echo) are streamed and asked plainly; each must
answer by echoing, as the mock does directly or behind another gateway.
Exits non-zero with a message on the first mismatch.
"""
import sys

import openai
from openai import OpenAI

base_url = sys.argv[1]
echo_models = sys.argv[2:] or ["mock-echo"]
client = OpenAI(api_key="sk-test", base_url=base_url, max_retries=0)

# Plain chat.
r = client.chat.completions.create(
    model="DeepSeek-V3.2", messages=[{"role": "user", "content": "Hello!"}]
)
assert r.model == "DeepSeek-V3.2", r.model
assert "Hello!" in r.choices[0].message.content, r.choices[0].message.content
assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens

# Streamed chat with usage, for every echoing model.
for model in echo_models:
    text = ""
    usage = None
    chunks = 0
    with client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "stream me"}],
        stream=True,
        stream_options={"include_usage": True},
    ) as stream:
        for chunk in stream:
            chunks += 1
            assert chunk.model == model, (chunk.model, model)
            if chunk.usage:
                usage = chunk.usage
            for c in chunk.choices:
                text += c.delta.content or ""
    assert text.endswith("You said: stream me"), (model, text)
    assert usage is not None and usage.completion_tokens > 0, model
    assert chunks > 3, model
    r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "plain"}])
    assert r.model == model and r.choices[0].message.content.endswith("You said: plain"), r

# Legacy completions, plain and streamed.
r = client.completions.create(model="mock-echo", prompt="Say this")
assert "Say this" in r.choices[0].text
pieces = [c.choices[0].text for c in client.completions.create(model="mock-echo", prompt="p", stream=True) if c.choices]
assert "".join(pieces).endswith("You said: p"), pieces

# Embeddings: deterministic unit vectors, also through the other gateway.
for model in echo_models:
    e = client.embeddings.create(model=model, input=["hello", "hello", "other"], dimensions=16)
    vectors = [d.embedding for d in e.data]
    assert len(vectors) == 3 and all(len(v) == 16 for v in vectors), (model, e)
    assert vectors[0] == vectors[1] != vectors[2], model
    assert abs(sum(x * x for x in vectors[0]) - 1.0) < 1e-3, model
    assert e.model == model, (model, e.model)

# Moderations and images, through the other gateway too.
for model in echo_models:
    m = client.moderations.create(model=model, input="hello")
    assert m.results[0].flagged is False, (model, m)
    img = client.images.generate(model=model, prompt="a lighthouse")
    assert img.data[0].b64_json.startswith("iVBOR"), (model, img)

# The Responses API, plain and streamed, through the other gateway too.
for model in echo_models:
    r = client.responses.create(model=model, input="Hello!")
    assert r.model == model and r.output_text.endswith("You said: Hello!"), (model, r)
    deltas = ""
    with client.responses.create(model=model, input="stream me", stream=True) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas += event.delta
            if event.type == "response.completed":
                assert event.response.model == model, (model, event.response.model)
    assert deltas.endswith("You said: stream me"), (model, deltas)

# Audio: speech, and the whole file heard back, also through the other gateway.
for model in echo_models:
    wav = client.audio.speech.create(model=model, voice="alloy", input="hello there").read()
    assert wav[:4] == b"RIFF", (model, wav[:16])
    t = client.audio.transcriptions.create(model=model, file=("hello.wav", wav))
    assert t.text.endswith(f"of hello.wav ({len(wav)} bytes)."), (model, t.text)
    t = client.audio.translations.create(model=model, file=("hello.wav", wav), response_format="text")
    assert "mock translation of hello.wav" in t, (model, t)

# Models.
ids = [m.id for m in client.models.list()]
assert "mock-echo" in ids and "DeepSeek-V3.2" in ids, ids
assert client.models.retrieve("mock-echo").id == "mock-echo"

# Errors arrive as the SDK's typed exceptions.
try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    raise SystemExit("expected NotFoundError")
except openai.NotFoundError as e:
    assert e.status_code == 404 and e.code == "model_not_found", (e.status_code, e.code)

bad = OpenAI(api_key="wrong-key", base_url=base_url, max_retries=0)
try:
    bad.models.list()
    raise SystemExit("expected AuthenticationError")
except openai.AuthenticationError as e:
    assert e.status_code == 401

print("python sdk: ok")
