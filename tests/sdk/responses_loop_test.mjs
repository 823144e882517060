// The Vercel AI SDK's default OpenAI provider (the Responses API) through
// chat2api onto a chat-only provider, over three turns with a tool call: from
// the second turn on the SDK refers to earlier assistant items by
// `item_reference`, which chat2api's response store resolves (run by
// tests/endpoints.rs).
//
// Usage: node responses_loop_test.mjs BASE_URL MODEL
import assert from 'node:assert/strict';
import { generateText, jsonSchema, stepCountIs, tool } from 'ai';
import { createOpenAI } from '@ai-sdk/openai';

const [baseURL, model] = process.argv.slice(2);
const openai = createOpenAI({ apiKey: 'sk-test', baseURL });
const getWeather = tool({
  description: 'The weather in a city',
  inputSchema: jsonSchema({ type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }),
  execute: async ({ city }) => `rain in ${city}`,
});
let messages = [{ role: 'user', content: 'What is the weather in Oslo?' }];
for (let turn = 1; turn <= 3; turn++) {
  const r = await generateText({
    model: openai(model), tools: { get_weather: getWeather }, stopWhen: stepCountIs(4), messages,
  });
  assert.equal(r.text, 'It rains in Oslo.', `turn ${turn}`);
  if (turn === 1) {
    assert.ok(r.steps.some((s) => s.toolCalls.some((c) => c.toolName === 'get_weather')), 'a tool call');
  }
  messages = [...messages, ...r.response.messages, { role: 'user', content: 'And tomorrow?' }];
}
console.log('vercel ai sdk, three turns: ok');
