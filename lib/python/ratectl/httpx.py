"""httpx transports that put every request through the host's shared budget.

    import httpx, openai, ratectl.httpx
    client = openai.OpenAI(http_client=httpx.Client(transport=ratectl.httpx.Transport()))

``Transport`` (for ``httpx.Client``) and ``AsyncTransport`` (for
``httpx.AsyncClient``) wrap an inner transport (by default httpx's own)
and apply libratectl-http's policy to each request (doc/http.md): the
config's match rules pick a budget, or none (then the request passes
untouched); the request is estimated, admitted (waiting its turn, fairly,
across every process of the host), sent through the inner transport, and
its response teaches the ledger (429 cooldowns, rate-limit headers).  The
response body is metered as the program reads it: the usage it reports is
charged, and the request holds its slot until the response is closed
(httpx closes it after ``.read()``, at the end of ``with
client.stream(...)``, or when the program calls ``close()``), so a
streamed reply is charged from its final usage event.

ratectl's own request headers (the config's tenant and tag headers named
``X-Ratectl-*``) are removed from the request the inner transport sends:
they mean nothing to the provider, and a tenant may name a person.  The
program's request object is left as it was.

A retry of the SDK (``x-stainless-retry-count``) past the host's retry
budget is not sent: the transport answers it with the library's local 429,
whose ``x-should-retry: false`` tells the openai and anthropic SDKs to stop.
Any other refusal raises the ``ratectl`` exception of its code
(``ratectl.TimedOut``, ``ratectl.TooBig``, ``ratectl.BadName`` for a
tenant header that makes no budget name, ...) with the library's reason.

A budget with a response cache (ratectl.conf(5) ``cache``) answers a
request it holds from the cache without sending it: the response carries
``X-Ratectl-Cache: hit`` (or ``coalesced``: another request, in any
process, fetched it while this one waited) and ``Age``, and its body is
the decoded one (no ``Content-Encoding``).  A sent cacheable request is
stored when its 2xx body was read to its end: one closed early is not.

The async transport never parks a thread: a waiting request keeps its
place in line (``ratectl_http_reserve``) and is looked at again on a loop
timer or when the ledger's event descriptor is readable (``add_reader``);
a cancelled request gives its place back.
"""
import asyncio
import time
import zlib

import httpx

from . import _http
from ._errors import Error

__all__ = ["Transport", "AsyncTransport"]


def _body_of(request):
    """(body bytes or None, declared size) of an httpx request."""
    try:
        return request.content, 0
    except httpx.RequestNotRead:
        try:
            size = int(request.headers.get("content-length", "0"))
        except ValueError:
            size = 0
        return None, size


def _begin(handle, request):
    body, size = _body_of(request)
    req = handle.begin(request.method, str(request.url), request.headers.raw, body, size)
    if req is not None and not handle.cache_used and req.info.cacheable:
        handle.cache_used = True   # its hit counts are written at exit
    return req


def _outgoing(req, request):
    """The request to send: ``request`` itself, or, when it carries
    ratectl's own headers, a copy without them (same method, URL, body
    stream and extensions; the program's request is not changed)."""
    drop = req.drop_headers()
    if not drop:
        return request
    raw = request.headers.raw
    kept = [(n, v) for n, v in raw if n.lower() not in drop]
    if len(kept) == len(raw):
        return request
    return httpx.Request(request.method, request.url, headers=kept,
                         stream=request.stream, extensions=request.extensions)


