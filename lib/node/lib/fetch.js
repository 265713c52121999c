'use strict';
// ratectl.fetch(): a function with fetch's signature that puts every
// request through the host's shared HTTP policy (libratectl-http; see
// doc/http.md): the config's match rules pick a budget, or none (then the
// request goes out untouched); the request is estimated and admitted,
// waiting its turn in line with every process of the host, without
// blocking the event loop; its response teaches the ledger (429
// cooldowns, rate-limit headers); its body is metered as the program
// reads it, and the request keeps its slot until the body ends or is
// cancelled, so a streamed answer is charged from its final usage event.
// A budget with a response cache (ratectl.conf(5) `cache`) answers a
// cacheable request it holds without calling the inner fetch; a request
// whose answer another request is fetching waits for that answer; an
// answer is offered to the cache only when its body was read to its end
// without error (a body cancelled or cut short is never stored).
// ratectl's own request headers (the config's tenant and tag headers named
// X-Ratectl-*) are removed from what the inner fetch is given: they mean
// nothing to the provider, and a tenant may name a person.  A tenant
// header that makes no budget name rejects with RatectlError (EBADNAME)
// before anything is sent.
//
//   new OpenAI({ fetch: ratectl.fetch() })
//   new ChatOpenAI({ configuration: { fetch: ratectl.fetch() } })

const { binding, scratch, codes } = require('./binding');
const { RatectlError } = require('./errors');
const { Group, abortReason } = require('./waiters');

function notice(msg) {
  process.emitWarning(msg, 'RatectlWarning');
}

// One policy handle per (config, configText, ledger) and process, opened
// at first use, as the Python package does.
const handles = new Map();

function handleFor(config, configText, ledger) {
  const key = JSON.stringify([config ?? null, configText ?? null, ledger ?? null]);
  let H = handles.get(key);
  if (!H) {
    const h = binding.httpOpen(config ?? null, configText ?? null, ledger ?? null, notice);
    H = { h, group: new Group(() => binding.httpDrain(h)) };
    handles.set(key, H);
  }
  return H;
}

// What the policy needs of a request, without consuming anything: method,
// URL, headers (flat), and the body when it is in memory (a string or
// bytes, as the SDKs send JSON); a stream, Blob or FormData body is not
// read: its declared length stands for it, and it cannot be re-sent.
function describe(input, init) {
  const req = typeof Request !== 'undefined' && input instanceof Request ? input : null;
  const method = (init && init.method) || (req && req.method) || 'GET';
  const url = req ? req.url : (input instanceof URL ? input.href : String(input));
  const headers = new Headers((init && init.headers) || (req ? req.headers : undefined));
  const flat = [];
  for (const [n, v] of headers) flat.push(n, v);
  let body = init && init.body !== undefined ? init.body : null;
  let inMemory = true;
  if (body !== null) {
    if (typeof body === 'string' || ArrayBuffer.isView(body) || body instanceof ArrayBuffer) {
      // as it is
    } else if (body instanceof URLSearchParams) {
      body = body.toString();
    } else {
      body = null;
      inMemory = false;
    }
  } else if (req && req.body) {
    inMemory = false;   // a Request's own body is a stream
  }
  let size = 0;
  if (body === null) {
    const len = Number(headers.get('content-length'));
    if (Number.isSafeInteger(len) && len > 0) size = len;
  }
  return { method, url, flat, body, size, inMemory };
}

// What to hand the inner fetch: (input, init) as given, or, when they
// carry ratectl's own headers, init with a copy of the headers without
// them (a Request input keeps its body, method and signal: fetch(request,
// { headers }) takes the rest from it).  The caller's objects are not
// changed.
function outgoing(input, init, names) {
  if (!names || names.length === 0) return [input, init];
  const req = typeof Request !== 'undefined' && input instanceof Request ? input : null;
  const headers = new Headers((init && init.headers) || (req ? req.headers : undefined));
  let found = false;
  for (const n of names) {
    if (headers.has(n)) {
      headers.delete(n);
      found = true;
    }
  }
  if (!found) return [input, init];
  return [input, { ...(init || {}), headers }];
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) {
      reject(abortReason(signal));
      return;
    }
    const t = setTimeout(() => {
      if (signal) signal.removeEventListener('abort', onAbort);
      resolve();
    }, Math.max(0, Math.ceil(ms)));
    const onAbort = () => {
      clearTimeout(t);
      reject(abortReason(signal));
    };
    if (signal) signal.addEventListener('abort', onAbort, { once: true });
  });
}

