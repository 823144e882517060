"""The official OpenAI Python SDK on every endpoint (run by tests/endpoints.rs,
which starts a scripted OpenAI-shaped upstream and the gateway in front).

Usage: python endpoints_test.py BASE_URL

Models: `up-model`, `tts-alias`, `whisper-alias` (the scripted upstream,
native), `embed-only` (embeddings only), `chat-only` (a chat-only provider
behind `responses: "chat"`), `mock-echo` (the built-in mock).
Exits non-zero with a message on the first mismatch.
"""
import json
import sys

import openai
from openai import OpenAI

client = OpenAI(api_key="sk-test", base_url=sys.argv[1], max_retries=0, timeout=15)

# Embeddings, moderations, images, responses: scripted upstream, aliases kept.
e = client.embeddings.create(model="embed-only", input="hello")
assert e.model == "embed-only" and e.data[0].embedding == [0.5, -0.25], e
m = client.moderations.create(model="up-model", input="x")
assert m.results[0].flagged is True, m
img = client.images.generate(model="up-model", prompt="a lighthouse")
assert img.data[0].b64_json.startswith("iVBOR"), img
r = client.responses.create(model="up-model", input="Hi")
assert r.model == "up-model" and r.output_text == "Hello there", r
text = ""
with client.responses.create(model="up-model", input="Hi", stream=True) as stream:
    for event in stream:
        if event.type == "response.output_text.delta":
            text += event.delta
        if event.type == "response.completed":
            assert event.response.model == "up-model", event
assert text == "Hello there", text

# Audio: speech bytes unchanged; forms with a file.
audio = bytes((i * 7) % 256 for i in range(3000))
speech = client.audio.speech.create(model="tts-alias", voice="alloy", input="Hi")
assert speech.read() == audio
upload = ("speech.mp3", audio, "audio/mpeg")
t = client.audio.transcriptions.create(model="whisper-alias", file=upload)
assert t.text.startswith("heard "), t
t = client.audio.translations.create(model="whisper-alias", file=upload, response_format="text")
assert isinstance(t, str) and t.startswith("heard "), t
events = list(client.audio.transcriptions.create(model="whisper-alias", file=upload, stream=True))
assert [ev.type for ev in events] == ["transcript.text.delta", "transcript.text.done"], events

# The Responses API over a chat-only provider.
r = client.responses.create(model="chat-only", input="Hi", instructions="Be brief.")
assert r.model == "chat-only" and r.output_text == "Hello there", r
assert r.usage.input_tokens == 3 and r.usage.output_tokens == 2, r.usage
with client.responses.stream(model="chat-only", input="Hi") as stream:
    text = ""
    for event in stream:
        if event.type == "response.output_text.delta":
            text += event.delta
    final = stream.get_final_response()
assert text == "Hello there" and final.output_text == "Hello there", (text, final)
assert final.model == "chat-only" and final.usage.total_tokens == 5, final

tools = [{
    "type": "function", "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}]
r = client.responses.create(model="chat-only", input="Weather in Oslo?", tools=tools)
call = next(o for o in r.output if o.type == "function_call")
assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Oslo"}, call
with client.responses.stream(model="chat-only", input="Weather in Oslo?", tools=tools) as stream:
    for event in stream:
        pass
    final = stream.get_final_response()
streamed_call = next(o for o in final.output if o.type == "function_call")
assert streamed_call.arguments == '{"city":"Oslo"}' and streamed_call.call_id == "call_1", streamed_call
r = client.responses.create(
    model="chat-only",
    tools=tools,
    input=[
        {"role": "user", "content": "Weather in Oslo?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "rain"},
    ],
)
assert r.output_text == "It rains in Oslo.", r

try:
    client.responses.create(model="chat-only", input="x", previous_response_id="resp_1")
    raise SystemExit("expected BadRequestError")
except openai.BadRequestError as e:
    assert e.param == "previous_response_id", e

try:
    client.responses.retrieve("resp_1")
    raise SystemExit("expected NotFoundError")
except openai.NotFoundError as e:
    assert "is not stored here" in e.message, e

try:
    client.chat.completions.create(model="embed-only", messages=[{"role": "user", "content": "x"}])
    raise SystemExit("expected NotFoundError")
except openai.NotFoundError as e:
    assert e.code == "model_not_found", e

# The built-in mock: speech as WAV, and it hears the whole file.
wav = client.audio.speech.create(model="mock-echo", voice="alloy", input="hello there").read()
assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE", wav[:16]
t = client.audio.transcriptions.create(model="mock-echo", file=("hello.wav", wav))
assert t.text.endswith(f"of hello.wav ({len(wav)} bytes)."), t.text
t = client.audio.translations.create(model="mock-echo", file=("hello.wav", wav), response_format="srt")
assert t.startswith("1\n00:00:00,000 --> "), t

print("python sdk, every endpoint: ok")
