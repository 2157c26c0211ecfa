"""Adapters: serve a `streamfx.StreamResponse` from a framework, and feed uploads in.

One module (or folder) per family, each importing its own framework only:

- `streamfx.adapters.asgi`: `to_asgi` for any ASGI server or framework (Starlette,
  FastAPI, Litestar, plain ASGI), `parts` / `parts_from_asgi` for uploads and
  `error_response`;
- `streamfx.adapters.quart`: `to_quart`, awaited in a Quart view;
- `streamfx.adapters.django`: `to_django`, awaited in a Django view under ASGI;
- `streamfx.adapters.aiohttp`: `to_aiohttp`, `parts`, `streamfx_errors` and
  `drain_on_shutdown`;
- `streamfx.adapters.wsgi`: `to_wsgi`, `parts` and `error_response` for
  Flask, gunicorn, waitress or any WSGI server.

No adapter imports another; what they share lives in the private modules
``streamfx.adapters._*`` (error mapping, prefetching the first chunk, ASGI types).
Importing `streamfx` never imports an adapter, and nothing outside this package imports
a web framework (both checked by ``lint-imports``; see docs/architecture.md).
"""
