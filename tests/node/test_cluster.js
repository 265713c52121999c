'use strict';
// A node:cluster of 8 workers (tests/node/fixtures/cluster.js), half with
// the openai SDK and half with LangChain.js's ChatOpenAI, each with two
// calls at a time, against a provider of 20 requests/s (burst 10) and
// 120000 tokens/min (burst 4000).  Through ratectl.fetch() (the budget
// 20/s burst 1, the same tokens): zero 429s and at least 90% of what the
// provider allows over the run (burst + 20/s x the time from its first
// answer to its last); the ledger, read by `ratectl show`, counts every
// request and the tokens the provider charged.  The same cluster without
// ratectl.fetch (the clients' retries off, so that every refusal is one
// 429 seen by the client) gets 429s: the first test can fail.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const h = require('./helpers');

const FIXTURE = path.join(__dirname, 'fixtures', 'cluster.js');
const RPS = 20;
const PROVIDER = ['--rps', RPS, '--burst-requests', 10, '--tpm', 120000, '--burst-tokens', 4000];

async function runCluster(t, { useRatectl, seconds, extra = {} }) {
  const tmp = h.tmpdir(t);
  const fp = await h.FakeProvider.start(tmp, PROVIDER, { maxSeconds: seconds + 120 });
  t.after(() => fp.stop());
  const conf = h.writeConfig(path.join(tmp, 'c.conf'), fp.port, 'fake',
    `requests = ${RPS}/s burst 1`, 'tokens = 120000/min burst 4000');
  const ledger = path.join(tmp, 'ledger');
  const r = await h.runNode(FIXTURE, [], {
    env: h.env({
      CLUSTER_URL: fp.url + '/v1', CLUSTER_WORKERS: 8, CLUSTER_CONCURRENCY: 2,
      CLUSTER_SECONDS: seconds, CLUSTER_RATECTL: useRatectl ? 1 : 0,
      RATECTL_CONFIG: conf, RATECTL_LEDGER: ledger, ...extra,
    }),
    timeout: (seconds + 100) * 1000,
  });
  assert.equal(r.code, 0, `cluster exited ${r.code ?? r.signal}: ${r.stderr.slice(-3000)}`);
  const out = JSON.parse(r.stdout.trim().split('\n').pop());
  const st = await fp.stats();
  t.diagnostic(`ready in ${out.readyMs} ms, ran ${out.runMs} ms; provider: ${JSON.stringify(st)}`);
  return { out, st, fp, ledger };
}

test('8 workers (openai SDK + ChatOpenAI) through ratectl.fetch: zero 429s, >= 90% of the limit', async (t) => {
  const { out, st, fp, ledger } = await runCluster(t, { useRatectl: true, seconds: 8 });
  const errors = out.workers.flatMap((w) => w.errors);
  assert.equal(out.other, 0, `client errors: ${errors.join('; ')}`);
  assert.equal(st.limited_429, 0, 'the provider refused some');
  assert.equal(out.refused429, 0);
  assert.equal(out.workers.length, 8);
  for (const w of out.workers) assert.ok(w.ok > 0, `${w.role} worker ${w.pid} got no answer`);
  assert.equal(st.ok, out.ok);
  assert.equal(st.requests, st.ok);

  const entries = fp.entries();
  const allowed = h.allowed(entries, RPS, 1000, 10);
  const rate = h.rate(entries);
  t.diagnostic(`answered ${st.ok} of ${allowed.toFixed(1)} allowed (${(100 * st.ok / allowed).toFixed(1)}%), ${rate.toFixed(2)}/s`);
  assert.ok(st.ok >= 0.9 * allowed, `${st.ok} answers, ${allowed} allowed`);
  assert.ok(rate <= RPS + 10 / 5, `rate ${rate}`);      // sanity: the provider's own limit held

  const b = h.show(ledger, 'fake');
  t.diagnostic(`ledger: ${JSON.stringify(b.counters)}`);
  assert.equal(b.inflight, 0);
  assert.equal(b.counters.admitted, st.requests);
  assert.equal(b.counters.tokens_actual, st.tokens);     // every answer's usage reconciled
  assert.equal(out.workers.reduce((a, w) => a + w.tokens, 0), st.tokens);
});

test('the same cluster without ratectl.fetch gets 429s', async (t) => {
  const { out, st } = await runCluster(t, { useRatectl: false, seconds: 3, extra: { CLUSTER_MAX_RETRIES: 0 } });
  assert.ok(st.limited_429 > 0, 'no 429 without ratectl: the test above proves nothing');
  assert.equal(out.refused429, st.limited_429);          // retries off: each one reached a client
  assert.equal(out.other, 0, out.workers.flatMap((w) => w.errors).join('; '));
});
