'use strict';
// Helpers for the Node tests (node:test).
//
// The fake provider ($B/ratectl-fakeprov) is the referee: it is started on
// a free loopback port (--port 0 --port-file), bounded by --max-seconds,
// and its GET /stats says how many requests it answered and how many it
// refused with 429.  The ledger is read back with `$B/ratectl show NAME
// --json`, a separate program, so the tests do not judge the package with
// the package.  Every wait here is bounded; nothing leaves the loopback.

const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');

const TOP = path.resolve(__dirname, '..', '..');
const BUILD = path.resolve(TOP, process.env.B || 'build');
const FAKEPROV = path.join(BUILD, 'ratectl-fakeprov');
const RATECTL = path.join(BUILD, 'ratectl');
const LIBNODE = path.join(TOP, 'lib', 'node');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls pred (sync or async) every step ms until it returns something
 *  truthy or timeout ms have passed; returns its last value. */
async function waitFor(pred, timeout = 10000, step = 20) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await pred();
    if (v || Date.now() >= deadline) return v;
    await sleep(step);
  }
}

/** The package (lib/node); throws with the reason when it is not built. */
function ratectl() {
  return require(LIBNODE);
}

/** A fresh temporary directory, removed after the test t (when given). */
function tmpdir(t) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ratectl-node-'));
  if (t) t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

let nfake = 0;

/** A running ratectl-fakeprov; `url` is http://127.0.0.1:PORT. */
class FakeProvider {
  static async start(tmp, args = [], { maxSeconds = 90 } = {}) {
    const fp = new FakeProvider();
    const n = ++nfake;
    const portFile = path.join(tmp, `fakeprov-${n}.port`);
    fp.log = path.join(tmp, `fakeprov-${n}.log`);
    fp.stderr = '';
    fp.proc = spawn(FAKEPROV, ['--port', '0', '--port-file', portFile, '--quiet',
      '--max-seconds', String(maxSeconds), '--log', fp.log, ...args.map(String)],
    { stdio: ['ignore', 'ignore', 'pipe'] });
    fp.exited = new Promise((resolve) => fp.proc.on('exit', (code, sig) => resolve({ code, sig })));
    fp.proc.stderr.on('data', (d) => { fp.stderr += d; });
    const port = await waitFor(() => {
      try {
        return fs.readFileSync(portFile, 'utf8').trim();
      } catch {
        return null;
      }
    }, 10000);
    if (!port) {
      await fp.stop();
      throw new Error(`fakeprov did not start: ${fp.stderr}`);
    }
    fp.port = Number(port);
    fp.url = `http://127.0.0.1:${fp.port}`;
    return fp;
  }

  /** GET /stats: requests ok limited_429 tokens in_flight ... */
  stats() {
    return getJSON(this.url + '/stats');
  }

  /** The --log lines so far, parsed. */
  entries() {
    return fs.readFileSync(this.log, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  }

  async stop() {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGTERM');
      const t = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
      await this.exited;
      clearTimeout(t);
    }
  }
}

