"""The response layer: what every stream kind's response is made of.

`StreamResponse` (status, headers and a body of bytes, framework-neutral), the body
engine `encode_batches` (a bounded buffer drained in batches of ready items, with
keep-alive, drain on shutdown and metrics) and `content_disposition`. It imports the
core layer only; the per-kind packages build on it and the adapters serve it.

Private: import the public names from `streamfx`.
"""
