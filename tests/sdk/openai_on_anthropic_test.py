"""The official OpenAI Python SDK through chat2api onto a native Anthropic
provider (run by tests/anthropic.rs, which starts a scripted Messages
upstream): chat completions with a tool round trip, plain and streamed,
with an image; the Responses API with a tool round trip, plain and
streamed. The upstream calls get_weather until its result comes back.

Usage: python openai_on_anthropic_test.py BASE_URL MODEL   (BASE_URL ends in /v1)
"""
import json
import sys

from openai import OpenAI

client = OpenAI(api_key="sk-test", base_url=sys.argv[1], max_retries=0, timeout=20)
MODEL = sys.argv[2]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
PIXEL = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8"
         "z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
ASK = [{"role": "system", "content": "Answer briefly."},
       {"role": "user", "content": [{"type": "text", "text": "What is the weather where this photo was taken? Oslo."},
                                    {"type": "image_url", "image_url": {"url": PIXEL}}]}]

# Chat, plain: the tool call, then the answer once its result is back.
r = client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS)
assert r.model == MODEL and r.choices[0].finish_reason == "tool_calls", r
call = r.choices[0].message.tool_calls[0]
assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Oslo"}, call
assert r.usage.prompt_tokens == 3 and r.usage.completion_tokens == 2, r.usage
turn = ASK + [r.choices[0].message, {"role": "tool", "tool_call_id": call.id, "content": "rain"}]
r = client.chat.completions.create(model=MODEL, messages=turn, tools=TOOLS)
assert r.choices[0].message.content == "It rains in Oslo." and r.choices[0].finish_reason == "stop", r

# Chat, streamed: the arguments arrive in pieces, the usage at the end.
chunks = list(client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, stream=True,
                                             stream_options={"include_usage": True}))
args = "".join(tc.function.arguments or "" for c in chunks if c.choices
               for tc in (c.choices[0].delta.tool_calls or []))
assert json.loads(args) == {"city": "Oslo"}, args
assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
assert chunks[-1].usage.prompt_tokens == 3 and chunks[-1].usage.completion_tokens == 2, chunks[-1]
text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
    model=MODEL, messages=turn, tools=TOOLS, stream=True) if c.choices)
assert text == "It rains in Oslo.", text

# Responses, plain and streamed, with a tool round trip.
RTOOLS = [{"type": "function", "name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
r = client.responses.create(model=MODEL, input="What is the weather in Oslo?", tools=RTOOLS)
call = next(i for i in r.output if i.type == "function_call")
assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Oslo"}, r.output
r = client.responses.create(model=MODEL, previous_response_id=r.id, tools=RTOOLS,
                            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "rain"}])
assert r.output_text == "It rains in Oslo.", r
with client.responses.stream(model=MODEL, input="What is the weather in Oslo?", tools=RTOOLS) as s:
    kinds = [e.type for e in s]
    final = s.get_final_response()
assert kinds[0] == "response.created" and kinds[-1] == "response.completed", kinds
call = next(i for i in final.output if i.type == "function_call")
assert json.loads(call.arguments) == {"city": "Oslo"}, final.output
assert final.usage.input_tokens == 3 and final.usage.output_tokens == 2, final.usage

print("openai sdk on an anthropic provider: ok")
