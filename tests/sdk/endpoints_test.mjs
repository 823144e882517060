// The official OpenAI JavaScript SDK on embeddings and the Responses API
// (run by tests/endpoints.rs against a scripted upstream): natively, and
// over a chat-only provider through `responses: "chat"`.
// Usage: node endpoints_test.mjs BASE_URL
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const client = new OpenAI({ apiKey: 'sk-test', baseURL: process.argv[2], maxRetries: 0, timeout: 15000 });

const e = await client.embeddings.create({ model: 'embed-only', input: 'hello' });
assert.equal(e.model, 'embed-only');
assert.deepEqual(e.data[0].embedding, [0.5, -0.25]);

for (const model of ['up-model', 'chat-only']) {
  const r = await client.responses.create({ model, input: 'Hi' });
  assert.equal(r.model, model);
  assert.equal(r.output_text, 'Hello there');
  let text = '';
  const stream = client.responses.stream({ model, input: 'Hi' });
  for await (const event of stream) {
    if (event.type === 'response.output_text.delta') text += event.delta;
  }
  const final = await stream.finalResponse();
  assert.equal(text, 'Hello there', model);
  assert.equal(final.model, model);
  assert.equal(final.output_text, 'Hello there', model);
}

const tools = [{
  type: 'function', name: 'get_weather', description: 'The weather in a city.', strict: false,
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
}];
const stream = client.responses.stream({ model: 'chat-only', input: 'Weather in Oslo?', tools });
for await (const _ of stream);
const final = await stream.finalResponse();
const call = final.output.find((o) => o.type === 'function_call');
assert.equal(call.name, 'get_weather');
assert.deepEqual(JSON.parse(call.arguments), { city: 'Oslo' });

await assert.rejects(
  client.responses.create({ model: 'chat-only', input: 'x', previous_response_id: 'resp_1' }),
  (err) => err instanceof OpenAI.BadRequestError && err.param === 'previous_response_id',
);

console.log('javascript sdk, embeddings and responses: ok');
