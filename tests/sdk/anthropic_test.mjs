// The official Anthropic JavaScript SDK through chat2api's /v1/messages (run
// by tests/anthropic.rs; the same cases as anthropic_test.py).
//
// Usage: node anthropic_test.mjs BASE_URL [MODEL]   (the gateway's root, no /v1;
// MODEL, default claude-alias, is served by a scripted chat or native
// Anthropic upstream)
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';

const baseURL = process.argv[2];
const model = process.argv[3] ?? 'claude-alias';
const client = new Anthropic({ apiKey: 'sk-test', baseURL, maxRetries: 0, timeout: 20000 });
const tools = [{ name: 'get_weather', description: 'The weather in a city',
  input_schema: { type: 'object', properties: { city: { type: 'string' } } } }];
const ask = [{ role: 'user', content: 'What is the weather in Oslo?' }];

let m = await client.messages.create({ model: 'mock-echo', max_tokens: 64, messages: [{ role: 'user', content: 'Hi' }] });
assert.equal(m.model, 'mock-echo');
assert.ok(m.content[0].text.endsWith('You said: Hi'));

m = await client.messages.create({ model, max_tokens: 256, tools, messages: ask });
assert.equal(m.stop_reason, 'tool_use');
let call = m.content.find((b) => b.type === 'tool_use');
assert.deepEqual(call.input, { city: 'Oslo' });

const stream = client.messages.stream({ model, max_tokens: 256, tools, messages: ask });
const names = [];
for await (const event of stream) names.push(event.type);
const final = await stream.finalMessage();
assert.equal(names[0], 'message_start');
assert.equal(names.at(-1), 'message_stop');
call = final.content.find((b) => b.type === 'tool_use');
assert.deepEqual(call.input, { city: 'Oslo' });
const turn = [...ask, { role: 'assistant', content: final.content },
  { role: 'user', content: [{ type: 'tool_result', tool_use_id: call.id, content: 'rain' }] }];
const again = client.messages.stream({ model, max_tokens: 256, tools, messages: turn });
let text = '';
again.on('text', (t) => { text += t; });
await again.finalMessage();
assert.equal(text, 'It rains in Oslo.');

const n = await client.messages.countTokens({ model, messages: ask, tools });
assert.ok(n.input_tokens > 10);
await assert.rejects(client.messages.create({ model: 'no-such-model', max_tokens: 8, messages: ask }),
  (e) => e instanceof Anthropic.NotFoundError && e.error.type === 'error');
console.log('anthropic javascript sdk: ok');
