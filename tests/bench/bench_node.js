'use strict';
// make bench, section 9: the Node package's admission cost, and what
// ratectl.fetch() adds to a request.
//
// A pair is `(await ledger.acquire('huge', { tokens: 100 })).release()`
// (the promise of an admission that needs no wait), and, beside it,
// tryAcquire + release, the same two native calls made on the addon
// directly (the floor of calling C from JavaScript), and the C library's
// own ratectl_try + ratectl_release (bench_http's "bare" row of this run).
// On an uncapped budget (1e9 requests and tokens a second) in a tmpfs
// ledger; timed in batches of 1000 pairs, the variants taking turns over
// 10 rounds.  Target: acquire + release at most 5 us.
// ratectl.fetch: a fetch returning an OpenAI-style JSON answer made in
// memory (usage and x-ratelimit-* headers; no network), called plainly
// and through ratectl.fetch({ fetch }), taking turns; the difference is
// what the policy adds per request.  Appends JSON rows to
// $RATECTL_BENCH_JSONL like the other benchmarks.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const TOP = path.resolve(__dirname, '..', '..');
const ratectl = require(path.join(TOP, 'lib', 'node'));
const { binding } = require(path.join(TOP, 'lib', 'node', 'lib', 'binding'));

const TARGET_NS = 5000;
const BATCH = 1000;
const ROUNDS = 10;

function fmt(ns) {
  return ns >= 1000 ? `${(ns / 1000).toFixed(2)} us` : `${ns.toFixed(0)} ns`;
}

function pct(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
}