class _Decoder:
    """The response's content-coding undone for metering only.

    The transport sees raw bytes (httpx decodes later, in the client);
    the usage scanner needs the decoded body.  The program still gets the
    raw bytes: this copy is fed to the library and dropped, in bounded
    memory per chunk.  An encoding zlib cannot undo (br) is not metered:
    the estimate stands.
    """

    def __init__(self, encoding):
        enc = (encoding or "").strip().lower()
        self.ok = True
        self.z = None
        if enc in ("", "identity"):
            pass
        elif enc in ("gzip", "x-gzip"):
            self.z = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif enc == "deflate":
            self.z = zlib.decompressobj()
        else:
            self.ok = False

    def whole(self):
        """True when everything fed so far was decoded, to the end of the
        compressed stream: the metered copy is the whole body."""
        return self.ok and (self.z is None or (self.z.eof and not self.z.unused_data))

    def __call__(self, chunk):
        if not self.ok:
            return b""
        if self.z is None:
            return chunk
        try:
            # Bounded: at most 1 MiB out per call; the rest stays in z.
            out = self.z.decompress(chunk, 1 << 20)
            if self.z.unconsumed_tail:
                self.ok = False  # a bomb or a huge chunk: stop metering
            return out
        except zlib.error:
            self.ok = False
            return b""


class _Meter:
    """A matched request from its response's headers to its end.

    ``finish()`` ends the attempt and frees the request, exactly once,
    whether the body was read or not; ``finish(whole=True)``, at the end
    of a body read without error, first says the body is complete, so
    that the end may store it in the response cache.
    """

    def __init__(self, req, response):
        self.req = req
        self.decode = _Decoder(response.headers.get("content-encoding"))

    def feed(self, chunk):
        if self.req is not None and chunk:
            data = self.decode(bytes(chunk))
            if data:
                self.req.body(data)

    def finish(self, whole=False):
        req, self.req = self.req, None
        if req is None:
            return None
        try:
            if not req.owned_here():
                return None  # admitted in the parent: free it unused
            # What the library stores is what it was fed: the decoded
            # copy, which must be the whole body (not one a decoder gave
            # up on).  Asked only of cacheable requests: one call less on
            # every other.
            if whole and req.info.cacheable and self.decode.whole():
                req.complete()
            return req.end()
        except Error as e:
            # close() must not fail on bookkeeping; the lease is released
            # by free() below whatever end() said.
            _http.log.warning("ratectl: ending a request: %s", e)
            return None
        finally:
            req.free()


class _MeteredStream(httpx.SyncByteStream):
    def __init__(self, inner, meter):
        self._inner = inner
        self._meter = meter

    def __iter__(self):
        for chunk in self._inner:
            self._meter.feed(chunk)
            yield chunk
        # At EOF, reached without error: the slot is free before close().
        # A stream closed before (close(), or this generator dropped) or
        # broken by an error ends in close(), never complete.
        self._meter.finish(whole=True)

    def close(self):
        try:
            self._inner.close()
        finally:
            self._meter.finish()


class _AsyncMeteredStream(httpx.AsyncByteStream):
    def __init__(self, inner, meter):
        self._inner = inner
        self._meter = meter

    async def __aiter__(self):
        async for chunk in self._inner:
            self._meter.feed(chunk)
            yield chunk
        self._meter.finish(whole=True)

    async def aclose(self):
        try:
            await self._inner.aclose()
        finally:
            self._meter.finish()


def _local_response(req, request):
    status, headers, body = req.local_response()
    return httpx.Response(status, headers=headers, content=body, request=request)


def _cached_response(req, request):
    """The answer from the response cache, never sent (the caller frees
    req: nothing was admitted)."""
    status, headers, body = req.cached_response()
    return httpx.Response(status, headers=headers, content=body, request=request)


def _no_answer(req):
    """The inner transport raised: the attempt ended with no answer (a
    timeout, a reset, a cancelled task).  The caller's exception is the
    one to see, so a failure here is not raised."""
    try:
        req.status(0)
        req.end()
    except Exception:
        pass


def _refused(req, rc):
    return _http.error_for(rc, req.why())


def _learn(req, response):
    req.status(response.status_code)
    req.headers(response.headers.raw)


