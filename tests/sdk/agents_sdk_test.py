"""The OpenAI Agents SDK (openai-agents) through chat2api's Responses API
onto a chat-only provider: an agent with a function tool runs its loop
(tool call, tool result, answer), then a second turn continues the first by
`previous_response_id`, then the same loop streamed (run by
tests/endpoints.rs).

Usage: python agents_sdk_test.py BASE_URL MODEL
"""
import asyncio
import sys

from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

set_tracing_disabled(True)
client = AsyncOpenAI(api_key="sk-test", base_url=sys.argv[1], max_retries=0, timeout=20)
calls = []


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    calls.append(city)
    return f"rain in {city}"


agent = Agent(
    name="weather",
    instructions="Answer briefly.",
    tools=[get_weather],
    model=OpenAIResponsesModel(model=sys.argv[2], openai_client=client),
)


async def main():
    first = await Runner.run(agent, "What is the weather in Oslo?")
    assert first.final_output == "It rains in Oslo.", first.final_output
    assert calls == ["Oslo"], calls
    second = await Runner.run(agent, "And tomorrow?", previous_response_id=first.last_response_id)
    assert second.final_output == "It rains in Oslo.", second.final_output
    streamed = Runner.run_streamed(agent, "What is the weather in Oslo?")
    async for _ in streamed.stream_events():
        pass
    assert streamed.final_output == "It rains in Oslo.", streamed.final_output
    assert calls == ["Oslo", "Oslo"], calls


asyncio.run(main())
print("openai agents sdk: ok")