// Admit req, waiting in line without blocking: resolves to the library's
// code (0, HTTP_PASS, or a refusal), rejects with signal's reason when it
// is aborted (the place is given back).
function admit(H, req, signal) {
  const rc = binding.httpReserve(req);
  if (rc !== codes.EPENDING) {
    H.group.catchUp();
    return Promise.resolve(rc);
  }
  return H.group.wait({
    poll: () => binding.httpPoll(req),
    cancel: () => binding.httpCancel(req),
    done: (code) => code,
    signal,
    at: scratch[3],
    fd: scratch[1],
  });
}

// A cacheable request of H ended or was freed: if it was fetching an
// answer for the response cache, the requests of this process waiting
// for that answer can have it (or one of them fetch in its place) now
// rather than at their next look, which the library sets by a timer
// only.  Other processes' waiters look again on their timers.
function wake(H, cacheable) {
  if (cacheable && H.group.size > 0) H.group.pollAll();
}

// The attempt ended with no answer (a network error, an abort): the
// caller's exception is the one to see.
function noAnswer(req) {
  try {
    binding.status(req, 0);
    binding.end(req);
  } catch {
    // bookkeeping must not hide the caller's error
  }
}

function learn(req, res) {
  binding.status(req, res.status);
  const flat = [];
  for (const [n, v] of res.headers) flat.push(n, v);
  binding.headers(req, flat);
}

// Responses dropped unread: their request is ended (the estimate
// charged) when the Response is collected, so a slot is never lost.
const dropped = new FinalizationRegistry((finish) => finish('collected'));

function endOnce(H, req, cacheable) {
  let ended = false;
  return (why) => {
    if (ended) return;
    ended = true;
    try {
      binding.end(req);
    } catch (e) {
      if (why !== 'collected') notice(`ending a request: ${e.message}`);
    } finally {
      binding.free(req);
      wake(H, cacheable);
    }
  };
}

