"""Uploads: `parse_multipart`, `Part` and the upload errors.

The one kind that flows inward: request body bytes -> `framing` (python-multipart's
parser and the per-part limits) -> `multipart.PartStream` (the pull-driven stream of
parts, the whole-body limit, the metrics) -> each `Part`'s content. A per-kind package:
it imports the core layer, never another kind or an adapter; python-multipart is
imported only here, lazily.

Private: import the public names from `streamfx`.
"""
