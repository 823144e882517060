"""The official Anthropic Python SDK through chat2api's /v1/messages (run by
tests/anthropic.rs, which starts the scripted chat upstream and the gateway).

Usage: python anthropic_test.py BASE_URL [MODEL]   (the gateway's root, no /v1)

MODEL (default `claude-alias`) goes to a scripted upstream that calls the
offered tool, then answers once the tool's result comes back: an OpenAI-chat
one (`claude-alias`) or a native Anthropic one; `mock-echo` is the built-in
mock. Exits non-zero with a message on the first mismatch.
"""
import sys

import anthropic

base = sys.argv[1]
MODEL = sys.argv[2] if len(sys.argv) > 2 else "claude-alias"
client = anthropic.Anthropic(api_key="sk-test", base_url=base, max_retries=0, timeout=20)
TOOLS = [{"name": "get_weather", "description": "The weather in a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
ASK = [{"role": "user", "content": "What is the weather in Oslo?"}]

# The mock, plain and streamed.
m = client.messages.create(model="mock-echo", max_tokens=64, messages=[{"role": "user", "content": "Hi"}])
assert m.model == "mock-echo" and m.stop_reason == "end_turn", m
assert m.content[0].text.endswith("You said: Hi"), m.content
with client.messages.stream(model="mock-echo", max_tokens=64, messages=[{"role": "user", "content": "Hi"}]) as s:
    pieces = list(s.text_stream)
    final = s.get_final_message()
assert len(pieces) > 3 and "".join(pieces) == final.content[0].text, pieces
assert final.usage.output_tokens > 0, final.usage

# A tool round trip onto a chat provider, plain.
m = client.messages.create(model=MODEL, max_tokens=256, tools=TOOLS, messages=ASK)
assert m.model == MODEL and m.stop_reason == "tool_use", m
call = next(b for b in m.content if b.type == "tool_use")
assert call.name == "get_weather" and call.input == {"city": "Oslo"}, call
assert m.usage.input_tokens == 3 and m.usage.output_tokens == 2, m.usage
turn = ASK + [{"role": "assistant", "content": m.content},
              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "rain, 7 °C"}]}]
m = client.messages.create(model=MODEL, max_tokens=256, tools=TOOLS, messages=turn)
assert m.stop_reason == "end_turn" and m.content[0].text == "It rains in Oslo.", m

# The same, streamed: the arguments arrive in pieces and come out whole.
with client.messages.stream(model=MODEL, max_tokens=256, tools=TOOLS, messages=ASK) as s:
    events = [e.type for e in s]
    final = s.get_final_message()
assert events[0] == "message_start" and events[-1] == "message_stop", events
assert final.stop_reason == "tool_use", final
call = next(b for b in final.content if b.type == "tool_use")
assert call.input == {"city": "Oslo"}, call
turn = ASK + [{"role": "assistant", "content": final.content},
              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "rain"}]}]
with client.messages.stream(model=MODEL, max_tokens=256, tools=TOOLS, messages=turn) as s:
    text = "".join(s.text_stream)
assert text == "It rains in Oslo.", text

# count_tokens, and errors in Anthropic's shape.
n = client.messages.count_tokens(model=MODEL, messages=ASK, tools=TOOLS)
assert n.input_tokens > 10, n
for call_, error in [
    (lambda: client.messages.create(model="no-such-model", max_tokens=8, messages=ASK), anthropic.NotFoundError),
    (lambda: anthropic.Anthropic(api_key="sk-wrong", base_url=base, max_retries=0).messages.create(
        model="mock-echo", max_tokens=8, messages=ASK), anthropic.AuthenticationError),
    (lambda: client.messages.create(model="mock-echo", max_tokens=0, messages=ASK), anthropic.BadRequestError),
]:
    try:
        call_()
        raise SystemExit(f"expected {error.__name__}")
    except error as e:
        assert e.body["type"] == "error" and e.body["error"]["message"], e.body

print("anthropic python sdk: ok")
