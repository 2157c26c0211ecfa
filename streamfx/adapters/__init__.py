"""Adapters that send a `streamfx.StreamResponse` through a web framework or server."""
