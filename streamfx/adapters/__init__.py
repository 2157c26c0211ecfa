"""Adapters that turn a `streamfx.StreamResponse` into a framework's response.

One module per kind of server, each importing its own framework only:
`streamfx.adapters.asgi` (Starlette, FastAPI, Quart, Litestar, Django ASGI). Importing
`streamfx` never imports an adapter.
"""
