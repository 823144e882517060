// Keep-alives after events with `id:` fields, read by the official OpenAI
// JavaScript SDK and by a WHATWG reference parser (eventsource-parser), from
// chat2api directly and from curl's copy of the same stream (run by
// tests/fidelity.rs, which starts the scripted upstream and the gateway).
//
// Usage: node keepalive_test.mjs BASE_URL CURL_OUTPUT_FILE
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import OpenAI from 'openai';
import { createParser } from 'eventsource-parser';

const [base, curled] = process.argv.slice(2);
const model = 'client-ids-paused';
const body = { model, stream: true, messages: [{ role: 'user', content: 'Hi' }] };

// Every event a WHATWG parser dispatches: JSON chunks naming the alias, then [DONE].
function checkEvents(text, from) {
  const events = [];
  const parser = createParser({ onEvent: (e) => events.push(e) });
  parser.feed(text);
  assert.equal(events.at(-1)?.data, '[DONE]', `${from}: ${JSON.stringify(events)}`);
  let said = '';
  for (const e of events.slice(0, -1)) {
    const chunk = JSON.parse(e.data);
    assert.equal(chunk.model, model, from);
    said += chunk.choices[0]?.delta?.content ?? '';
  }
  assert.equal(said, 'Hello there', from);
}

const client = new OpenAI({ apiKey: 'sk-test', baseURL: base, maxRetries: 0, timeout: 10000 });
let said = '';
for await (const chunk of await client.chat.completions.create(body)) {
  assert.equal(chunk.model, model);
  said += chunk.choices[0]?.delta?.content ?? '';
}
assert.equal(said, 'Hello there');

const res = await fetch(`${base}/chat/completions`, {
  method: 'POST',
  headers: { 'Content-Type': 'application/json' },
  body: JSON.stringify(body),
});
checkEvents(await res.text(), 'fetch');
checkEvents(readFileSync(curled, 'utf8'), 'curl');
console.log('keep-alives after event ids: ok (openai SDK, eventsource-parser, curl)');
