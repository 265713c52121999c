'use strict';
// The README's Node examples (tests/node/examples/), run as they are, 8
// copies of each at once against a provider of 2 requests/s (burst 3),
// the budget 2/s burst 1: every copy answers, zero 429s, and the ledger
// counts the 8 requests and the tokens they printed.  The control: the
// same copies with the budget on another port (the requests are not
// ratectl's and pass untouched) get 429s.
//
// require('ratectl') resolves as it would for a user who installed the
// package: NODE_PATH holds a temporary directory with the one symlink
// `ratectl -> lib/node` (helpers.nodePathDir); openai and @langchain/openai
// come from tests/node/node_modules, found from the examples' own folder.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const h = require('./helpers');

const EXAMPLES = path.join(__dirname, 'examples');
const COPIES = 8;
// How long a control copy may run before it is stopped: node starting
// with a sanitizer's runtime preloaded takes seconds to load LangChain.
const CONTROL_MS = process.env.RATECTL_SANITIZER ? 30000 : 4000;

function exampleEnv(tmp, fp, conf) {
  return h.env({
    OPENAI_API_KEY: 'sk-test-not-a-key', OPENAI_BASE_URL: fp.url + '/v1',
    RATECTL_CONFIG: conf, RATECTL_LEDGER: path.join(tmp, 'ledger'),
  }, tmp);
}

for (const name of ['openai_sdk.js', 'langchain.js']) {
  test(`${COPIES} copies of examples/${name} at once: all answer, zero 429s`, async (t) => {
    const tmp = h.tmpdir(t);
    const fp = await h.FakeProvider.start(tmp, ['--rps', 2, '--burst-requests', 3]);
    t.after(() => fp.stop());
    const conf = h.writeConfig(path.join(tmp, 'c.conf'), fp.port, 'openai', 'requests = 2/s burst 1');
    const env = exampleEnv(tmp, fp, conf);
    const t0 = Date.now();
    const runs = await Promise.all(Array.from({ length: COPIES },
      () => h.runNode(path.join(EXAMPLES, name), [], { env, timeout: 60000 })));
    t.diagnostic(`${COPIES} copies in ${Date.now() - t0} ms`);
    const tokens = runs.map((r) => {
      assert.equal(r.code, 0, r.stderr);
      const m = /^tokens: (\d+)$/m.exec(r.stdout);
      assert.ok(m && /fakeprov reply/.test(r.stdout), r.stdout);
      return Number(m[1]);
    });
    const st = await fp.stats();
    assert.equal(st.limited_429, 0, JSON.stringify(st));
    assert.equal(st.ok, COPIES);
    assert.equal(st.requests, COPIES);
    const b = h.show(path.join(tmp, 'ledger'), 'openai');
    assert.equal(b.counters.admitted, COPIES);
    assert.equal(b.counters.tokens_actual, tokens.reduce((a, n) => a + n, 0));
    assert.equal(b.counters.tokens_actual, st.tokens);
    assert.equal(b.inflight, 0);
  });

  test(`the control: examples/${name} with the budget on another port gets 429s`, async (t) => {
    const tmp = h.tmpdir(t);
    const fp = await h.FakeProvider.start(tmp, ['--rps', 2, '--burst-requests', 3]);
    t.after(() => fp.stop());
    const conf = h.writeConfig(path.join(tmp, 'c.conf'), fp.port < 65535 ? fp.port + 1 : 1,
      'openai', 'requests = 2/s burst 1');
    const env = exampleEnv(tmp, fp, conf);
    // The clients retry (ChatOpenAI for long): stop them once every copy
    // has been answered or refused once.
    let ended = 0;
    const runs = Array.from({ length: COPIES },
      () => h.runNode(path.join(EXAMPLES, name), [], { env, timeout: CONTROL_MS })
        .finally(() => ended++));
    await h.waitFor(async () => ended === COPIES || (await fp.stats()).requests >= COPIES,
      CONTROL_MS * 5, 50);
    const st = await fp.stats();
    const done = await Promise.all(runs);
    assert.ok(st.limited_429 > 0, `${JSON.stringify(st)}\n${done[0].stderr}`);
  });
}

// What the README shows is what runs here: each example file is one of
// the README's js code blocks, character for character.
test('the README shows the two examples as they are run', () => {
  const fs = require('node:fs');
  const readme = fs.readFileSync(path.join(__dirname, '..', '..', 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]);
  for (const name of ['openai_sdk.js', 'langchain.js']) {
    const text = fs.readFileSync(path.join(EXAMPLES, name), 'utf8');
    assert.ok(blocks.includes(text), `README.md has no js block equal to examples/${name}`);
  }
});
