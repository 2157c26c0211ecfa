"""Adapters: serve a `streamfx.StreamResponse` from a framework, and feed uploads in.

One module (or folder) per family, each importing its own framework only, and each
offering the same three helpers in its framework's idiom: ``to_<framework>(response)``
to serve a response, ``parts(request, ...)`` for an upload's parts with limits, and
``error_response(exc)`` answering any `streamfx.StreamfxError` (403/404 from
``download()``, 413/415/400/408 from an upload, 503 from an open circuit) with its
status, headers and client-safe detail, anything else with 500:

- `streamfx.adapters.asgi`: `to_asgi` for any ASGI server or framework (Starlette,
  FastAPI, plain ASGI), `parts` (and `parts_from_asgi`, the raw ASGI form: ``scope``
  and ``receive``), `error_response`, and `openapi` for FastAPI's ``responses=``;
- `streamfx.adapters.litestar`: `to_litestar`, `parts` and `error_response` for
  Litestar handlers (sent by the ASGI adapter);
- `streamfx.adapters.quart`: `to_quart`, awaited in a Quart view; `parts`,
  `error_response` (as the app's error handler);
- `streamfx.adapters.django`: `to_django`, awaited in a Django view under ASGI;
  `parts` (over the body Django has already received), `error_response`;
- `streamfx.adapters.aiohttp`: `to_aiohttp`, `parts` (an async context manager),
  `error_response`, the `streamfx_errors` middleware and `drain_on_shutdown`;
- `streamfx.adapters.wsgi`: `to_wsgi`, `parts` (over the environ, synchronous) and
  `error_response` for Flask, gunicorn, waitress or any WSGI server.

No adapter imports another (but the Litestar one, which sends through the ASGI one);
what they share lives in the private modules
``streamfx.adapters._*`` (error mapping, prefetching the first chunk, ASGI types).
Importing `streamfx` never imports an adapter, and nothing outside this package imports
a web framework (both checked by ``lint-imports``; see docs/architecture.md).
"""
