// The official openai client against an eoe gateway: completions, streamed and not, equal the
// texts the test computed in-process; errors arrive as the client's typed errors; a stream the
// client aborts leaves no session open (read from /metrics).
//   node completions.mjs http://127.0.0.1:PORT MODEL cases.json
// cases.json: [{"prompt", "max_tokens", "temperature", "seed", "text"}, ...]
import { readFileSync } from 'node:fs';
import OpenAI from 'openai';

const [base, model, casesFile] = process.argv.slice(2);
const cases = JSON.parse(readFileSync(casesFile, 'utf8'));
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
let failures = 0;
const fail = (what) => { console.log(`FAIL ${what}`); failures++; };

const models = await client.models.list();
if (models.data.length !== 1 || models.data[0].id !== model)
  fail(`models.list: ${JSON.stringify(models.data)}`);

for (const [i, c] of cases.entries()) {
  const ask = { model, prompt: c.prompt, max_tokens: c.max_tokens, temperature: c.temperature, seed: c.seed };
  const whole = await client.completions.create(ask);
  const choice = whole.choices[0];
  if (choice.text !== c.text) fail(`case ${i}: text ${JSON.stringify(choice.text)} != ${JSON.stringify(c.text)}`);
  if (choice.finish_reason !== 'length') fail(`case ${i}: finish_reason ${choice.finish_reason}`);
  if (whole.usage.completion_tokens !== c.max_tokens || whole.usage.prompt_tokens !== Buffer.byteLength(c.prompt))
    fail(`case ${i}: usage ${JSON.stringify(whole.usage)}`);
  const stream = await client.completions.create({ ...ask, stream: true });
  let text = '', chunks = 0, last = null;
  for await (const chunk of stream) {
    chunks++;
    text += chunk.choices[0]?.text ?? '';
    last = chunk.choices[0]?.finish_reason ?? last;
  }
  if (text !== c.text) fail(`case ${i} streamed: ${JSON.stringify(text)} != ${JSON.stringify(c.text)}`);
  if (last !== 'length') fail(`case ${i} streamed: finish_reason ${last}`);
  console.log(`case ${i}: ${c.max_tokens} bytes, equal streamed (${chunks} chunks) and not`);
}

try {
  await client.completions.create({ model: 'no-such-model', prompt: 'x' });
  fail('an unknown model was answered');
} catch (e) {
  if (!(e instanceof OpenAI.NotFoundError)) fail(`unknown model: ${e}`);
}
try {
  await client.completions.create({ model, prompt: 'x', max_tokens: 0 });
  fail('max_tokens 0 was answered');
} catch (e) {
  if (!(e instanceof OpenAI.BadRequestError) || e.param !== 'max_tokens') fail(`max_tokens 0: ${e} (param ${e.param})`);
}

// A stream aborted after its first chunks: its session closes.
const ac = new AbortController();
const long = await client.completions.create({ model, prompt: 'abort me', max_tokens: 4000, stream: true },
                                            { signal: ac.signal });
let seen = 0;
try {
  for await (const chunk of long) {
    if (++seen === 3) ac.abort();
  }
} catch (e) {
  if (!(e instanceof OpenAI.APIUserAbortError) && e.name !== 'AbortError') fail(`abort: ${e}`);
}
const openSessions = async () => {
  const text = await (await fetch(`${base}/metrics`)).text();
  const m = text.match(/^eoe_sessions_open (\d+)$/m);
  return m ? Number(m[1]) : -1;
};
let open = -1;
for (let i = 0; i < 200 && (open = await openSessions()) !== 0; i++)
  await new Promise((r) => setTimeout(r, 25));
if (open !== 0) fail(`after the abort, ${open} sessions open`);
console.log(`aborted stream after ${seen} chunks: ${open} sessions open`);

console.log(failures ? `${failures} failures` : 'openai client: every check passed');
process.exit(failures ? 1 : 0);
