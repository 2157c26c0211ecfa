"""Server-Sent Events: `ServerSentEvent` and its encoding, `SSEDecoder`, and `sse()`.

A per-kind package: it imports the core and response layers, never another kind or an
adapter. The folder starts with an underscore because the builder `streamfx.sse` is a
public top-level name that a package called ``streamfx.sse`` would clash with.

Private: import the public names from `streamfx`.
"""
