"""The soak and fault-injection suite: ``make soak`` (``make soak-quick`` for CI).

Every streamfx adapter on a real server (ASGI on uvicorn, aiohttp, Quart on hypercorn,
Django on uvicorn, WSGI on gunicorn gthread) and the peers (sse-starlette on uvicorn,
aiohttp-sse, and for idle a bare Django view), each a subprocess on a free loopback
port, driven by raw HTTP clients in this process. Scenarios (one module each, one
table each):

- `churn`: connect / first event / abort cycles: finalizers, tasks, threads,
  descriptors, memory;
- `idle`: thousands of idle SSE streams: memory per stream, and the server still
  answering;
- `readers`: stalled and slow readers beside healthy ones: memory, eviction, the
  healthy ones' latency;
- `faults`: a source that raises, hangs or yields an unserializable item, a metrics
  hook that raises, finalizers that raise or are slow: what the client sees, the log,
  leaks;
- `shutdown`: SIGTERM with open streams: farewells, clean ends, a prompt exit;
- `fuzz`: the parsers of untrusted input (SSE decoder, Range and conditional headers,
  file names, multipart bodies, ``Last-Event-ID`` in the example apps), time-boxed
  with hypothesis: only the documented exceptions, bounded memory.

Bounded in count and time, loopback only; it stops by itself. Sizes: `config`.
"""
