"""langchain-openai's ChatOpenAI on the Responses API (use_responses_api)
through chat2api onto a chat-only provider (run by tests/endpoints.rs): a
tool loop (the model calls get_weather, the tool's result goes back, the
answer comes), plain and streamed, each turn replaying the items chat2api
gave; then a turn continued by `previous_response_id`
(use_previous_response_id), which sends only the new message.

Usage: python langchain_test.py BASE_URL MODEL
"""
import sys

from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

base, model = sys.argv[1], sys.argv[2]


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"rain in {city}"


def text(message):
    t = message.text
    return t() if callable(t) else t


def turn(llm, messages, stream):
    if not stream:
        return llm.invoke(messages)
    whole = None
    for chunk in llm.stream(messages):
        whole = chunk if whole is None else whole + chunk
    return whole


def tool_loop(stream):
    llm = ChatOpenAI(model=model, base_url=base, api_key="sk-test", use_responses_api=True,
                     max_retries=0, timeout=20).bind_tools([get_weather])
    messages = [HumanMessage("What is the weather in Oslo?")]
    asked = turn(llm, messages, stream)
    assert len(asked.tool_calls) == 1, asked
    call = asked.tool_calls[0]
    assert call["name"] == "get_weather" and call["args"] == {"city": "Oslo"}, call
    messages += [asked, ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])]
    answer = turn(llm, messages, stream)
    assert text(answer) == "It rains in Oslo.", answer
    return messages + [answer]


tool_loop(stream=False)
history = tool_loop(stream=True)

# The next turn by previous_response_id: only the new message is sent, and
# the upstream still sees the whole conversation (its tool turn included),
# read from chat2api's response store.
llm = ChatOpenAI(model=model, base_url=base, api_key="sk-test", use_responses_api=True,
                 use_previous_response_id=True, max_retries=0, timeout=20).bind_tools([get_weather])
later = llm.invoke(history + [HumanMessage("And tomorrow?")])
assert text(later) == "It rains in Oslo.", later
print("langchain-openai: ok")