function cBareNs(jsonl) {
  if (!jsonl || !fs.existsSync(jsonl)) return null;
  for (const line of fs.readFileSync(jsonl, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const r = JSON.parse(line);
    if (r.section === 'http' && r.row === 'bare') return r.median_ns;
  }
  return null;
}

function append(jsonl, row) {
  if (jsonl) fs.appendFileSync(jsonl, JSON.stringify(row) + '\n');
}

const now = () => Number(process.hrtime.bigint());

async function main() {
  const ops = Number(process.env.RATECTL_BENCH_OPS || 200000);
  const base = process.env.RATECTL_BENCH_TMPFS ||
    (fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir());
  const jsonl = process.env.RATECTL_BENCH_JSONL;
  const d = fs.mkdtempSync(path.join(base, 'ratectl-bench-node-'));
  const variants = [];
  try {
    const L = new ratectl.Ledger(path.join(d, 'ledger'));
    L.set('huge', { requests: [[1e9, 1000]], tokens: [[1e9, 1000]] });
    const h = L._h;
    const opts = { tokens: 100 };
    const acquire = async (n) => {
      for (let i = 0; i < n; i++) (await L.acquire('huge', opts)).release();
    };
    const tryAcq = async (n) => {
      for (let i = 0; i < n; i++) L.tryAcquire('huge', opts).release();
    };
    const raw = async (n) => {
      for (let i = 0; i < n; i++) {
        const l = binding.tryAcquire(h, 'huge', 1, 100, 0);
        if (typeof l === 'number') throw new Error(`tryAcquire: ${l}`);
        binding.release(l, -1);
      }
    };
    variants.push(
      { key: 'acquire', label: 'await acquire() + release()', fn: acquire, s: [] },
      { key: 'try', label: 'tryAcquire() + release()', fn: tryAcq, s: [] },
      { key: 'native', label: 'the two native calls, bare', fn: raw, s: [] });
    for (const v of variants) await v.fn(BATCH);
    const perRound = Math.max(1, Math.floor(ops / ROUNDS / BATCH));
    for (let r = 0; r < ROUNDS; r++) {
      for (const v of variants) {
        for (let k = 0; k < perRound; k++) {
          const t = now();
          await v.fn(BATCH);
          v.s.push((now() - t) / BATCH);
        }
      }
    }
    L.close();
  } finally {
    fs.rmSync(d, { recursive: true, force: true });
  }
  const cNs = cBareNs(jsonl);
  console.log(`\n9. The Node package per admission (Node-API addon, Node ${process.versions.node}): ` +
    `${variants[0].s.length * BATCH} pairs\n   a row, in batches of ${BATCH}, rows interleaved ` +
    `in ${ROUNDS} rounds, tmpfs (${base});\n   a pair on an uncapped budget, tokens 100`);
  console.log(`     ${''.padEnd(42)} ${'median'.padStart(10)} ${'p99'.padStart(10)} ${'vs C'.padStart(10)}`);
  for (const v of variants) {
    const m = pct(v.s, 0.5);
    const p99 = pct(v.s, 0.99);
    let line = `     ${v.label.padEnd(42)} ${fmt(m).padStart(10)} ${fmt(p99).padStart(10)}`;
    const row = { section: 'node', row: v.key, fs: 'tmpfs', dir: base, median_ns: Math.round(m),
      p99_ns: Math.round(p99), ops: v.s.length * BATCH };
    if (cNs) {
      line += `${(m / cNs).toFixed(1).padStart(9)}x`;
      row.c_median_ns = cNs;
    }
    if (v.key === 'acquire') {
      const ok = m <= TARGET_NS;
      line += `   <= 5 us ${ok ? 'ok' : 'MISSED'}`;
      Object.assign(row, { target_below_ns: TARGET_NS, verdict: ok ? 'ok' : 'MISSED' });
    }
    console.log(line);
    append(jsonl, row);
  }
  console.log(`     ${'C: ratectl_try + ratectl_release (7., bare)'.padEnd(42)} ` +
    `${(cNs ? fmt(cNs) : 'n/a').padStart(10)}`);
  await fetchRow(base, jsonl);
}

async function fetchRow(base, jsonl) {
  const body = JSON.stringify({ id: 'x', object: 'chat.completion', choices: [{ index: 0,
    message: { role: 'assistant', content: 'hello' } }],
  usage: { prompt_tokens: 12, completion_tokens: 20, total_tokens: 32 } });
  const headers = {
    'content-type': 'application/json',
    'x-ratelimit-limit-requests': '1000000000',
    'x-ratelimit-remaining-requests': '999999999',
    'x-ratelimit-reset-requests': '1ms',
    'x-ratelimit-limit-tokens': '1000000000',
    'x-ratelimit-remaining-tokens': '999999000',
    'x-ratelimit-reset-tokens': '1ms',
  };
  const answer = async () => new Response(body, { status: 200, headers });
  const d = fs.mkdtempSync(path.join(base, 'ratectl-bench-fetch-'));
  const samples = { plain: [], metered: [] };
  try {
    const conf = '[mock]\nmatch = api.example.test\nrequests = 1000000000/s\n' +
      'tokens = 1000000000/s\n';
    const metered = ratectl.fetch({ fetch: answer, configText: conf, ledger: path.join(d, 'ledger') });
    const url = 'https://api.example.test/v1/chat/completions';
    const init = { method: 'POST', headers: { 'content-type': 'application/json',
      authorization: 'Bearer sk-bench' },
    body: '{"model":"gpt-4o-mini","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}' };
    const run = async (f, n) => {
      for (let i = 0; i < n; i++) await (await f(url, init)).json();
    };
    await run(answer, 200);
    await run(metered, 200);
    for (let r = 0; r < 10; r++) {
      for (const [key, f] of [['plain', answer], ['metered', metered]]) {
        const t = now();
        await run(f, 200);
        samples[key].push((now() - t) / 200);
      }
    }
  } finally {
    fs.rmSync(d, { recursive: true, force: true });
  }
  const mp = pct(samples.plain, 0.5);
  const mm = pct(samples.metered, 0.5);
  console.log(`     ${'a fetch answering in memory, a request'.padEnd(42)} ${fmt(mp).padStart(10)}`);
  console.log(`     ${'... through ratectl.fetch()'.padEnd(42)} ${fmt(mm).padStart(10)} ` +
    `${''.padStart(10)} ${('+' + fmt(mm - mp)).padStart(10)}`);
  append(jsonl, { section: 'node', row: 'fetch', median_ns: Math.round(mm),
    plain_median_ns: Math.round(mp), added_ns: Math.round(mm - mp), ops: 4000 });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