function getJSON(url, timeout = 5000) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => {
        try {
          resolve(JSON.parse(body));
        } catch (e) {
          reject(new Error(`${url}: ${res.statusCode} ${body.slice(0, 200)}`));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${url}: no answer in ${timeout} ms`)));
    req.on('error', reject);
  });
}

/** A config whose one budget [name] matches the provider's port. */
function writeConfig(file, port, name, ...lines) {
  fs.writeFileSync(file, `[${name}]\nmatch = 127.0.0.1:${port}\n${lines.map((l) => l + '\n').join('')}`);
  return file;
}

/** The budget as `ratectl show NAME --json` prints it (the "budget" object). */
function show(ledger, budget) {
  const out = execFileSync(RATECTL, ['--ledger', ledger, 'show', budget, '--json'],
    { timeout: 10000, stdio: ['ignore', 'pipe', 'pipe'] });
  return JSON.parse(out).budget;
}

/** `ratectl reclaim`: frees dead holders' slots; its one line of output. */
function reclaim(ledger) {
  return execFileSync(RATECTL, ['--ledger', ledger, 'reclaim'],
    { timeout: 10000, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

/** A directory holding `ratectl -> lib/node`, for NODE_PATH: how a script
 *  that says require('ratectl') finds the package without installing it. */
function nodePathDir(tmp) {
  const d = path.join(tmp, 'node_path');
  fs.mkdirSync(d, { recursive: true });
  const link = path.join(d, 'ratectl');
  if (!fs.existsSync(link)) fs.symlinkSync(LIBNODE, link, 'dir');
  return d;
}

/** process.env (B, the sanitizer's variables), minus what would reach
 *  outside or change the clients (OpenAI, LangSmith tracing, proxies, the
 *  caller's ratectl config and ledger), plus NODE_PATH (tests/node's
 *  node_modules and, with tmp, ratectl) and the given variables (undefined
 *  or null: removed). */
function env(extra = {}, tmp = null) {
  const e = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(OPENAI_|LANGCHAIN_|LANGSMITH_)/.test(k) || /_proxy$/i.test(k)) continue;
    if (k === 'RATECTL_LEDGER' || k === 'RATECTL_CONFIG') continue;
    e[k] = v;
  }
  e.NO_PROXY = '*';
  const np = [path.join(__dirname, 'node_modules')];
  if (tmp) np.unshift(nodePathDir(tmp));
  e.NODE_PATH = np.join(path.delimiter);
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined || v === null) delete e[k];
    else e[k] = String(v);
  }
  return e;
}

/** Runs `node script args...` to its end, bounded: {code, signal, stdout,
 *  stderr, ms}.  Killed (SIGKILL) after timeout ms. */
function runNode(script, args = [], { env: e = env(), timeout = 60000, cwd = TOP } = {}) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const p = spawn(process.execPath, [script, ...args], { env: e, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
    p.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { stderr += `\n[killed after ${timeout} ms]`; p.kill('SIGKILL'); }, timeout);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}

/** A node process left running: its stdout lines as they come, waitLine
 *  to wait (bounded) for one, kill, and `exited` ({code, signal}).  Killed
 *  with SIGKILL after the test t when still running. */
class NodeProc {
  constructor(script, args = [], { env: e = env(), cwd = TOP, t = null } = {}) {
    this.lines = [];
    this.stderr = '';
    this.proc = spawn(process.execPath, [script, ...args], { env: e, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    this.pid = this.proc.pid;
    this.exited = new Promise((resolve) => this.proc.on('close', (code, signal) => resolve({ code, signal })));
    let part = '';
    this.proc.stdout.setEncoding('utf8').on('data', (d) => {
      const l = (part + d).split('\n');
      part = l.pop();
      this.lines.push(...l);
    });
    this.proc.stderr.setEncoding('utf8').on('data', (d) => { this.stderr += d; });
    if (t) t.after(() => this.kill('SIGKILL'));
  }

  /** The first stdout line matching re, waited for up to timeout ms. */
  async waitLine(re, timeout = 10000) {
    let done = false;
    this.exited.then(() => { done = true; });
    const l = await waitFor(() => this.lines.find((x) => re.test(x)) || (done && 'EXITED'), timeout);
    if (!l || l === 'EXITED') {
      throw new Error(`no line ${re} from pid ${this.pid} in ${timeout} ms; stdout: ` +
        `${this.lines.join(' | ').slice(-1000)}; stderr: ${this.stderr.slice(-2000)}`);
    }
    return l;
  }

  kill(sig = 'SIGTERM') {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(sig);
    return this.exited;
  }
}

/** Answers with status 200 per second at the provider, from its --log
 *  (first to last), as tests/python/helpers.py's rate() reads it. */
function rate(entries) {
  const ts = entries.filter((e) => e.status === 200).map((e) => e.t_ms).sort((a, b) => a - b);
  if (ts.length < 2 || ts[ts.length - 1] <= ts[0]) return 0;
  return ((ts.length - 1) * 1000) / (ts[ts.length - 1] - ts[0]);
}

/** What a limit of `count` per `periodMs` with `burst` lets through over
 *  the provider's answers (first to last 200): burst + rate x elapsed. */
function allowed(entries, count, periodMs, burst) {
  const ts = entries.filter((e) => e.status === 200).map((e) => e.t_ms);
  if (!ts.length) return burst;
  const elapsed = Math.max(...ts) - Math.min(...ts);
  return burst + (count * elapsed) / periodMs;
}

/** The request body the openai SDK and ChatOpenAI send, in the shape the
 *  provider charges: prompt = ceil(bytes / 4), completion = ceil(max / 2). */
function chatBody({ maxTokens = 100, stream = false, includeUsage = false, model = 'gpt-4o-mini' } = {}) {
  const b = { model, max_tokens: maxTokens, messages: [{ role: 'user', content: 'hello' }] };
  if (stream) {
    b.stream = true;
    if (includeUsage) b.stream_options = { include_usage: true };
  }
  return JSON.stringify(b);
}

module.exports = {
  TOP, BUILD, FAKEPROV, RATECTL, LIBNODE,
  sleep, waitFor, ratectl, tmpdir, FakeProvider, getJSON, writeConfig, show, reclaim,
  nodePathDir, env, runNode, NodeProc, rate, allowed, chatBody,
};
