"""The core layer: typed async-iterator combinators and the bounded channel under them.

`buffer`, `tap`, `heartbeat`, `merge`, `ensuring`, `circuit`, `progress`, the buffer
policies, the shutdown signal and the `Channel` they share. Nothing here knows about
HTTP, bytes on the wire or any framework: it imports the standard library and the
metrics hook (`streamfx.metrics`) only, and no layer above it (checked by
``lint-imports``; see docs/architecture.md).

Private: import the public names from `streamfx`.
"""
