// Drive chat2api with the official OpenAI JavaScript SDK (run by tests/sdk.rs).
// Usage: node sdk_test.mjs BASE_URL [MODEL ...]
// The MODELs (default: mock-echo) are streamed and must echo, as the mock does
// directly or behind another gateway.
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const baseURL = process.argv[2];
const echoModels = process.argv.length > 3 ? process.argv.slice(3) : ['mock-echo'];
const client = new OpenAI({ apiKey: 'sk-test', baseURL, maxRetries: 0 });

const r = await client.chat.completions.create({
  model: 'DeepSeek-V3.2',
  messages: [{ role: 'user', content: 'Hello!' }],
});
assert.equal(r.model, 'DeepSeek-V3.2');
assert.match(r.choices[0].message.content, /Hello!/);

for (const model of echoModels) {
  let text = '';
  let usage = null;
  const stream = await client.chat.completions.create({
    model,
    messages: [{ role: 'user', content: 'stream me' }],
    stream: true,
    stream_options: { include_usage: true },
  });
  for await (const chunk of stream) {
    assert.equal(chunk.model, model);
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) text += c.delta.content ?? '';
  }
  assert.ok(text.endsWith('You said: stream me'), `${model}: ${text}`);
  assert.ok(usage && usage.completion_tokens > 0, model);
}

// Embeddings: deterministic unit vectors, also through the other gateway.
for (const model of echoModels) {
  const e = await client.embeddings.create({ model, input: ['hello', 'hello', 'other'], dimensions: 16 });
  const v = e.data.map((d) => d.embedding);
  if (v.length !== 3 || v.some((x) => x.length !== 16)) throw new Error(`${model}: ${JSON.stringify(e)}`);
  if (JSON.stringify(v[0]) !== JSON.stringify(v[1]) || JSON.stringify(v[0]) === JSON.stringify(v[2])) {
    throw new Error(`${model}: embeddings are not deterministic`);
  }
}

// The Responses API, plain and streamed.
for (const model of echoModels) {
  const r = await client.responses.create({ model, input: 'Hello!' });
  assert.equal(r.model, model);
  assert.ok(r.output_text.endsWith('You said: Hello!'), `${model}: ${r.output_text}`);
  let deltas = '';
  const stream = await client.responses.create({ model, input: 'stream me', stream: true });
  for await (const event of stream) {
    if (event.type === 'response.output_text.delta') deltas += event.delta;
  }
  assert.ok(deltas.endsWith('You said: stream me'), `${model}: ${deltas}`);
}

const models = [];
for await (const m of client.models.list()) models.push(m.id);
assert.ok(models.includes('mock-echo'));

await assert.rejects(
  client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }),
  (e) => e instanceof OpenAI.NotFoundError && e.code === 'model_not_found',
);
const bad = new OpenAI({ apiKey: 'wrong', baseURL, maxRetries: 0 });
await assert.rejects(bad.models.list(), (e) => e instanceof OpenAI.AuthenticationError);

console.log('javascript sdk: ok');
