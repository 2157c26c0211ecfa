"""Exports: `export()` and its encoders (JSON array, NDJSON, CSV).

A per-kind package: it imports the core and response layers, never another kind or an
adapter (orjson, when installed, only in `json_encoders`). The underscore keeps the
folder from clashing with the public builder `streamfx.export`.

Private: import the public names from `streamfx`.
"""
