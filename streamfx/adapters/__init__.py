"""Adapters that send a `StreamResponse` through ASGI, aiohttp or WSGI servers."""