def _wants_retry_decision(req, response):
    """A 429 or 503 on a budget with `retries`: the attempt is ended before
    the client sees the answer, so that the library may send it again."""
    return response.status_code in (429, 503) and req.info.retries > 0


def _end_refused(req, response, raw):
    """End the attempt on a refusal read whole (a short error body)."""
    data = _Decoder(response.headers.get("content-encoding"))(raw)
    if data:
        req.body(data)
    return req.end()


class _Base:
    def __init__(self, config=None, transport=None, config_text=None, ledger_dir=None):
        self._config = (config, config_text, ledger_dir)
        self._transport = transport
        self._h = None

    def _handle(self):
        if self._h is None:
            self._h = _http.handle(*self._config)
        return self._h

    def cache_stats(self, budget=None):
        """The response cache of every budget of the ledger that has one
        (a list of ``CacheStats``), or of ``budget`` (one, or None)."""
        return self._handle().cache_stats(budget)

    def cache_clear(self, budget=None, reset_counters=False):
        """Remove the cached answers of ``budget`` (None: every budget's);
        the number removed.  ``reset_counters`` zeroes its counters too."""
        return self._handle().cache_clear(budget, reset_counters)


class Transport(_Base, httpx.BaseTransport):
    """An httpx transport applying the host's shared rate limit.

    ``config``: the config file (default ``$RATECTL_CONFIG``, else
    /etc/ratectl.conf), or ``config_text`` the config itself;
    ``ledger_dir``: the ledger (default ``$RATECTL_LEDGER`` or ratectl's
    default); ``transport``: the transport that sends (default
    ``httpx.HTTPTransport()``).  Blocking admission waits up to the
    budget's ``timeout``.
    """

    def __init__(self, config=None, transport=None, *, config_text=None, ledger_dir=None):
        super().__init__(config, transport or httpx.HTTPTransport(), config_text, ledger_dir)

    def handle_request(self, request):
        req = _begin(self._handle(), request)
        if req is None:
            return self._transport.handle_request(request)
        owned = True   # freed here unless a metered response took it
        try:
            outgoing = _outgoing(req, request)
            while True:
                # Blocks also while another request of the host fetches
                # the same cacheable answer, then returns it (CACHED).
                rc = req.admit(-1)
                if rc == _http.RATECTL_HTTP_CACHED:
                    return _cached_response(req, request)
                if rc == _http.RATECTL_HTTP_ERETRYBUDGET:
                    return _local_response(req, request)
                if rc < 0:
                    raise _refused(req, rc)
                try:
                    response = self._transport.handle_request(outgoing)
                except BaseException:
                    _no_answer(req)
                    raise
                _learn(req, response)
                if _wants_retry_decision(req, response):
                    raw = b"".join(response.stream)
                    response.close()
                    out = _end_refused(req, response, raw)
                    if out.retry:
                        time.sleep(out.retry_after_ns / 1e9)
                        continue
                    return httpx.Response(response.status_code, headers=response.headers.raw,
                                          stream=httpx.ByteStream(raw),
                                          extensions=response.extensions, request=request)
                owned = False
                return httpx.Response(response.status_code, headers=response.headers.raw,
                                      stream=_MeteredStream(response.stream, _Meter(req, response)),
                                      extensions=response.extensions, request=request)
        finally:
            if owned:
                req.free()

    def close(self):
        self._transport.close()