// The response, its body metered: every chunk the program reads goes to
// the usage scanner (in fixed memory); the request ends exactly once, at
// the body's end, error or cancel.  Never Response.clone(): a tee buffers
// without bound when one side is not read.  The library keeps the body
// of a cacheable request as it goes through; complete() says it had all
// of it, and only a body read to its end, every chunk given, says so.
function metered(H, req, res, cacheable) {
  const finish = endOnce(H, req, cacheable);
  if (!res.body) {
    complete(req);
    finish();
    return res;
  }
  const reader = res.body.getReader();
  const token = {};
  let whole = true;   // every chunk went to the library
  const done = () => {
    dropped.unregister(token);
    finish();
  };
  const body = new ReadableStream({
    async pull(controller) {
      let r;
      try {
        r = await reader.read();
      } catch (e) {
        done();   // cut short: the usage read so far, else the estimate
        controller.error(e);
        return;
      }
      if (r.done) {
        if (whole) complete(req);
        done();
        controller.close();
        return;
      }
      try {
        binding.body(req, r.value);
      } catch {
        whole = false;   // metering never breaks the program's read
      }
      controller.enqueue(r.value);
    },
    cancel(reason) {
      done();
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
  const out = new Response(body, {
    status: res.status,
    statusText: res.statusText,
    headers: res.headers,
  });
  for (const k of ['url', 'redirected', 'type']) {
    Object.defineProperty(out, k, { value: res[k], enumerable: false });
  }
  dropped.register(out, finish, token);
  return out;
}

function complete(req) {
  try {
    binding.complete(req);
  } catch (e) {
    notice(`offering an answer to the response cache: ${e.message}`);
  }
}

function made(loc) {
  const headers = new Headers();
  for (let i = 0; i < loc.headers.length; i += 2) headers.append(loc.headers[i], loc.headers[i + 1]);
  return new Response(loc.body, { status: loc.status, headers });
}

function localResponse(req) {
  return made(binding.localResponse(req));
}

// The answer the response cache holds (X-Ratectl-Cache: hit, or
// coalesced when another request fetched it while this one waited), as
// the inner fetch would have given it: the whole body, its Content-Type,
// its Age; its url is the request's.
function cachedResponse(req, url) {
  const out = made(binding.cachedResponse(req));
  Object.defineProperty(out, 'url', { value: url, enumerable: false });
  return out;
}

/**
 * A fetch applying the host's shared HTTP policy.
 * opts.config: the config file (default $RATECTL_CONFIG, else
 * /etc/ratectl.conf); opts.configText: the config itself instead;
 * opts.ledger: the ledger directory (default $RATECTL_LEDGER or the
 * library's default); opts.fetch: the fetch that sends (default
 * globalThis.fetch, looked up at each call).
 */
function fetch(opts = {}) {
  const { config, configText, ledger } = opts;
  const inner = opts.fetch;
  if (inner !== undefined && typeof inner !== 'function') {
    throw new TypeError('ratectl.fetch({ fetch }): fetch must be a function');
  }
  let H = null;
  async function ratectlFetch(input, init) {
    const send = inner || globalThis.fetch;
    open();
    const d = describe(input, init);
    const req = binding.begin(H.h, d.method, d.url, d.flat, d.body, d.size);
    if (req === null) return send(input, init);
    const signal = (init && init.signal) || (input instanceof Request ? input.signal : undefined);
    let owned = true;   // freed here unless a metered response took it
    let cacheable = false;
    try {
      if (!d.inMemory) binding.setResendable(req, false);
      const info = binding.info(req);
      cacheable = info.cacheable === 1;
      const [sendInput, sendInit] = outgoing(input, init, info.dropHeaders);
      for (;;) {
        const rc = await admit(H, req, signal);
        if (rc === codes.HTTP_CACHED) {
          cacheable = false;   // it fetched nothing: nobody to wake
          return cachedResponse(req, d.url);
        }
        if (rc === codes.HTTP_ERETRYBUDGET) return localResponse(req);
        if (rc < 0) throw new RatectlError(binding.why(req) || binding.strerror(rc), rc);
        let res;
        try {
          res = await send(sendInput, sendInit);
        } catch (e) {
          noAnswer(req);
          throw e;
        }
        learn(req, res);
        if ((res.status === 429 || res.status === 503) && binding.info(req).retries > 0) {
          // A refusal the budget may re-send: read it whole (a short
          // error body), end the attempt, and follow the library.
          const raw = new Uint8Array(await res.arrayBuffer());
          if (raw.length) binding.body(req, raw);
          const out = binding.end(req);
          wake(H, cacheable);
          if (out.retry) {
            await sleep(out.retryAfterMs, signal);
            continue;
          }
          return new Response(raw, { status: res.status, statusText: res.statusText,
            headers: res.headers });
        }
        owned = false;
        return metered(H, req, res, cacheable);
      }
    } finally {
      if (owned) {
        binding.free(req);
        wake(H, cacheable);
      }
    }
  }
  const open = () => {
    if (!H) H = handleFor(config, configText, ledger);
    return H;
  };
  // The response cache of this fetch's ledger directory: its counters
  // per budget (all, or one), and emptying it.
  ratectlFetch.cacheStats = (budget) => binding.cacheStats(open().h, budget ?? null);
  ratectlFetch.cacheClear = (budget, resetCounters = false) =>
    binding.cacheClear(open().h, budget ?? null, !!resetCounters);
  return ratectlFetch;
}

module.exports = { fetch };
