"""An agent loop over chat2api's Responses API onto a chat-only provider,
with the official OpenAI Python SDK: each turn continues the last one by
`previous_response_id`, and the stored responses are read back and deleted
(run by tests/endpoints.rs).

Usage: python responses_loop_test.py BASE_URL MODEL
"""
import sys

import openai
from openai import OpenAI

client = OpenAI(api_key="sk-test", base_url=sys.argv[1], max_retries=0, timeout=20)
model = sys.argv[2]
tools = [{"type": "function", "name": "get_weather", "description": "The weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]

first = client.responses.create(model=model, input="What is the weather in Oslo?", tools=tools)
call = next(i for i in first.output if i.type == "function_call")
assert call.name == "get_weather" and call.arguments == '{"city":"Oslo"}', call
second = client.responses.create(
    model=model, previous_response_id=first.id, tools=tools,
    input=[{"type": "function_call_output", "call_id": call.call_id, "output": "rain, 7 C"}])
assert second.output_text == "It rains in Oslo.", second
assert second.previous_response_id == first.id

# The same turn, streamed, continuing the first response.
with client.responses.stream(
        model=model, previous_response_id=first.id, tools=tools,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "rain"}]) as s:
    streamed = s.get_final_response()
assert streamed.output_text == "It rains in Oslo.", streamed

got = client.responses.retrieve(second.id)
assert got.id == second.id and got.output_text == "It rains in Oslo."
items = client.responses.input_items.list(second.id, order="asc")
kinds = [i.type for i in items.data]
assert kinds == ["message", "function_call", "function_call_output"], kinds
newest = client.responses.input_items.list(second.id, limit=1)
assert [i.type for i in newest.data] == ["function_call_output"] and newest.has_more, newest
client.responses.delete(second.id)
try:
    client.responses.retrieve(second.id)
    raise SystemExit("a deleted response was still there")
except openai.NotFoundError:
    pass
try:
    client.responses.create(model=model, previous_response_id="resp_unknown", input="Hi")
    raise SystemExit("an unknown previous response was accepted")
except openai.BadRequestError as e:
    assert "resp_unknown" in str(e), e
# store: false keeps nothing.
quiet = client.responses.create(model=model, input="Hi", store=False)
try:
    client.responses.retrieve(quiet.id)
    raise SystemExit("a store: false response was kept")
except openai.NotFoundError:
    pass
print("python responses loop: ok")