class _LoopWaiters:
    """The pending requests of one handle on one event loop.

    Each waits on a timer (its wait_ns) and on the ledger's event
    descriptor, watched with add_reader while anyone waits: when it is
    readable, drain it once and poll every pending request.
    """

    def __init__(self, loop, handle):
        self.loop = loop
        self.handle = handle
        self.pending = {}   # Request -> [future, timer handle]
        self.fd = None

    async def wait(self, req, w):
        fut = self.loop.create_future()
        self.pending[req] = [fut, None]
        self._arm(req, w)
        try:
            return await fut
        except asyncio.CancelledError:
            if req in self.pending:
                self._drop(req)
                req.cancel()   # its place in line is given back
            raise

    def _arm(self, req, w):
        entry = self.pending[req]
        if entry[1] is not None:
            entry[1].cancel()
        entry[1] = self.loop.call_later(max(w.wait_ns, 0) / 1e9, self._poll, req)
        if w.fd >= 0 and self.fd is None:
            self.loop.add_reader(w.fd, self._readable)
            self.fd = w.fd

    def _poll(self, req):
        entry = self.pending.get(req)
        if entry is None:
            return
        w = _http.Wait()
        rc = req.poll(w)
        if rc == _http.RATECTL_EPENDING:
            self._arm(req, w)
            return
        self._drop(req)
        if not entry[0].done():
            entry[0].set_result(rc)
        # else: cancelled as it was admitted; the caller's finally frees
        # req, which releases the lease as never sent.

    def _readable(self):
        self.handle.events_drain()
        for req in list(self.pending):
            self._poll(req)

    def _drop(self, req):
        entry = self.pending.pop(req, None)
        if entry is not None and entry[1] is not None:
            entry[1].cancel()
        if not self.pending:
            # Idle: stop watching, and forget this loop (the handle's map
            # is weak on the loop, but this object refers to it).
            if self.fd is not None:
                self.loop.remove_reader(self.fd)
                self.fd = None
            if self.handle.waiters.get(self.loop) is self:
                del self.handle.waiters[self.loop]


async def _aadmit(handle, req):
    w = _http.Wait()
    rc = req.reserve(w, -1)
    if rc != _http.RATECTL_EPENDING:
        return rc
    loop = asyncio.get_running_loop()
    waiters = handle.waiters.get(loop)
    if waiters is None:
        waiters = handle.waiters[loop] = _LoopWaiters(loop, handle)
    return await waiters.wait(req, w)


class AsyncTransport(_Base, httpx.AsyncBaseTransport):
    """The async twin of ``Transport``, for ``httpx.AsyncClient``.

    Admission never blocks the event loop nor takes a thread: see the
    module's docstring.  Arguments as for ``Transport`` (default inner
    transport ``httpx.AsyncHTTPTransport()``).
    """

    def __init__(self, config=None, transport=None, *, config_text=None, ledger_dir=None):
        super().__init__(config, transport or httpx.AsyncHTTPTransport(), config_text, ledger_dir)

    async def handle_async_request(self, request):
        handle = self._handle()
        req = _begin(handle, request)
        if req is None:
            return await self._transport.handle_async_request(request)
        owned = True
        try:
            outgoing = _outgoing(req, request)
            while True:
                rc = await _aadmit(handle, req)
                if rc == _http.RATECTL_HTTP_CACHED:
                    return _cached_response(req, request)
                if rc == _http.RATECTL_HTTP_ERETRYBUDGET:
                    return _local_response(req, request)
                if rc < 0:
                    raise _refused(req, rc)
                try:
                    response = await self._transport.handle_async_request(outgoing)
                except BaseException:
                    _no_answer(req)
                    raise
                _learn(req, response)
                if _wants_retry_decision(req, response):
                    raw = b"".join([c async for c in response.stream])
                    await response.aclose()
                    out = _end_refused(req, response, raw)
                    if out.retry:
                        await asyncio.sleep(out.retry_after_ns / 1e9)
                        continue
                    return httpx.Response(response.status_code, headers=response.headers.raw,
                                          stream=httpx.ByteStream(raw),
                                          extensions=response.extensions, request=request)
                owned = False
                return httpx.Response(response.status_code, headers=response.headers.raw,
                                      stream=_AsyncMeteredStream(response.stream,
                                                                 _Meter(req, response)),
                                      extensions=response.extensions, request=request)
        finally:
            if owned:
                req.free()

    async def aclose(self):
        await self._transport.aclose()
