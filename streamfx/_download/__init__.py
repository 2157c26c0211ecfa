"""Downloads: `download()` with validators, conditional requests and byte ranges.

A per-kind package: it imports the core and response layers, never another kind or an
adapter. The underscore keeps the folder from clashing with the public builder
`streamfx.download`.

Private: import the public names from `streamfx`.
"""
